package mesh

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// serveTCP accepts the connections of a published TCP port until its
// listener is closed.
func (m *Mesh) serveTCP(pl *portListener) {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		c, err := pl.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure such as EMFILE: back off, keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.warnLimited("mesh accept failed", "port", pl.key.Published, "protocol", TCP, "error", err)
			select {
			case <-time.After(backoff):
			case <-m.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		if !acquire(pl.sem) {
			m.warnLimited("mesh connection limit reached, connection closed",
				"port", pl.key.Published, "protocol", TCP)
			_ = c.Close()
			continue
		}
		m.wg.Add(1)
		go m.handleTCP(pl, c)
	}
}

// handleTCP forwards one client connection to a backend of the port,
// trying the backends in round-robin order, each at most once.
func (m *Mesh) handleTCP(pl *portListener, c *net.TCPConn) {
	defer m.wg.Done()
	defer release(pl.sem)
	bc, b, err := m.dialAny(m.ctx, pl, nil)
	if err != nil {
		m.warnLimited("mesh no backend reachable, connection closed", "port", pl.key.Published,
			"protocol", TCP, "error", err)
		_ = c.Close()
		return
	}
	if m.log.Enabled(m.ctx, levelDebug) {
		m.log.Debug("mesh connection", "port", pl.key.Published, "protocol", TCP,
			"task.id", b.TaskID, "node.id", b.NodeID, "addr", c.RemoteAddr().String())
	}
	stop := context.AfterFunc(m.ctx, func() {
		_ = c.Close()
		_ = bc.Close()
	})
	splice(m.bufs, c, bc)
	stop()
}

// dialAny connects to a backend of pl: the backends of the current set in
// round-robin order, each task at most once. A connection is kept only if
// its task is still in the port's set once dialed (checked under swapMu,
// where commit, if set, records the choice): after Update returns, no new
// connection or flow goes to a removed task, even one that was dialing.
func (m *Mesh) dialAny(ctx context.Context, pl *portListener, commit func(Backend)) (net.Conn, Backend, error) {
	set := pl.set.Load()
	var tried []string // tasks dialed, when a set changed under us
	var errs []error
	const maxRejected = 4
	rejected := 0
	for {
		retry := false
		bs := set.port.Backends
		n := len(bs)
		start := set.start()
		for i := range n {
			b := bs[(start+i)%n]
			if slices.Contains(tried, b.TaskID) {
				continue
			}
			c, err := m.dialBackend(ctx, set.port, b)
			if err != nil {
				if m.log.Enabled(ctx, levelDebug) {
					m.log.Debug("mesh backend dial failed", "port", pl.key.Published, "protocol", set.port.Protocol,
						"task.id", b.TaskID, "node.id", b.NodeID, "error", err)
				}
				errs = append(errs, err)
				tried = append(tried, b.TaskID)
				continue
			}
			pl.swapMu.RLock()
			cur := pl.set.Load()
			// Under an implausible storm of Updates, keep the connection
			// after a few rejections rather than fail the client.
			keep := cur == set || cur.has(b.TaskID) || rejected >= maxRejected
			if keep && commit != nil {
				commit(b)
			}
			pl.swapMu.RUnlock()
			if keep {
				return c, b, nil
			}
			_ = c.Close() // it may come back: not marked as tried
			rejected++
			set, retry = cur, true
			break
		}
		if !retry {
			break
		}
	}
	if len(errs) == 0 {
		return nil, Backend{}, errNoBackend
	}
	return nil, Backend{}, errors.Join(errs...)
}

type closeWriter interface{ CloseWrite() error }

// splice copies both ways between a and b until both directions ended,
// propagating half-closes, then closes both. Between two *net.TCPConn the
// copy uses splice(2); other pairs (tunnel streams) copy through buffers
// from bufs, so a connection allocates none.
func splice(bufs *sync.Pool, a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe(bufs, a, b)
	}()
	pipe(bufs, b, a)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
}

// copyBufSize is the size of the buffers splice copies through.
const copyBufSize = 32 << 10

// newCopyBufs returns the buffer pool of splice.
func newCopyBufs() *sync.Pool {
	return &sync.Pool{New: func() any { return new([copyBufSize]byte) }}
}

// pipe copies src to dst. At EOF it half-closes dst; on an error, or if dst
// cannot half-close, it closes both so the other direction ends too.
func pipe(bufs *sync.Pool, dst, src net.Conn) {
	if err := copyConn(bufs, dst, src); err == nil {
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// copyConn copies src to dst: with splice(2) between TCP sockets, else
// through a pooled buffer (io.Copy would allocate one per call).
func copyConn(bufs *sync.Pool, dst, src net.Conn) error {
	_, srcTCP := src.(*net.TCPConn)
	_, dstTCP := dst.(*net.TCPConn)
	if srcTCP && dstTCP {
		_, err := io.Copy(dst, src)
		return err
	}
	buf := bufs.Get().(*[copyBufSize]byte)
	defer bufs.Put(buf)
	// Hide ReadFrom/WriteTo: they would take the copy over with a buffer
	// of their own.
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf[:])
	return err
}
