package mesh

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/jonboulle/clockwork"
)

// twoNodes starts node A (published ports on 127.0.0.1) and node B
// (published ports on 127.0.0.2), each with its own tunnel.
func twoNodes(t *testing.T, o nodeOpts) (a, b *fakeNode) {
	oa, ob := o, o
	oa.bind, ob.bind = "127.0.0.1", "127.0.0.2"
	return startNode(t, "node-a", oa), startNode(t, "node-b", ob)
}

// apply gives every node the same complete table, as swarmd does.
func apply(t *testing.T, ports []Port, nodes ...*fakeNode) {
	t.Helper()
	for _, n := range nodes {
		if err := n.mesh.Update(ports); err != nil {
			t.Fatalf("Update on %s: %v", n.id, err)
		}
	}
}

func TestMeshTCPLocalAndTunnel(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	httpTask(t, a, "task-a1")
	httpTask(t, b, "task-b1")
	httpTask(t, b, "task-b2")
	pub := freePort(t)
	port := Port{Protocol: TCP, Published: pub, Target: 80, ServiceID: "web",
		Backends: []Backend{a.backend("task-a1"), b.backend("task-b1"), b.backend("task-b2")}}
	apply(t, []Port{port}, a, b)

	// Round robin per connection: exactly even over 3 backends.
	for _, addr := range []string{hostPort("127.0.0.1", pub), hostPort("127.0.0.2", pub)} {
		got := countHTTP(t, addr, 30)
		for _, task := range []string{"task-a1", "task-b1", "task-b2"} {
			if got[task] != 10 {
				t.Errorf("via %s: answers %v, want 10 from each task", addr, got)
				break
			}
		}
	}
	ports := a.mesh.Ports()
	if len(ports) != 1 || ports[0].Published != pub || len(ports[0].Backends) != 3 {
		t.Fatalf("Ports() = %+v", ports)
	}
	if err := a.mesh.Update([]Port{port}); err != nil {
		t.Fatalf("no-op Update: %v", err)
	}
}

func TestMeshHalfClose(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	// An "echo until EOF, then answer" container: needs the half-close to
	// go through the mesh (and the tunnel) to answer at all.
	for _, n := range []*fakeNode{a, b} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		id := "task-" + n.id
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					data, _ := io.ReadAll(c)
					_, _ = io.WriteString(c, id+" got "+string(data))
				}()
			}
		}()
		n.addTask(id, uint16(l.Addr().(*net.TCPAddr).Port))
	}
	pub := freePort(t)
	apply(t, []Port{{Protocol: TCP, Published: pub, Target: 7,
		Backends: []Backend{a.backend("task-node-a"), b.backend("task-node-b")}}}, a, b)
	seen := map[string]bool{}
	for range 4 {
		c, err := net.Dial("tcp", hostPort("127.0.0.1", pub))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "hello"); err != nil {
			t.Fatal(err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		ans, err := io.ReadAll(c)
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
		task, rest, ok := strings.Cut(string(ans), " got ")
		if !ok || rest != "hello" {
			t.Fatalf("answer %q", ans)
		}
		seen[task] = true
	}
	if !seen["task-node-a"] || !seen["task-node-b"] {
		t.Fatalf("answers from %v, want both tasks", seen)
	}
}

func TestMeshUpdateRemovesBackend(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	httpTask(t, a, "task-a1")
	httpTask(t, b, "task-b1")
	pub := freePort(t)
	addr := hostPort("127.0.0.1", pub)
	both := Port{Protocol: TCP, Published: pub, Target: 80,
		Backends: []Backend{a.backend("task-a1"), b.backend("task-b1")}}
	apply(t, []Port{both}, a, b)

	// A keep-alive connection that landed on task-a1.
	keep := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
	defer keep.CloseIdleConnections()
	var first string
	for first != "task-a1" {
		var err error
		keep.CloseIdleConnections()
		if first, err = httpGet(keep, addr); err != nil {
			t.Fatal(err)
		}
	}

	for _, removed := range []string{"task-a1", "task-b1"} {
		kept := both
		kept.Backends = nil
		for _, be := range both.Backends {
			if be.TaskID != removed {
				kept.Backends = append(kept.Backends, be)
			}
		}
		apply(t, []Port{kept}, a, b)
		got := countHTTP(t, addr, 20)
		if got[removed] != 0 || len(got) != 1 {
			t.Fatalf("after removing %s: answers %v", removed, got)
		}
		if removed == "task-a1" {
			// The connection in flight to the removed task still works.
			if ans, err := httpGet(keep, addr); err != nil || ans != "task-a1" {
				t.Fatalf("in-flight keep-alive connection: %q, %v", ans, err)
			}
		}
		apply(t, []Port{both}, a, b)
	}
}

func TestMeshDeadBackendSkipped(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	httpTask(t, a, "task-a1")
	deadLocal := httpTask(t, a, "task-a2")
	httpTask(t, b, "task-b1")
	deadRemote := httpTask(t, b, "task-b2")
	pub := freePort(t)
	apply(t, []Port{{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{
		a.backend("task-a1"), a.backend("task-a2"), b.backend("task-b1"), b.backend("task-b2"),
		// a node whose tunnel is gone
		{TaskID: "task-c1", NodeID: "node-c", Tunnel: "127.0.0.1:1"},
	}}}, a, b)
	deadLocal.Close()
	deadRemote.Close()

	got := countHTTP(t, hostPort("127.0.0.1", pub), 40)
	if got["task-a1"] == 0 || got["task-b1"] == 0 || len(got) != 2 {
		t.Fatalf("answers %v, want only task-a1 and task-b1", got)
	}
}

func TestMeshNoBackendClosesConnection(t *testing.T) {
	a := startNode(t, "node-a", nodeOpts{bind: "127.0.0.1"})
	pub := freePort(t)
	apply(t, []Port{{Protocol: TCP, Published: pub, Target: 80}}, a)
	c, err := net.Dial("tcp", hostPort("127.0.0.1", pub))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes from a port without backends", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection to a port without backends was not closed")
	}
}

func TestMeshRemovePortFreesIt(t *testing.T) {
	a := startNode(t, "node-a", nodeOpts{bind: "127.0.0.1"})
	httpTask(t, a, "task-a1")
	udpEchoTask(t, a, "task-u1")
	pub := freePort(t)
	ports := []Port{
		{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{a.backend("task-a1")}},
		{Protocol: UDP, Published: pub, Target: 53, Backends: []Backend{a.backend("task-u1")}},
	}
	apply(t, ports, a)
	// Keep a connection in flight and a UDP flow alive while removing.
	keep := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer keep.CloseIdleConnections()
	if _, err := httpGet(keep, hostPort("127.0.0.1", pub)); err != nil {
		t.Fatal(err)
	}
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(mustAddrPort(hostPort("127.0.0.1", pub))))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if got := udpAsk(t, uc, "x"); got != "task-u1" {
		t.Fatalf("udp answer from %q", got)
	}

	apply(t, nil, a)
	if len(a.mesh.Ports()) != 0 {
		t.Fatalf("Ports() = %+v after removing all", a.mesh.Ports())
	}
	l, err := net.Listen("tcp", hostPort("127.0.0.1", pub))
	if err != nil {
		t.Fatalf("TCP port not freed: %v", err)
	}
	_ = l.Close()
	u, err := net.ListenPacket("udp", hostPort("127.0.0.1", pub))
	if err != nil {
		t.Fatalf("UDP port not freed: %v", err)
	}
	_ = u.Close()
	// And it can be opened again by the mesh.
	apply(t, ports, a)
	if got := countHTTP(t, hostPort("127.0.0.1", pub), 2); got["task-a1"] != 2 {
		t.Fatalf("answers %v", got)
	}
}

func TestMeshBindErrorJoined(t *testing.T) {
	a := startNode(t, "node-a", nodeOpts{bind: "127.0.0.1"})
	httpTask(t, a, "task-a1")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := uint32(busy.Addr().(*net.TCPAddr).Port)
	pub := freePort(t)
	err = a.mesh.Update([]Port{
		{Protocol: TCP, Published: busyPort, Target: 80, Backends: []Backend{a.backend("task-a1")}},
		{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{a.backend("task-a1")}},
		{Protocol: "sctp", Published: 9, Target: 9},
	})
	if err == nil || !strings.Contains(err.Error(), hostPortNum(busyPort)+"/tcp") || !strings.Contains(err.Error(), "sctp") {
		t.Fatalf("Update error = %v, want it to name port %d/tcp and sctp", err, busyPort)
	}
	if got := countHTTP(t, hostPort("127.0.0.1", pub), 1); got["task-a1"] != 1 {
		t.Fatalf("other port not applied: %v", got)
	}
	if ps := a.mesh.Ports(); len(ps) != 1 || ps[0].Published != pub {
		t.Fatalf("Ports() = %+v", ps)
	}
}

func TestMeshUDP(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	udpEchoTask(t, a, "udp-a1")
	udpEchoTask(t, b, "udp-b1")
	pub := freePort(t)
	apply(t, []Port{{Protocol: UDP, Published: pub, Target: 53,
		Backends: []Backend{a.backend("udp-a1"), b.backend("udp-b1")}}}, a, b)

	seen := map[string]int{}
	for i := range 6 {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(mustAddrPort(hostPort("127.0.0.1", pub))))
		if err != nil {
			t.Fatal(err)
		}
		first := udpAsk(t, c, "hello")
		// A flow sticks to its backend.
		for j := range 5 {
			msg := strings.Repeat("m", 100*j+i)
			if got := udpAsk(t, c, msg); got != first {
				t.Fatalf("flow %d moved from %s to %s", i, first, got)
			}
		}
		seen[first]++
		_ = c.Close()
	}
	if seen["udp-a1"] != 3 || seen["udp-b1"] != 3 {
		t.Fatalf("flows per task %v, want 3 each (round robin per flow)", seen)
	}
	// Large datagrams through both paths (two flows, round robin).
	big := strings.Repeat("z", 60000)
	seen = map[string]int{}
	for range 2 {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(mustAddrPort(hostPort("127.0.0.1", pub))))
		if err != nil {
			t.Fatal(err)
		}
		seen[udpAsk(t, c, big)]++
		_ = c.Close()
	}
	if seen["udp-a1"] != 1 || seen["udp-b1"] != 1 {
		t.Fatalf("large datagrams answered by %v", seen)
	}
}

func TestMeshUpdateConcurrentWithTraffic(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	httpTask(t, a, "task-a1")
	httpTask(t, a, "task-a2")
	httpTask(t, b, "task-b1")
	pub := freePort(t)
	all := []Backend{a.backend("task-a1"), a.backend("task-a2"), b.backend("task-b1")}
	table := func(i int) []Port {
		// Always at least one backend; the set changes on every update.
		bs := []Backend{all[i%3]}
		if i%2 == 0 {
			bs = append(bs, all[(i+1)%3])
		}
		return []Port{{Protocol: TCP, Published: pub, Target: 80, Backends: bs}}
	}
	// B delivers to task-b1 throughout (its table lagging A's is covered
	// by failover, not by this test); A's table changes constantly.
	apply(t, []Port{{Protocol: TCP, Published: pub, Target: 80, Backends: all}}, b)
	apply(t, table(0), a)
	stop := make(chan struct{})
	updated := make(chan int, 1)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	go func() {
		i := 1
		defer func() { updated <- i }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.mesh.Update(table(i)); err != nil {
				t.Error(err)
				return
			}
			i++
		}
	}()
	got := countHTTP(t, hostPort("127.0.0.1", pub), 200)
	close(stop)
	n := <-updated
	if len(got) != 3 || n < 10 {
		t.Fatalf("answers %v over %d updates", got, n)
	}
}

func TestMeshUDPFlowExpires(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{udpIdle: 100 * time.Millisecond})
	udpEchoTask(t, a, "udp-a1")
	udpEchoTask(t, b, "udp-b1")
	pub := freePort(t)
	apply(t, []Port{{Protocol: UDP, Published: pub, Target: 53,
		Backends: []Backend{a.backend("udp-a1"), b.backend("udp-b1")}}}, a, b)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(mustAddrPort(hostPort("127.0.0.1", pub))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := udpAsk(t, c, "one")
	flows := func() int {
		a.mesh.mu.Lock()
		pl := a.mesh.ports[portKey{UDP, pub}]
		a.mesh.mu.Unlock()
		pl.flowsMu.Lock()
		defer pl.flowsMu.Unlock()
		return len(pl.flows)
	}
	if flows() != 1 {
		t.Fatalf("%d flows, want 1", flows())
	}
	eventually(t, "flow expiry", func() bool { return flows() == 0 })
	// Same client address, new flow: the next backend in round robin.
	second := udpAsk(t, c, "two")
	if second == first {
		t.Fatalf("new flow went to %s again", second)
	}
	// The tunnel server side of the expired flow ends too (2x idle).
	eventually(t, "tunnel stream end on node-b", func() bool { return len(b.mesh.tunnelSem) <= 1 })
}

// plainSession opens a client session to a plain (test) tunnel.
func plainSession(t *testing.T, addr string) *yamux.Session {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := yamux.Client(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestTunnelRefusesGarbage(t *testing.T) {
	_, b := twoNodes(t, nodeOpts{})
	// Not yamux at all: the connection is closed without an answer.
	c, err := net.Dial("tcp", b.mesh.TunnelAddr())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if ans, err := io.ReadAll(c); err != nil || len(ans) != 0 {
		t.Fatalf("non-yamux peer: answer %q, %v; want close", ans, err)
	}
	_ = c.Close()

	// Bad headers in streams: refused, the session stays usable.
	s := plainSession(t, b.mesh.TunnelAddr())
	for _, garbage := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"SWMT\x01\x01\x00\x50\x02ab",  // old version
		"SWMT\x03\x01\x00\x50\x02ab",  // unknown version
		"SWMT\x02\x01\x00\x50\xffabc", // id too long
	} {
		st, err := s.Open()
		if err != nil {
			t.Fatal(err)
		}
		_ = st.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(st, garbage); err != nil {
			t.Fatal(err)
		}
		ans, err := io.ReadAll(st)
		_ = st.Close()
		if err != nil {
			t.Fatalf("%q: %v", garbage, err)
		}
		if string(ans) != string([]byte{statusBadHeader}) {
			t.Fatalf("%q: answer %q, want bad header status and close", garbage, ans)
		}
	}
}

func TestTunnelRefusesUnknownTask(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	httpTask(t, a, "task-a1")
	httpTask(t, b, "task-b1")
	httpTask(t, b, "task-b-unpublished") // known to B's resolver, not in the table
	pub := freePort(t)
	apply(t, []Port{{Protocol: TCP, Published: pub, Target: 80,
		Backends: []Backend{a.backend("task-a1"), b.backend("task-b1")}}}, a, b)

	sess := plainSession(t, b.mesh.TunnelAddr())
	ask := func(h tunnelHeader) byte {
		t.Helper()
		c, err := sess.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		hdr, err := h.marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(hdr); err != nil {
			t.Fatal(err)
		}
		st := make([]byte, 1)
		if _, err := io.ReadFull(c, st); err != nil {
			t.Fatal(err)
		}
		if st[0] != statusOK {
			if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
				t.Fatalf("refused stream not closed cleanly: %q, %v", rest, err)
			}
			return st[0]
		}
		// Accepted: speak HTTP through it.
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != h.TaskID {
			t.Fatalf("body %q via tunnel to %s", body, h.TaskID)
		}
		return st[0]
	}
	for _, tt := range []struct {
		name string
		h    tunnelHeader
		want byte
	}{
		{"local published task", tunnelHeader{TCP, 80, "task-b1"}, statusOK},
		{"unknown task", tunnelHeader{TCP, 80, "no-such-task"}, statusUnknownTask},
		{"task of another node", tunnelHeader{TCP, 80, "task-a1"}, statusUnknownTask},
		{"known but unpublished task", tunnelHeader{TCP, 80, "task-b-unpublished"}, statusUnknownTask},
		{"other target port", tunnelHeader{TCP, 22, "task-b1"}, statusUnknownTask},
		{"other protocol", tunnelHeader{UDP, 80, "task-b1"}, statusUnknownTask},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ask(tt.h); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRunClosesEverything(t *testing.T) {
	n := &fakeNode{id: "node-a", tasks: map[string]uint16{}}
	m, err := New(Config{NodeID: "node-a", BindAddr: "127.0.0.1", TunnelListen: "127.0.0.1:0",
		Resolver: n, TargetOverride: n.override, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n.mesh = m
	// A container that never answers keeps a connection in flight.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n.addTask("t1", uint16(l.Addr().(*net.TCPAddr).Port))
	pub := freePort(t)
	if err := m.Update([]Port{{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{n.backend("t1")}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	c, err := net.Dial("tcp", hostPort("127.0.0.1", pub))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	backendConn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer backendConn.Close()
	tunnel := m.TunnelAddr()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("in-flight connection not closed at shutdown: %v", err)
	}
	for _, addr := range []string{hostPort("127.0.0.1", pub), tunnel} {
		l2, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("%s still bound after Run returned: %v", addr, err)
		}
		_ = l2.Close()
	}
	if err := m.Update(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Update after Run = %v, want ErrClosed", err)
	}
}

func TestNewValidates(t *testing.T) {
	n := &fakeNode{tasks: map[string]uint16{}}
	for _, cfg := range []Config{
		{Resolver: n},
		{NodeID: "x"},
		{NodeID: "x", Resolver: n, BindAddr: "not-an-ip"},
		{NodeID: "x", Resolver: n, ServerTLS: nil, TunnelListen: "256.0.0.1:0"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestMeshUDPRemovedBackend(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	udpEchoTask(t, a, "udp-a1")
	udpEchoTask(t, b, "udp-b1")
	pub := freePort(t)
	both := Port{Protocol: UDP, Published: pub, Target: 53,
		Backends: []Backend{a.backend("udp-a1"), b.backend("udp-b1")}}
	apply(t, []Port{both}, a, b)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(mustAddrPort(hostPort("127.0.0.1", pub))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := udpAsk(t, c, "one")
	// A no-op Update keeps the flow (and the backend set itself).
	setBefore := a.mesh.ports[portKey{UDP, pub}].set.Load()
	apply(t, []Port{both}, a, b)
	if a.mesh.ports[portKey{UDP, pub}].set.Load() != setBefore {
		t.Fatal("no-op Update replaced the backend set")
	}
	if got := udpAsk(t, c, "again"); got != first {
		t.Fatalf("flow moved from %s to %s on a no-op Update", first, got)
	}
	// Removing the flow's task moves the same client to the other task.
	kept := both
	kept.Backends = nil
	for _, be := range both.Backends {
		if be.TaskID != first {
			kept.Backends = append(kept.Backends, be)
		}
	}
	apply(t, []Port{kept}, a, b)
	if got := udpAsk(t, c, "two"); got == first {
		t.Fatalf("flow still answered by removed task %s", got)
	}
}

// A local task reported stopped leaves its ports at once, stays out while
// tables still list it, and is forgotten once they do not and the memory
// has passed (not before: a table still being sent could list it).
func TestTaskStopped(t *testing.T) {
	clock := clockwork.NewFakeClock()
	a, b := twoNodes(t, nodeOpts{clock: clock})
	httpTask(t, a, "task-a1")
	httpTask(t, a, "task-a2")
	httpTask(t, b, "task-b1")
	pub := freePort(t)
	port := Port{Protocol: TCP, Published: pub, Target: 80,
		Backends: []Backend{a.backend("task-a1"), a.backend("task-a2"), b.backend("task-b1")}}
	apply(t, []Port{port}, a, b)
	backends := func() []string {
		var ids []string
		for _, be := range a.mesh.Ports()[0].Backends {
			ids = append(ids, be.TaskID)
		}
		return ids
	}
	for _, tc := range []struct {
		name string
		do   func()
		want []string
	}{
		{"a remote task is not this node's to stop", func() { a.mesh.TaskStopped("task-b1") }, []string{"task-a1", "task-a2", "task-b1"}},
		{"an unknown task changes nothing", func() { a.mesh.TaskStopped("task-x") }, []string{"task-a1", "task-a2", "task-b1"}},
		{"a local task leaves at once", func() { a.mesh.TaskStopped("task-a1") }, []string{"task-a2", "task-b1"}},
		{"a table still listing it does not bring it back", func() { apply(t, []Port{port}, a) }, []string{"task-a2", "task-b1"}},
		{"reported twice: no change", func() { a.mesh.TaskStopped("task-a1") }, []string{"task-a2", "task-b1"}},
	} {
		tc.do()
		if got := backends(); !slices.Equal(got, tc.want) {
			t.Fatalf("%s: backends %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := countHTTP(t, hostPort("127.0.0.1", pub), 4); got["task-a1"] != 0 || got["task-a2"]+got["task-b1"] != 4 {
		t.Fatalf("answers %v", got)
	}
	// Once the tables drop it, it is forgotten when its memory has passed;
	// a task reported later is remembered for as long from then.
	remembered := func(id string) bool {
		a.mesh.mu.Lock()
		defer a.mesh.mu.Unlock()
		_, ok := a.mesh.stopped[id]
		return ok
	}
	port.Backends = port.Backends[1:]
	clock.Advance(stoppedMemory)
	a.mesh.TaskStopped("task-later")
	apply(t, []Port{port}, a)
	if !remembered("task-a1") {
		t.Fatal("task-a1 forgotten within its memory")
	}
	clock.Advance(time.Second)
	apply(t, []Port{port}, a)
	if remembered("task-a1") || !remembered("task-later") {
		t.Fatalf("a second past task-a1's memory: task-a1 kept %v, task-later kept %v", remembered("task-a1"), remembered("task-later"))
	}
}

// exitNode is a fakeNode whose Resolver also tells when a task's
// "container" exits.
type exitNode struct {
	*fakeNode
	mu      sync.Mutex
	exits   map[string]chan struct{}
	watched chan string
}

func (n *exitNode) WatchExit(_ context.Context, taskID string) (<-chan struct{}, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ch, ok := n.exits[taskID]
	if !ok {
		return nil, errors.New("unknown task")
	}
	n.watched <- taskID
	return ch, nil
}

// A Resolver that watches exits takes a local task out of its ports as
// soon as its container exits; local tasks only are watched.
func TestWatchExits(t *testing.T) {
	a := &exitNode{fakeNode: &fakeNode{id: "node-a", tasks: map[string]uint16{}},
		exits: map[string]chan struct{}{"task-a1": make(chan struct{}), "task-a2": make(chan struct{})}, watched: make(chan string, 8)}
	m, err := New(Config{NodeID: "node-a", Resolver: a, TargetOverride: a.override, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	a.mesh = m
	httpTask(t, a.fakeNode, "task-a1")
	httpTask(t, a.fakeNode, "task-a2")
	port := Port{Protocol: TCP, Published: freePort(t), Target: 80, Backends: []Backend{
		a.backend("task-a1"), a.backend("task-a2"), {TaskID: "task-r", NodeID: "node-r", Tunnel: "192.0.2.9:7946"}}}
	if err := m.Update([]Port{port}); err != nil {
		t.Fatal(err)
	}
	watched := map[string]bool{}
	for range 2 {
		select {
		case id := <-a.watched:
			watched[id] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("watched %v, want both local tasks", watched)
		}
	}
	if !watched["task-a1"] || !watched["task-a2"] {
		t.Fatalf("watched %v", watched)
	}
	close(a.exits["task-a1"])
	eventually(t, "task-a1 out of the port", func() bool {
		for _, b := range m.Ports()[0].Backends {
			if b.TaskID == "task-a1" {
				return false
			}
		}
		return true
	})
	if got := len(m.Ports()[0].Backends); got != 2 {
		t.Fatalf("%d backends left, want task-a2 and task-r", got)
	}
	select {
	case id := <-a.watched:
		t.Fatalf("%s watched again", id)
	default:
	}
}
