package mesh

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// Many forwarded connections share the pooled sessions to a remote node.
func TestTunnelSessionsPooled(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	httpTask(t, b, "task-b1")
	pub := freePort(t)
	apply(t, []Port{{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{b.backend("task-b1")}}}, a, b)
	got := countHTTP(t, hostPort("127.0.0.1", pub), 50)
	if got["task-b1"] != 50 {
		t.Fatalf("answers %v", got)
	}
	if n := len(b.mesh.sessionSem); n < 1 || n > defaultTunnelSessions {
		t.Fatalf("%d tunnel sessions served for 50 connections, want 1..%d", n, defaultTunnelSessions)
	}
	eventually(t, "streams end", func() bool { return len(b.mesh.tunnelSem) == 0 })
}

// A remote node that restarts leaves dead sessions in the pool: they are
// detected and redialed without failing a request.
func TestTunnelSessionRedial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tunnelAddr := ln.Addr().String()
	_ = ln.Close()
	a := startNode(t, "node-a", nodeOpts{bind: "127.0.0.1"})
	b := startNode(t, "node-b", nodeOpts{bind: "127.0.0.2", tunnel: tunnelAddr})
	srv := httpTask(t, b, "task-b1")
	pub := freePort(t)
	ports := []Port{{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{b.backend("task-b1")}}}
	apply(t, ports, a, b)
	addr := hostPort("127.0.0.1", pub)
	countHTTP(t, addr, 4)

	for round := range 3 {
		_ = b.mesh.Close() // the node restarts: its sessions die
		b = startNode(t, "node-b", nodeOpts{bind: "127.0.0.2", tunnel: tunnelAddr})
		b.addTask("task-b1", uint16(srv.Listener.Addr().(*net.TCPAddr).Port))
		apply(t, ports, a, b)
		if got := countHTTP(t, addr, 6); got["task-b1"] != 6 {
			t.Fatalf("round %d: answers %v", round, got)
		}
	}

	// A session that dies unnoticed (still in the pool) is retried too.
	ns, err := a.mesh.pool.node(poolKey{"node-b", tunnelAddr})
	if err != nil {
		t.Fatal(err)
	}
	ns.mu.Lock()
	stale := len(ns.sessions)
	for _, s := range ns.sessions {
		_ = s.Close()
	}
	ns.mu.Unlock()
	if stale == 0 {
		t.Fatal("no pooled session")
	}
	if got := countHTTP(t, addr, 3); got["task-b1"] != 3 {
		t.Fatalf("answers %v", got)
	}
}

// A peer of another tunnel protocol version fails the TLS handshake, or
// is closed at once if it negotiates no protocol.
func TestTunnelVersionMismatch(t *testing.T) {
	ca := newTestCA(t)
	ob := ca.tlsOpts(t, "node-b")
	b := startNode(t, "node-b", ob)
	cert := ca.issue(t, "node-a")
	for _, protos := range [][]string{{"swarmd-mesh/1"}, nil} {
		raw, err := net.Dial("tcp", b.mesh.TunnelAddr())
		if err != nil {
			t.Fatal(err)
		}
		_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
		c := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.pool,
			ServerName: "node-b", MinVersion: tls.VersionTLS13, NextProtos: protos})
		err = c.Handshake()
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		if err == nil {
			t.Fatalf("ALPN %q: tunnel accepted", protos)
		}
		_ = c.Close()
	}
}

// writeRecorder records the Writes that reach the connection.
type writeRecorder struct {
	net.Conn
	writes [][]byte
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

func TestCoalescingConn(t *testing.T) {
	rec := &writeRecorder{}
	c := &coalescingConn{Conn: rec}
	hdr := func(typ byte, length uint32) []byte {
		h := make([]byte, yamuxHeaderSize)
		h[1] = typ
		binary.BigEndian.PutUint32(h[8:], length)
		return h
	}
	write := func(p []byte) {
		t.Helper()
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	write(hdr(yamuxTypeData, 5)) // held...
	write([]byte("hello"))       // ...and sent with its payload
	write(hdr(1, 5))             // window update: no payload follows
	write(hdr(yamuxTypeData, 0))
	big := hdr(yamuxTypeData, coalesceMax+1)
	write(big)
	write(make([]byte, coalesceMax+1))
	want := []int{yamuxHeaderSize + 5, yamuxHeaderSize, yamuxHeaderSize, yamuxHeaderSize, coalesceMax + 1}
	if len(rec.writes) != len(want) {
		t.Fatalf("%d writes, want %d", len(rec.writes), len(want))
	}
	for i, w := range rec.writes {
		if len(w) != want[i] {
			t.Fatalf("write %d: %d bytes, want %d", i, len(w), want[i])
		}
	}
	if string(rec.writes[0][yamuxHeaderSize:]) != "hello" {
		t.Fatalf("payload %q", rec.writes[0][yamuxHeaderSize:])
	}
}

// Sessions unused for a while are closed on Update; the next connection
// dials again.
func TestTunnelPoolPrune(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	httpTask(t, b, "task-b1")
	pub := freePort(t)
	ports := []Port{{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{b.backend("task-b1")}}}
	apply(t, ports, a, b)
	countHTTP(t, hostPort("127.0.0.1", pub), 2)
	eventually(t, "streams end", func() bool { return len(b.mesh.tunnelSem) == 0 })
	eventually(t, "pool pruned", func() bool { // once a's streams closed too
		a.mesh.pool.prune(0)
		a.mesh.pool.mu.Lock()
		defer a.mesh.pool.mu.Unlock()
		return len(a.mesh.pool.nodes) == 0
	})
	eventually(t, "sessions closed on node-b", func() bool { return len(b.mesh.sessionSem) == 0 })
	if got := countHTTP(t, hostPort("127.0.0.1", pub), 2); got["task-b1"] != 2 {
		t.Fatalf("answers %v", got)
	}
}
