package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestNftRuleset(t *testing.T) {
	del := "table ip swarmd_mesh {}\ndelete table ip swarmd_mesh\n"
	if got := nftRuleset(netip.Addr{}, nil); got != del {
		t.Fatalf("empty ruleset:\n%s", got)
	}
	c2, c3, c4 := mustAddrPort("10.0.0.2:80"), mustAddrPort("10.0.0.3:80"), mustAddrPort("10.0.0.4:81")
	peer1, peer2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	rules := []fastRule{
		{Protocol: UDP, Published: 53, Backends: []netip.AddrPort{mustAddrPort("10.0.0.2:5353")}, Local: []netip.AddrPort{mustAddrPort("10.0.0.2:5353")}},
		{Protocol: TCP, Published: 8080, Backends: []netip.AddrPort{c2, c3, c4}, Local: []netip.AddrPort{c2, c3, c4}},
		{Protocol: TCP, Published: 53, Backends: []netip.AddrPort{mustAddrPort("127.0.0.1:9000")}, Local: []netip.AddrPort{mustAddrPort("127.0.0.1:9000")}},
		{Protocol: TCP, Published: 9999}, // no backend: no rule
		// one local task, two on other nodes
		{Protocol: TCP, Published: 7000, Backends: []netip.AddrPort{c2, netip.AddrPortFrom(peer1, 7000), netip.AddrPortFrom(peer2, 7000)},
			Local: []netip.AddrPort{c2}, Peers: []netip.Addr{peer1, peer2}},
		// every task elsewhere
		{Protocol: UDP, Published: 7001, Backends: []netip.AddrPort{netip.AddrPortFrom(peer1, 7001)}, Peers: []netip.Addr{peer1}},
	}
	want := del + `table ip swarmd_mesh {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local ip dscp 0x3b tcp dport 53 dnat ip to 127.0.0.1:9000
		fib daddr type local tcp dport 53 dnat ip to 127.0.0.1:9000
		fib daddr type local ip dscp 0x3b udp dport 53 dnat ip to 10.0.0.2:5353
		fib daddr type local udp dport 53 dnat ip to 10.0.0.2:5353
		fib daddr type local ip dscp 0x3b tcp dport 7000 dnat ip to 10.0.0.2:80
		fib daddr type local tcp dport 7000 dnat ip to numgen inc mod 3 map { 0 : 10.0.0.2 . 80, 1 : 192.0.2.1 . 7000, 2 : 192.0.2.2 . 7000 }
		fib daddr type local ip dscp 0x3b udp dport 7001 accept
		fib daddr type local udp dport 7001 dnat ip to 192.0.2.1:7001
		fib daddr type local ip dscp 0x3b tcp dport 8080 dnat ip to numgen inc mod 3 map { 0 : 10.0.0.2 . 80, 1 : 10.0.0.3 . 80, 2 : 10.0.0.4 . 81 }
		fib daddr type local tcp dport 8080 dnat ip to numgen inc mod 3 map { 0 : 10.0.0.2 . 80, 1 : 10.0.0.3 . 80, 2 : 10.0.0.4 . 81 }
	}
	chain output {
		type nat hook output priority -100; policy accept;
		fib daddr type local tcp dport 53 dnat ip to 127.0.0.1:9000
		fib daddr type local ip daddr != 127.0.0.0/8 udp dport 53 dnat ip to 10.0.0.2:5353
		fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 7000 dnat ip to numgen inc mod 3 map { 0 : 10.0.0.2 . 80, 1 : 192.0.2.1 . 7000, 2 : 192.0.2.2 . 7000 }
		fib daddr type local ip daddr != 127.0.0.0/8 udp dport 7001 dnat ip to 192.0.2.1:7001
		fib daddr type local ip daddr != 127.0.0.0/8 tcp dport 8080 dnat ip to numgen inc mod 3 map { 0 : 10.0.0.2 . 80, 1 : 10.0.0.3 . 80, 2 : 10.0.0.4 . 81 }
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ct status dnat ip daddr { 192.0.2.1, 192.0.2.2 } tcp dport 7000 ip dscp set 0x3b masquerade
		ct status dnat ip daddr { 192.0.2.1 } udp dport 7001 ip dscp set 0x3b masquerade
	}
}
`
	if got := nftRuleset(netip.Addr{}, rules); got != want {
		t.Fatalf("ruleset:\n%s\nwant:\n%s", got, want)
	}
	got := nftRuleset(netip.MustParseAddr("192.0.2.7"), rules[:1])
	for _, line := range []string{
		"\t\tfib daddr type local ip dscp 0x3b udp dport 53 dnat ip to 10.0.0.2:5353\n", // forwarded: any local address
		"\t\tip daddr 192.0.2.7 udp dport 53 dnat ip to 10.0.0.2:5353\n",
		"\t\tip daddr 192.0.2.7 ip daddr != 127.0.0.0/8 udp dport 53 dnat",
	} {
		if !strings.Contains(got, line) {
			t.Fatalf("ruleset with bind address lacks %q:\n%s", line, got)
		}
	}
	if strings.Contains(got, "postrouting") {
		t.Fatalf("postrouting chain without remote tasks:\n%s", got)
	}
}

func TestTunnelHost(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // "" = error
	}{
		{"10.99.0.11:4789", "10.99.0.11"},
		{"[::ffff:10.0.0.1]:1", "10.0.0.1"},
		{"127.0.0.1:4789", ""},
		{"0.0.0.0:4789", ""},
		{"[2001:db8::1]:4789", ""},
		{"node-1.example:4789", ""},
		{"10.99.0.11", ""},
	} {
		got, err := tunnelHost(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("tunnelHost(%q) = %s, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("tunnelHost(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

// scriptRecorder stands in for nft.
type scriptRecorder struct {
	mu      sync.Mutex
	scripts []string
}

func (r *scriptRecorder) run(_ context.Context, s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scripts = append(r.scripts, s)
	return nil
}

func (r *scriptRecorder) last() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.scripts) == 0 {
		return "", 0
	}
	return r.scripts[len(r.scripts)-1], len(r.scripts)
}

// waitScript waits until the last script applied satisfies ok and
// returns it with the number of scripts applied.
func (r *scriptRecorder) waitScript(t *testing.T, what string, ok func(string) bool) (string, int) {
	t.Helper()
	eventually(t, what, func() bool { s, _ := r.last(); return ok(s) })
	return r.last()
}

// The kernel gets every port whose local tasks accept connections: local
// tasks at their containers, remote ones at their nodes (routable tunnel
// hosts only; a loopback tunnel keeps the port in userspace); a local task
// that does not listen gets nothing from the kernel.
func TestFastPathSync(t *testing.T) {
	a, b := twoNodes(t, nodeOpts{})
	rec := &scriptRecorder{}
	a.mesh.fast = &fastPath{run: rec.run}
	httpTask(t, a, "task-a1")
	httpTask(t, a, "task-a2")
	httpTask(t, b, "task-b1")
	a.addTask("task-deaf", uint16(freePort(t))) // nothing listens there
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	local := Port{Protocol: TCP, Published: p1, Target: 80, Backends: []Backend{a.backend("task-a1"), a.backend("task-a2")}}
	mixed := Port{Protocol: TCP, Published: p2, Target: 80, Backends: []Backend{a.backend("task-a1"), b.backend("task-b1")}}
	deaf := Port{Protocol: TCP, Published: p3, Target: 80, Backends: []Backend{a.backend("task-deaf")}}
	apply(t, []Port{local, mixed, deaf}, a, b)
	s, n := rec.waitScript(t, "both local tasks in the kernel", func(s string) bool {
		return strings.Contains(s, "tcp dport "+hostPortNum(p1)+" dnat ip to numgen inc mod 2")
	})
	if strings.Contains(s, "dport "+hostPortNum(p2)+" ") || strings.Contains(s, "dport "+hostPortNum(p3)+" ") {
		t.Fatalf("%d scripts, last:\n%s", n, s)
	}
	a.mesh.fast.mu.Lock()
	active := maps.Clone(a.mesh.fast.active)
	a.mesh.fast.mu.Unlock()
	if !active[local.key()] || active[mixed.key()] || active[deaf.key()] {
		t.Fatalf("active %v", active)
	}
	// The userspace listener stays bound and serves what reaches it.
	if got := countHTTP(t, hostPort("127.0.0.1", p1), 4); got["task-a1"] != 2 || got["task-a2"] != 2 {
		t.Fatalf("answers %v", got)
	}
	apply(t, []Port{local, mixed, deaf}, a, b) // no change: nft not run
	if _, m := rec.last(); m != n {
		t.Fatalf("no-op Update ran nft (%d scripts, %d before)", m, n)
	}
	local.Backends = append(local.Backends, b.backend("task-b1")) // a loopback tunnel host
	apply(t, []Port{local, mixed, deaf}, a, b)
	rec.waitScript(t, "no kernel rules", func(s string) bool { return s == nftRuleset(netip.Addr{}, nil) })
	local.Backends = local.Backends[:1]
	apply(t, []Port{local, mixed, deaf}, a, b)
	rec.waitScript(t, "one local task", func(s string) bool {
		return strings.Contains(s, "dport "+hostPortNum(p1)+" dnat ip to 127.0.0.1:")
	})
	// A task on a node with a routable tunnel host: the kernel sends its
	// share to that node's published port and marks the connection.
	far := Backend{TaskID: "task-far", NodeID: "node-far", Tunnel: "192.0.2.9:4789"}
	local.Backends = append(local.Backends, far)
	apply(t, []Port{local, mixed, deaf}, a, b)
	rec.waitScript(t, "a local and a remote task", func(s string) bool {
		return strings.Contains(s, "dnat ip to numgen inc mod 2 map { 0 : 127.0.0.1 . ") &&
			strings.Contains(s, "1 : 192.0.2.9 . "+hostPortNum(p1)+" }") &&
			strings.Contains(s, "ct status dnat ip daddr { 192.0.2.9 } tcp dport "+hostPortNum(p1)+" ip dscp set 0x3b masquerade")
	})
	_ = a.mesh.Close()
	if s, _ := rec.last(); s != nftRuleset(netip.Addr{}, nil) {
		t.Fatalf("Close: last script:\n%s", s)
	}
}

// commandRecorder stands in for the iptables commands.
type commandRecorder struct {
	calls []string
	fail  map[string]bool   // command lines that fail
	out   map[string]string // what command lines print
}

func (r *commandRecorder) run(_ context.Context, stdin, name string, args ...string) (string, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	if stdin != "" {
		line += "\n" + stdin
	}
	r.calls = append(r.calls, line)
	if r.fail[line] {
		return "", errors.New("exit status 1")
	}
	return r.out[line], nil
}

func TestJumpPosition(t *testing.T) {
	for _, tc := range []struct {
		name, listing string
		want          int
	}{
		{"engine default", "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n", 1},
		{"host rules first", "-N DOCKER-USER\n-A DOCKER-USER -i eth0 ! -s 10.0.0.0/8 -j DROP\n-A DOCKER-USER -j RETURN\n", 2},
		{"no final return", "-N DOCKER-USER\n-A DOCKER-USER -i eth0 -j DROP\n", 0},
		{"empty chain", "-N DOCKER-USER\n", 0},
		{"a return that is not bare", "-N DOCKER-USER\n-A DOCKER-USER -p udp -j RETURN\n", 0},
	} {
		if got := jumpPosition("DOCKER-USER", tc.listing); got != tc.want {
			t.Errorf("%s: jumpPosition = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestHostForward(t *testing.T) {
	rule := func(p Protocol, port uint16) fastRule {
		return fastRule{Protocol: p, Published: port, Backends: []netip.AddrPort{mustAddrPort("10.0.0.2:80")}}
	}
	restore := func(lines ...string) string {
		return "iptables-restore -w --noflush\n*filter\n:SWARMD-MESH - [0:0]\n" + strings.Join(lines, "") + "COMMIT\n"
	}
	accept := func(p Protocol, port int) string {
		return fmt.Sprintf("-A SWARMD-MESH -p %s -m conntrack --ctstate DNAT --ctorigdstport %d -j ACCEPT\n", p, port)
	}
	for _, tc := range []struct {
		name    string
		listing string // iptables -S DOCKER-USER
		fail    []string
		want    []string
	}{
		{"engine chain, jump missing", "-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n", []string{"iptables -w -C DOCKER-USER -j SWARMD-MESH"}, []string{
			restore(accept(TCP, 80), accept(UDP, 80), accept(TCP, 8080)),
			"iptables -w -S DOCKER-USER",
			"iptables -w -C DOCKER-USER -j SWARMD-MESH",
			"iptables -w -I DOCKER-USER 1 -j SWARMD-MESH",
		}},
		{"host rules stay first", "-N DOCKER-USER\n-A DOCKER-USER -s 192.0.2.0/24 -j DROP\n-A DOCKER-USER -j RETURN\n", []string{"iptables -w -C DOCKER-USER -j SWARMD-MESH"}, []string{
			restore(accept(TCP, 80), accept(UDP, 80), accept(TCP, 8080)),
			"iptables -w -S DOCKER-USER",
			"iptables -w -C DOCKER-USER -j SWARMD-MESH",
			"iptables -w -I DOCKER-USER 2 -j SWARMD-MESH",
		}},
		{"no final return", "-N DOCKER-USER\n", []string{"iptables -w -C DOCKER-USER -j SWARMD-MESH"}, []string{
			restore(accept(TCP, 80), accept(UDP, 80), accept(TCP, 8080)),
			"iptables -w -S DOCKER-USER",
			"iptables -w -C DOCKER-USER -j SWARMD-MESH",
			"iptables -w -A DOCKER-USER -j SWARMD-MESH",
		}},
		{"jump already there (a restart)", "-N DOCKER-USER\n-A DOCKER-USER -j SWARMD-MESH\n-A DOCKER-USER -j RETURN\n", nil, []string{
			restore(accept(TCP, 80), accept(UDP, 80), accept(TCP, 8080)),
			"iptables -w -S DOCKER-USER",
			"iptables -w -C DOCKER-USER -j SWARMD-MESH",
		}},
		{"no engine chain", "", []string{"iptables -w -S DOCKER-USER", "iptables -w -C FORWARD -j SWARMD-MESH"}, []string{
			restore(accept(TCP, 80), accept(UDP, 80), accept(TCP, 8080)),
			"iptables -w -S DOCKER-USER",
			"iptables -w -C FORWARD -j SWARMD-MESH",
			"iptables -w -I FORWARD 1 -j SWARMD-MESH",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &commandRecorder{fail: map[string]bool{}, out: map[string]string{"iptables -w -S DOCKER-USER": tc.listing}}
			for _, f := range tc.fail {
				rec.fail[f] = true
			}
			h := &hostForward{run: rec.run}
			ctx := context.Background()
			if err := h.allow(ctx, []fastRule{rule(TCP, 8080), rule(UDP, 80), rule(TCP, 80), {Protocol: TCP, Published: 9}}, false); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rec.calls, tc.want) {
				t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(rec.calls, "\n"), strings.Join(tc.want, "\n"))
			}
			// Same ports: nothing to do. New rules kept beside the old
			// (keep), then exactly the new ones.
			rec.calls = nil
			if err := h.allow(ctx, []fastRule{rule(UDP, 80), rule(TCP, 80), rule(TCP, 8080)}, false); err != nil || len(rec.calls) != 0 {
				t.Fatalf("no-op allow: %v, calls %q", err, rec.calls)
			}
			if err := h.allow(ctx, []fastRule{rule(TCP, 443)}, true); err != nil {
				t.Fatal(err)
			}
			if err := h.allow(ctx, []fastRule{rule(TCP, 443)}, false); err != nil {
				t.Fatal(err)
			}
			want := []string{restore(accept(TCP, 80), accept(UDP, 80), accept(TCP, 443), accept(TCP, 8080)), restore(accept(TCP, 443))}
			if !slices.Equal(rec.calls, want) {
				t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(rec.calls, "\n"), strings.Join(want, "\n"))
			}
			// No port left: the jump and the chain go.
			rec.calls = nil
			if err := h.allow(ctx, nil, false); err != nil {
				t.Fatal(err)
			}
			if n := len(rec.calls); n < 3 || rec.calls[n-2] != "iptables -w -F SWARMD-MESH" || rec.calls[n-1] != "iptables -w -X SWARMD-MESH" {
				t.Fatalf("remove calls %q", rec.calls)
			}
			rec.calls = nil
			if err := h.remove(ctx); err != nil || len(rec.calls) != 0 {
				t.Fatalf("second remove: %v, calls %q", err, rec.calls)
			}
		})
	}
}

const netnsChildEnv = "SWARMD_MESH_NETNS_CHILD"

// TestFastPathNetns programs real nftables rules in a throwaway network
// namespace (the test binary re-executed under unshare -n) and checks the
// kernel, not the userspace mesh, forwards the connections.
func TestFastPathNetns(t *testing.T) {
	if os.Getenv(netnsChildEnv) == "1" {
		fastPathChild(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, bin := range []string{"unshare", "nft", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("no %s", bin)
		}
	}
	if err := exec.Command("unshare", "-n", "true").Run(); err != nil {
		t.Skipf("unshare -n: %v", err)
	}
	cmd := exec.Command("unshare", "-n", os.Args[0], "-test.run=^TestFastPathNetns$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestFastPathNetns") {
		t.Fatalf("child in a network namespace: %v\n%s", err, out)
	}
}

func fastPathChild(t *testing.T) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	// The container records the client address it sees.
	seen := make(chan string, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.RemoteAddr
		_, _ = io.WriteString(w, "task-1")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	n := &fakeNode{id: "node-a", tasks: map[string]uint16{"task-1": uint16(ln.Addr().(*net.TCPAddr).Port)}}
	m, err := New(Config{NodeID: "node-a", BindAddr: "127.0.0.2", Resolver: n, TargetOverride: n.override,
		FastPath: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	n.mesh = m
	udpEchoTask(t, n, "udp-1")
	udpEchoTask(t, n, "udp-2")
	pub := freePort(t)
	if err := m.Update([]Port{
		{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{n.backend("task-1")}},
		{Protocol: UDP, Published: pub, Target: 53, Backends: []Backend{n.backend("udp-1"), n.backend("udp-2")}},
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both ports on the fast path", func() bool {
		m.fast.mu.Lock()
		defer m.fast.mu.Unlock()
		return m.fast.active[portKey{TCP, pub}] && m.fast.active[portKey{UDP, pub}]
	})
	list, err := exec.Command("nft", "list", "table", "ip", nftTable).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list: %v: %s", err, list)
	}
	check := func(wantKernel bool) {
		t.Helper()
		c, err := net.Dial("tcp", hostPort("127.0.0.2", pub))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(c)
		if err != nil || !strings.HasSuffix(string(body), "task-1") {
			t.Fatalf("answer %q, %v", body, err)
		}
		// DNAT keeps the client's address; the userspace proxy does not.
		got := <-seen
		if kernel := got == c.LocalAddr().String(); kernel != wantKernel {
			t.Fatalf("container saw %s, client is %s: kernel path %v, want %v\n%s", got, c.LocalAddr(), kernel, wantKernel, list)
		}
	}
	check(true)
	check(true)
	// UDP: each new flow goes to the next container (numgen inc).
	answers := map[string]int{}
	for range 4 {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(mustAddrPort(hostPort("127.0.0.2", pub))))
		if err != nil {
			t.Fatal(err)
		}
		answers[udpAsk(t, c, "ping")]++
		_ = c.Close()
	}
	if answers["udp-1"] != 2 || answers["udp-2"] != 2 {
		t.Fatalf("udp answers %v\n%s", answers, list)
	}
	m.mu.Lock()
	upl := m.ports[portKey{UDP, pub}]
	m.mu.Unlock()
	upl.flowsMu.Lock()
	userspaceFlows := len(upl.flows)
	upl.flowsMu.Unlock()
	if userspaceFlows != 0 {
		t.Fatalf("%d udp flows went through userspace", userspaceFlows)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nft", "list", "table", "ip", nftTable).CombinedOutput(); err == nil {
		t.Fatalf("table still there after Close:\n%s", out)
	}
}

// A table and a chain left by an earlier swarmd (killed) go at the first
// sync, even when there is nothing to forward; then no-op syncs run
// nothing.
func TestFastPathLeftovers(t *testing.T) {
	t.Run("nft table", func(t *testing.T) {
		a, _ := twoNodes(t, nodeOpts{})
		rec := &scriptRecorder{}
		a.mesh.fast = &fastPath{run: rec.run}
		for i := range 2 {
			if err := a.mesh.Update(nil); err != nil {
				t.Fatal(err)
			}
			if s, n := rec.last(); n != 1 || s != nftRuleset(netip.Addr{}, nil) {
				t.Fatalf("after Update %d: %d scripts, last:\n%s", i+1, n, s)
			}
		}
	})
	for _, tc := range []struct {
		name string
		left bool
		want []string
	}{
		{"iptables chain left", true, []string{
			"iptables -w -S SWARMD-MESH",
			"iptables -w -D DOCKER-USER -j SWARMD-MESH",
			"iptables -w -D FORWARD -j SWARMD-MESH",
			"iptables -w -F SWARMD-MESH",
			"iptables -w -X SWARMD-MESH",
		}},
		{"no iptables chain", false, []string{"iptables -w -S SWARMD-MESH"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &commandRecorder{fail: map[string]bool{
				"iptables -w -D DOCKER-USER -j SWARMD-MESH": true,
				"iptables -w -D FORWARD -j SWARMD-MESH":     true,
				"iptables -w -S SWARMD-MESH":                !tc.left,
			}}
			h := &hostForward{run: rec.run}
			for range 2 {
				if err := h.allow(context.Background(), nil, false); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(rec.calls, tc.want) {
				t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(rec.calls, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
