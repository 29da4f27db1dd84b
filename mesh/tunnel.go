package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"
)

// serveTunnel accepts tunnel streams until the listener is closed.
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
		if !acquire(m.tunnelSem) {
			m.warnLimited("mesh tunnel connection limit reached, stream closed",
				"addr", c.RemoteAddr().String())
			_ = c.Close()
			continue
		}
		m.wg.Add(1)
		go m.handleTunnel(c)
	}
}

// handleTunnel authenticates one tunnel stream, reads its header, checks
// the delivery is allowed, dials the local task and splices.
func (m *Mesh) handleTunnel(raw net.Conn) {
	defer m.wg.Done()
	defer release(m.tunnelSem)
	stop := context.AfterFunc(m.ctx, func() { _ = raw.Close() })
	defer stop()

	_ = raw.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	c := raw
	peer := ""
	if m.cfg.ServerTLS != nil {
		tlsc := tls.Server(raw, m.cfg.ServerTLS)
		if err := tlsc.Handshake(); err != nil {
			m.warnLimited("mesh tunnel TLS handshake failed", "addr", raw.RemoteAddr().String(), "error", err)
			_ = raw.Close()
			return
		}
		if certs := tlsc.ConnectionState().PeerCertificates; len(certs) > 0 {
			peer = certs[0].Subject.CommonName
		}
		c = tlsc
	}
	h, err := readHeader(c)
	if err != nil {
		m.warnLimited("mesh tunnel refused bad header", "addr", raw.RemoteAddr().String(),
			"node.id", peer, "error", err)
		refuseClose(c, statusBadHeader)
		return
	}
	refuse := func(status byte, msg string, err error) {
		m.warnLimited(msg, "target", h.Target, "protocol", h.Protocol, "task.id", h.TaskID,
			"node.id", peer, "addr", raw.RemoteAddr().String(), "error", err)
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
		m.log.Debug("mesh tunnel write status", "task.id", h.TaskID, "node.id", peer, "error", err)
		_ = local.Close()
		_ = c.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	m.log.Debug("mesh tunnel stream", "target", h.Target, "protocol", h.Protocol, "task.id", h.TaskID,
		"node.id", peer, "addr", raw.RemoteAddr().String())
	stopLocal := context.AfterFunc(m.ctx, func() { _ = local.Close() })
	defer stopLocal()
	switch h.Protocol {
	case TCP:
		splice(c, local)
	case UDP:
		m.serveTunnelUDP(c, local.(*net.UDPConn))
	}
}

// refuseClose answers a refusal status and closes c. It half-closes first
// and drains what the peer already sent (bounded in time and size), so the
// close does not reset the connection before the peer read the status.
func refuseClose(c net.Conn, status byte) {
	defer c.Close()
	if _, err := c.Write([]byte{status}); err != nil {
		return
	}
	if cw, ok := c.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}
