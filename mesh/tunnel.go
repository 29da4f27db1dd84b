package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"github.com/hashicorp/yamux"
)

// serveTunnel accepts tunnel connections (each one a session of streams)
// until the listener is closed.
func (m *Mesh) serveTunnel() error {
	var backoff time.Duration
	for {
		c, err := m.tunnelLn.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				// Accept errors other than closing are mostly resource
				// exhaustion (EMFILE...): back off and keep serving.
				m.warnLimited("mesh tunnel accept failed", "error", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-m.ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		if !acquire(m.sessionSem) {
			m.warnLimited("mesh tunnel session limit reached, connection closed",
				"addr", c.RemoteAddr().String())
			_ = c.Close()
			continue
		}
		m.wg.Add(1)
		go m.handleSession(c)
	}
}

// serverTLSConfig returns cfg set to negotiate the tunnel protocol, also
// in the configurations its GetConfigForClient returns.
func serverTLSConfig(cfg *tls.Config) *tls.Config {
	if cfg == nil {
		return nil
	}
	c := cfg.Clone()
	c.NextProtos = []string{tunnelALPN}
	if get := cfg.GetConfigForClient; get != nil {
		c.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			cc, err := get(hi)
			if err != nil || cc == nil {
				return cc, err
			}
			cc = cc.Clone()
			cc.NextProtos = []string{tunnelALPN}
			return cc, nil
		}
	}
	return c
}

// handleSession authenticates one tunnel connection and serves the
// streams of its session until it ends or the mesh shuts down.
func (m *Mesh) handleSession(raw net.Conn) {
	defer m.wg.Done()
	defer release(m.sessionSem)
	stop := context.AfterFunc(m.ctx, func() { _ = raw.Close() })
	defer stop()
	addr := raw.RemoteAddr().String()

	_ = raw.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	c := raw
	peer := ""
	if m.serverTLS != nil {
		tlsc := tls.Server(raw, m.serverTLS)
		if err := tlsc.Handshake(); err != nil {
			m.warnLimited("mesh tunnel TLS handshake failed", "addr", addr, "error", err)
			_ = raw.Close()
			return
		}
		st := tlsc.ConnectionState()
		if len(st.PeerCertificates) > 0 {
			peer = st.PeerCertificates[0].Subject.CommonName
		}
		if st.NegotiatedProtocol != tunnelALPN {
			m.warnLimited("mesh tunnel refused peer", "addr", addr, "node.id", peer,
				"error", errors.New("no tunnel protocol "+tunnelALPN+" negotiated (version mismatch?)"))
			_ = raw.Close()
			return
		}
		c = tlsc
	}
	_ = raw.SetDeadline(time.Time{})
	sess, err := yamux.Server(&coalescingConn{Conn: c}, m.yamuxConfig())
	if err != nil {
		m.warnLimited("mesh tunnel session failed", "addr", addr, "node.id", peer, "error", err)
		_ = raw.Close()
		return
	}
	defer sess.Close()
	if m.log.Enabled(m.ctx, levelDebug) {
		m.log.Debug("mesh tunnel session accepted", "node.id", peer, "addr", addr)
	}
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return
		}
		if !acquire(m.tunnelSem) {
			m.warnLimited("mesh tunnel stream limit reached, stream refused", "node.id", peer, "addr", addr)
			_ = st.SetWriteDeadline(time.Now().Add(time.Second))
			refuseClose(tunnelStream{st}, statusBusy)
			continue
		}
		m.wg.Add(1)
		go m.handleStream(tunnelStream{st}, peer, addr)
	}
}

// handleStream reads the header of one tunnel stream, checks the delivery
// is allowed, dials the local task and splices.
func (m *Mesh) handleStream(c tunnelStream, peer, addr string) {
	defer m.wg.Done()
	defer release(m.tunnelSem)

	_ = c.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	h, err := readHeader(c)
	if err != nil {
		m.warnLimited("mesh tunnel refused bad header", "addr", addr, "node.id", peer, "error", err)
		refuseClose(c, statusBadHeader)
		return
	}
	refuse := func(status byte, msg string, err error) {
		m.warnLimited(msg, "target", h.Target, "protocol", h.Protocol, "task.id", h.TaskID,
			"node.id", peer, "addr", addr, "error", err)
		refuseClose(c, status)
	}
	if _, ok := (*m.allowed.Load())[allowKey(h)]; !ok {
		refuse(statusUnknownTask, "mesh tunnel refused task", errors.New("task, protocol and target port not in this node's table"))
		return
	}
	local, err := m.dialLocal(m.ctx, h.Protocol, h.TaskID, h.Target)
	if err != nil {
		status := statusDialFailed
		if errors.Is(err, errResolve) {
			status = statusUnknownTask
		}
		refuse(status, "mesh tunnel dial failed", err)
		return
	}
	if _, err := c.Write([]byte{statusOK}); err != nil {
		if m.log.Enabled(m.ctx, levelDebug) {
			m.log.Debug("mesh tunnel write status", "task.id", h.TaskID, "node.id", peer, "error", err)
		}
		_ = local.Close()
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	if m.log.Enabled(m.ctx, levelDebug) {
		m.log.Debug("mesh tunnel stream", "target", h.Target, "protocol", h.Protocol, "task.id", h.TaskID,
			"node.id", peer, "addr", addr)
	}
	stop := context.AfterFunc(m.ctx, func() {
		_ = local.Close()
		_ = c.Close()
	})
	defer stop()
	switch h.Protocol {
	case TCP:
		splice(m.bufs, c, local)
	case UDP:
		m.serveTunnelUDP(c, local.(*net.UDPConn))
	}
}

// refuseClose answers a refusal status and closes the stream. yamux
// delivers the status before the FIN, whatever the peer sent meanwhile.
func refuseClose(c tunnelStream, status byte) {
	_, _ = c.Write([]byte{status})
	_ = c.CloseWrite()
}
