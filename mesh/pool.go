package mesh

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// tunnelALPN is the TLS application protocol of the tunnel: yamux sessions
// carrying streams that start with a version 2 header. A peer speaking
// another version fails the TLS handshake (no common protocol).
const tunnelALPN = "swarmd-mesh/2"

// defaultTunnelSessions is the default number of sessions kept per remote
// node: more than one spreads the TLS work of busy nodes over cores.
const defaultTunnelSessions = 2

// yamuxConfig is the configuration of every tunnel session.
func (m *Mesh) yamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = 1024
	c.EnableKeepAlive = true
	c.KeepAliveInterval = 5 * time.Second
	// A write stuck that long (or a ping unanswered) means a dead peer:
	// the session is closed, dropped from the pool and redialed.
	c.ConnectionWriteTimeout = max(5*time.Second, 2*m.cfg.DialTimeout)
	// The header/status exchange has its own deadline (see openStream);
	// no per-stream timer goroutine.
	c.StreamOpenTimeout = 0
	// A stream we closed whose peer never closes its side is reset.
	c.StreamCloseTimeout = time.Minute
	c.MaxStreamWindowSize = 1 << 20
	c.LogOutput = nil
	c.Logger = yamuxLogger{m}
	return c
}

// yamuxLogger sends yamux's own messages to the mesh log, rate limited.
type yamuxLogger struct{ m *Mesh }

func (l yamuxLogger) Print(v ...any) { l.log(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) {
	l.log(fmt.Sprintf(format, v...))
}
func (l yamuxLogger) Println(v ...any) { l.log(fmt.Sprintln(v...)) }
func (l yamuxLogger) log(s string) {
	l.m.warnLimited("mesh tunnel session", "error", strings.TrimSpace(s))
}

// tunnelStream is a yamux stream as the splice wants it: Close ends both
// directions at once, CloseWrite half-closes (yamux FIN).
type tunnelStream struct{ *yamux.Stream }

func (s tunnelStream) CloseWrite() error { return s.Stream.Close() }

func (s tunnelStream) Close() error {
	_ = s.Stream.SetDeadline(time.Unix(1, 0)) // unblock local readers and writers
	return s.Stream.Close()
}

// poolKey identifies the sessions to one remote node's tunnel.
type poolKey struct{ nodeID, addr string }

// tunnelPool keeps the client sessions to remote tunnels.
type tunnelPool struct {
	m    *Mesh
	size int
	// Lock order: mu, then a nodeSessions' mu.
	mu     sync.Mutex
	nodes  map[poolKey]*nodeSessions
	done   bool        // guarded by mu
	closed atomic.Bool // done, readable under a nodeSessions' mu
}

// nodeSessions are the sessions to one remote node; mu guards all.
type nodeSessions struct {
	mu       sync.Mutex
	sessions []*yamux.Session
	next     int
	dialing  chan struct{} // closed when the dial in flight ends
	dialErr  error         // result of the last dial, set before dialing closes
	lastUsed time.Time
	removed  bool // pruned from the pool: callers get a new nodeSessions
}

func newTunnelPool(m *Mesh) *tunnelPool {
	size := m.cfg.TunnelSessions
	if size <= 0 {
		size = defaultTunnelSessions
	}
	return &tunnelPool{m: m, size: size, nodes: make(map[poolKey]*nodeSessions)}
}

func (p *tunnelPool) node(k poolKey) (*nodeSessions, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return nil, ErrClosed
	}
	ns := p.nodes[k]
	if ns == nil {
		ns = &nodeSessions{}
		p.nodes[k] = ns
	}
	return ns, nil
}

// session returns an open session to the tunnel of backend b: one of the
// pool, or a new one (dialed by this caller, while callers that find no
// session wait for that dial). fresh reports a session dialed for this
// call, for which a failure is not a stale session.
func (p *tunnelPool) session(ctx context.Context, b Backend) (s *yamux.Session, fresh bool, err error) {
	ns, err := p.node(poolKey{b.NodeID, b.Tunnel})
	if err != nil {
		return nil, false, err
	}
	for {
		ns.mu.Lock()
		if ns.removed {
			ns.mu.Unlock()
			if ns, err = p.node(poolKey{b.NodeID, b.Tunnel}); err != nil {
				return nil, false, err
			}
			continue
		}
		ns.lastUsed = time.Now()
		ns.sessions = dropClosed(ns.sessions)
		n := len(ns.sessions)
		if n > 0 && (n >= p.size || ns.dialing != nil) {
			ns.next++
			s = ns.sessions[ns.next%n]
			ns.mu.Unlock()
			return s, false, nil
		}
		if wait := ns.dialing; wait != nil { // no session yet: wait for the dial
			ns.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, false, context.Cause(ctx)
			}
			ns.mu.Lock()
			err := ns.dialErr
			ns.mu.Unlock()
			if err != nil {
				return nil, false, err
			}
			continue
		}
		wait := make(chan struct{})
		ns.dialing = wait
		ns.mu.Unlock()

		s, err = p.dial(ctx, b)

		ns.mu.Lock()
		ns.dialErr = err
		ns.dialing = nil
		close(wait)
		if err != nil {
			// An extra session failed: the ones there still serve.
			ns.sessions = dropClosed(ns.sessions)
			if n := len(ns.sessions); n > 0 {
				ns.next++
				s = ns.sessions[ns.next%n]
				ns.mu.Unlock()
				return s, false, nil
			}
			ns.mu.Unlock()
			return nil, false, err
		}
		if p.closed.Load() { // close ran during the dial
			_ = s.Close()
			ns.mu.Unlock()
			return nil, false, ErrClosed
		}
		ns.sessions = append(ns.sessions, s)
		ns.mu.Unlock()
		return s, true, nil
	}
}

func dropClosed(ss []*yamux.Session) []*yamux.Session {
	out := ss[:0]
	for _, s := range ss {
		if !s.IsClosed() {
			out = append(out, s)
		}
	}
	clear(ss[len(out):])
	return out
}

// drop closes session s and removes it from the pool.
func (p *tunnelPool) drop(b Backend, s *yamux.Session) {
	_ = s.Close()
	ns, err := p.node(poolKey{b.NodeID, b.Tunnel})
	if err != nil {
		return
	}
	ns.mu.Lock()
	ns.sessions = dropClosed(ns.sessions)
	ns.mu.Unlock()
}

// dial connects, authenticates and starts a client session to the tunnel
// of backend b.
func (p *tunnelPool) dial(ctx context.Context, b Backend) (*yamux.Session, error) {
	m := p.m
	dctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(dctx, "tcp", b.Tunnel)
	if err != nil {
		return nil, fmt.Errorf("dial tunnel of node %s: %w", b.NodeID, err)
	}
	var c net.Conn = raw
	if m.cfg.ClientTLS != nil {
		tc, err := m.cfg.ClientTLS(b.NodeID)
		if err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("tunnel TLS config for node %s: %w", b.NodeID, err)
		}
		tc = tc.Clone()
		tc.NextProtos = []string{tunnelALPN}
		hctx, cancel := context.WithTimeout(ctx, m.cfg.DialTimeout)
		defer cancel()
		tlsc := tls.Client(raw, tc)
		if err := tlsc.HandshakeContext(hctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("tunnel TLS handshake with node %s: %w", b.NodeID, err)
		}
		if got := tlsc.ConnectionState().NegotiatedProtocol; got != tunnelALPN {
			_ = raw.Close()
			return nil, fmt.Errorf("tunnel of node %s: protocol %q, want %q", b.NodeID, got, tunnelALPN)
		}
		c = tlsc
	}
	s, err := yamux.Client(&coalescingConn{Conn: c}, m.yamuxConfig())
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("tunnel session to node %s: %w", b.NodeID, err)
	}
	if m.log.Enabled(ctx, levelDebug) {
		m.log.Debug("mesh tunnel session opened", "node.id", b.NodeID, "addr", b.Tunnel)
	}
	return s, nil
}

// close closes every session; later calls to session fail.
func (p *tunnelPool) close() {
	p.mu.Lock()
	p.done = true
	p.closed.Store(true)
	nodes := p.nodes
	p.nodes = nil
	p.mu.Unlock()
	for _, ns := range nodes {
		ns.mu.Lock()
		for _, s := range ns.sessions {
			_ = s.Close()
		}
		ns.sessions = nil
		ns.removed = true
		ns.mu.Unlock()
	}
}

// prune closes the sessions of nodes unused for idle (if no stream is open
// on them) and forgets those nodes, so the pool does not keep every node
// that ever was. It runs on Update.
func (p *tunnelPool) prune(idle time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, ns := range p.nodes {
		ns.mu.Lock()
		ns.sessions = dropClosed(ns.sessions)
		if ns.dialing == nil && time.Since(ns.lastUsed) > idle {
			busy := false
			for _, s := range ns.sessions {
				busy = busy || s.NumStreams() > 0
			}
			if !busy {
				for _, s := range ns.sessions {
					_ = s.Close()
				}
				ns.sessions = nil
				ns.removed = true
				delete(p.nodes, k)
			}
		}
		ns.mu.Unlock()
	}
}

// dialTunnel opens a stream to the task of backend b through its node's
// tunnel and waits for the remote node to accept it. A stream that fails
// on a pooled session that turns out dead is retried once on a new one.
func (m *Mesh) dialTunnel(ctx context.Context, b Backend, h tunnelHeader) (net.Conn, error) {
	if b.Tunnel == "" {
		return nil, fmt.Errorf("node %s: no tunnel address", b.NodeID)
	}
	hdr, err := h.marshal()
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		s, fresh, err := m.pool.session(ctx, b)
		if err != nil {
			return nil, err
		}
		c, stale, err := m.openStream(ctx, s, b, h, hdr)
		if err == nil {
			return c, nil
		}
		if !stale {
			return nil, err
		}
		m.pool.drop(b, s)
		if fresh || attempt > 0 || ctx.Err() != nil {
			return nil, err
		}
		if m.log.Enabled(ctx, levelDebug) {
			m.log.Debug("mesh tunnel session dead, redialing", "node.id", b.NodeID, "error", err)
		}
	}
}

// openStream opens one stream on s, sends the header and reads the status.
// stale reports a failure of the session itself (not of the remote task).
func (m *Mesh) openStream(ctx context.Context, s *yamux.Session, b Backend, h tunnelHeader, hdr []byte) (_ net.Conn, stale bool, _ error) {
	st, err := s.OpenStream()
	if err != nil {
		return nil, true, fmt.Errorf("tunnel to node %s: open stream: %w", b.NodeID, err)
	}
	c := tunnelStream{st}
	// The remote node's own dial gets DialTimeout, the exchange as long again.
	_ = st.SetDeadline(time.Now().Add(2 * m.cfg.DialTimeout))
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(what string, err error) (net.Conn, bool, error) {
		_ = c.Close()
		// A session that shuts down ends its streams (EOF, closed): then
		// the session, not the task, failed.
		return nil, s.IsClosed(), fmt.Errorf("tunnel to node %s: %s: %w", b.NodeID, what, err)
	}
	if _, err := st.Write(hdr); err != nil {
		return fail("write header", err)
	}
	var sb [1]byte
	if _, err := io.ReadFull(st, sb[:]); err != nil {
		return fail("read status", err)
	}
	if err := statusError(sb[0]); err != nil {
		_ = c.Close()
		return nil, false, fmt.Errorf("node %s task %s: %w", b.NodeID, h.TaskID, err)
	}
	if !stop() || ctx.Err() != nil {
		_ = c.Close()
		return nil, false, fmt.Errorf("tunnel to node %s: %w", b.NodeID, context.Cause(ctx))
	}
	_ = st.SetDeadline(time.Time{})
	return c, false, nil
}

// yamux frame header layout (github.com/hashicorp/yamux spec.md): version,
// type, flags (2), stream id (4), length (4).
const (
	yamuxHeaderSize = 12
	yamuxTypeData   = 0
	// coalesceMax is the largest payload whose header is merged with it:
	// one TLS record, so the copy is small.
	coalesceMax = 16 << 10
)

// coalescingConn merges each yamux data frame header with its payload into
// one Write: one TLS record and one syscall per frame instead of two.
// yamux's send loop is the only writer; it writes a frame as Write(header)
// then, for a data frame with a payload, at once Write(payload) of exactly
// the announced length. So a data header announcing a small payload is
// held and written with the next Write; everything else passes through.
type coalescingConn struct {
	net.Conn
	buf  []byte // the held header, then header+payload
	held bool
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	if c.held {
		c.held = false
		c.buf = append(c.buf[:yamuxHeaderSize], p...)
		n, err := c.Conn.Write(c.buf)
		return max(n-yamuxHeaderSize, 0), err
	}
	if len(p) == yamuxHeaderSize && p[1] == yamuxTypeData {
		if l := binary.BigEndian.Uint32(p[8:12]); l > 0 && l <= coalesceMax {
			c.buf = append(c.buf[:0], p...)
			c.held = true
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}
