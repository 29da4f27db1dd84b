package mesh

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// flowQueueLen bounds the datagrams queued for one flow (while it dials or
// when the backend is slower than the client); beyond it they are dropped.
const flowQueueLen = 128

// dgramConn carries datagrams to and from one backend. writeDatagram and
// readDatagram may run concurrently with each other, each from a single
// goroutine; the datagram readDatagram returns is valid until its next call.
type dgramConn interface {
	writeDatagram(p []byte) error
	readDatagram() ([]byte, error)
	Close() error
}

// udpDgram is a connected UDP socket to a local container.
type udpDgram struct {
	c    *net.UDPConn
	rbuf []byte
}

func (u *udpDgram) writeDatagram(p []byte) error { _, err := u.c.Write(p); return err }
func (u *udpDgram) readDatagram() ([]byte, error) {
	n, err := u.c.Read(u.rbuf)
	return u.rbuf[:n], err
}
func (u *udpDgram) Close() error { return u.c.Close() }

// streamDgram frames datagrams over a tunnel stream.
type streamDgram struct {
	c          net.Conn
	r          *bufio.Reader
	wbuf, rbuf []byte
}

func (s *streamDgram) writeDatagram(p []byte) error { return writeFrame(s.c, &s.wbuf, p) }
func (s *streamDgram) readDatagram() ([]byte, error) {
	return readFrame(s.r, &s.rbuf)
}
func (s *streamDgram) Close() error { return s.c.Close() }

func asDgram(c net.Conn) dgramConn {
	if u, ok := c.(*net.UDPConn); ok {
		return &udpDgram{c: u, rbuf: make([]byte, maxDatagram)}
	}
	return &streamDgram{c: c, r: bufio.NewReaderSize(c, streamReadBuf)}
}

// streamReadBuf is the read buffer of a UDP tunnel stream: it saves
// syscalls for small datagrams; large frames are read past it.
const streamReadBuf = 4096

// udpFlow is the traffic of one client address on a published UDP port.
type udpFlow struct {
	client netip.AddrPort
	in     chan []byte
	last   atomic.Int64 // unix nanoseconds of the last datagram either way
	done   chan struct{}
	once   sync.Once
	// backend is the task the flow forwards to, once dialed.
	backend atomic.Pointer[Backend]
}

func (f *udpFlow) touch() { f.last.Store(time.Now().UnixNano()) }

func (f *udpFlow) close() { f.once.Do(func() { close(f.done) }) }

func (f *udpFlow) isDone() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// expire ends flow f if it has been idle for idle and has nothing queued,
// else it returns how long to wait before checking again. It decides under
// flowsMu, where serveUDP enqueues, so no datagram is queued to a flow
// that just expired.
func (pl *portListener) expire(f *udpFlow, idle time.Duration) (expired bool, wait time.Duration) {
	pl.flowsMu.Lock()
	defer pl.flowsMu.Unlock()
	idleFor := time.Duration(time.Now().UnixNano() - f.last.Load())
	if idleFor < idle {
		return false, idle - idleFor
	}
	if len(f.in) > 0 {
		return false, idle
	}
	f.close()
	if pl.flows[f.client] == f {
		delete(pl.flows, f.client)
	}
	return true, 0
}

// serveUDP reads the datagrams of a published UDP port and dispatches them
// to their flows, creating flows for new client addresses.
func (m *Mesh) serveUDP(pl *portListener) {
	defer m.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := pl.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || m.ctx.Err() != nil {
				return
			}
			m.warnLimited("mesh udp read failed", "port", pl.key.Published, "protocol", UDP, "error", err)
			continue
		}
		pl.flowsMu.Lock()
		if pl.closed {
			pl.flowsMu.Unlock()
			return
		}
		f := pl.flows[from]
		if f == nil || f.isDone() { // a flow that ended is replaced at once
			if !acquire(pl.sem) {
				pl.flowsMu.Unlock()
				m.warnLimited("mesh flow limit reached, datagram dropped", "port", pl.key.Published, "protocol", UDP)
				continue
			}
			f = &udpFlow{client: from, in: make(chan []byte, flowQueueLen), done: make(chan struct{})}
			f.touch()
			pl.flows[from] = f
			m.wg.Add(1)
			go m.runFlow(pl, f)
		}
		// Enqueued under flowsMu: see the expiry in runFlow.
		select {
		case f.in <- slices.Clone(buf[:n]):
		default: // queue full: drop, as UDP may
		}
		pl.flowsMu.Unlock()
	}
}

// runFlow connects a flow to a backend (round robin, with failover) and
// forwards its datagrams both ways until it is idle for UDPIdleTimeout,
// its backend fails, its port is closed or the mesh shuts down.
func (m *Mesh) runFlow(pl *portListener, f *udpFlow) {
	defer m.wg.Done()
	defer func() {
		f.close()
		pl.flowsMu.Lock()
		if pl.flows[f.client] == f {
			delete(pl.flows, f.client)
		}
		pl.flowsMu.Unlock()
		release(pl.sem)
	}()
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	stopShutdown := context.AfterFunc(ctx, f.close)
	defer stopShutdown()

	c, b, err := m.dialAny(ctx, pl, func(b Backend) { f.backend.Store(&b) })
	if err != nil {
		m.warnLimited("mesh no backend reachable, udp flow dropped", "port", pl.key.Published,
			"protocol", UDP, "error", err)
		// Hold the failed flow for a moment, dropping its datagrams, so a
		// client sending steadily does not cause a dial per datagram.
		hold := time.NewTimer(min(time.Second, m.cfg.UDPIdleTimeout))
		defer hold.Stop()
		for {
			select {
			case <-f.in:
			case <-hold.C:
				return
			case <-f.done:
				return
			}
		}
	}
	if m.log.Enabled(m.ctx, levelDebug) {
		m.log.Debug("mesh udp flow", "port", pl.key.Published, "protocol", UDP,
			"task.id", b.TaskID, "node.id", b.NodeID, "addr", f.client.String())
	}
	conn := asDgram(c)
	defer conn.Close()

	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer f.close()
		for {
			p, err := conn.readDatagram()
			if err != nil {
				return
			}
			f.touch()
			if _, err := pl.udp.WriteToUDPAddrPort(p, f.client); err != nil && errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}()

	idle := m.cfg.UDPIdleTimeout
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case p := <-f.in:
			if err := conn.writeDatagram(p); err != nil {
				if m.log.Enabled(m.ctx, levelDebug) {
					m.log.Debug("mesh udp write failed", "port", pl.key.Published, "protocol", UDP, "error", err)
				}
				return
			}
			f.touch()
		case <-timer.C:
			expired, wait := pl.expire(f, idle)
			if expired {
				if m.log.Enabled(m.ctx, levelDebug) {
					m.log.Debug("mesh udp flow expired", "port", pl.key.Published, "protocol", UDP,
						"addr", f.client.String())
				}
				return
			}
			timer.Reset(wait)
		case <-f.done:
			return
		}
	}
}

// serveTunnelUDP forwards framed datagrams between a tunnel stream and a
// connected UDP socket to a local container, until either side fails, the
// client closes the stream, or nothing passes for twice UDPIdleTimeout.
func (m *Mesh) serveTunnelUDP(c net.Conn, u *net.UDPConn) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	var once sync.Once
	end := func() {
		once.Do(func() {
			close(done)
			_ = c.Close()
			_ = u.Close()
		})
	}
	defer end()

	m.wg.Add(2)
	go func() { // container -> stream
		defer m.wg.Done()
		defer end()
		buf := make([]byte, maxDatagram)
		var wbuf []byte
		for {
			n, err := u.Read(buf)
			if err != nil {
				return
			}
			last.Store(time.Now().UnixNano())
			if err := writeFrame(c, &wbuf, buf[:n]); err != nil {
				return
			}
		}
	}()
	go func() { // idle guard
		defer m.wg.Done()
		limit := 2 * m.cfg.UDPIdleTimeout
		t := time.NewTimer(limit)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				idleFor := time.Duration(time.Now().UnixNano() - last.Load())
				if idleFor >= limit {
					end()
					return
				}
				t.Reset(limit - idleFor)
			}
		}
	}()
	r := bufio.NewReaderSize(c, streamReadBuf)
	var rbuf []byte
	for { // stream -> container
		p, err := readFrame(r, &rbuf)
		if err != nil {
			return
		}
		last.Store(time.Now().UnixNano())
		if _, err := u.Write(p); err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// pruneFlows ends the flows whose backend is not in set any more, so their
// next datagram starts a new flow to a current backend. (UDP has no
// connection to let finish; without this a steady client would keep
// talking to a removed task.)
func (pl *portListener) pruneFlows(set *backendSet) {
	if pl.udp == nil {
		return
	}
	keep := make(map[string]bool, len(set.port.Backends))
	for _, b := range set.port.Backends {
		keep[b.TaskID] = true
	}
	pl.flowsMu.Lock()
	var stale []*udpFlow
	for _, f := range pl.flows {
		if b := f.backend.Load(); b != nil && !keep[b.TaskID] {
			stale = append(stale, f)
		}
	}
	pl.flowsMu.Unlock()
	for _, f := range stale {
		f.close()
	}
}
