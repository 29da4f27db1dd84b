package mesh

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// benchTargets starts node A and node B; task-a1 runs on A and task-b1 on
// B. Published port "local" on A has only task-a1 (local path), port
// "tunnel" on A only task-b1 (tunnel path through B).
func benchTargets(b *testing.B, oa, ob nodeOpts) (direct, local, tunnel string) {
	oa.bind, ob.bind = "127.0.0.1", "127.0.0.2"
	na, nb := startNode(b, "node-a", oa), startNode(b, "node-b", ob)
	srv := httpTask(b, na, "task-a1")
	httpTask(b, nb, "task-b1")
	pl, pt := freePort(b), freePort(b)
	ports := []Port{
		{Protocol: TCP, Published: pl, Target: 80, Backends: []Backend{na.backend("task-a1")}},
		{Protocol: TCP, Published: pt, Target: 80, Backends: []Backend{nb.backend("task-b1")}},
	}
	for _, n := range []*fakeNode{na, nb} {
		if err := n.mesh.Update(ports); err != nil {
			b.Fatal(err)
		}
	}
	return srv.Listener.Addr().String(), hostPort("127.0.0.1", pl), hostPort("127.0.0.1", pt)
}

func benchHTTP(b *testing.B, addr string, keepAlive bool) {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableKeepAlives: !keepAlive}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	if _, err := httpGet(client, addr); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := httpGet(client, addr); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkMeshHTTP compares HTTP requests/s over keep-alive connections
// directly to the container, through the mesh to a local task (splice),
// and through the mesh and the remote node's tunnel (plain TCP tunnel).
func BenchmarkMeshHTTP(b *testing.B) {
	direct, local, tunnel := benchTargets(b, nodeOpts{}, nodeOpts{})
	for _, bc := range []struct{ name, addr string }{{"direct", direct}, {"local", local}, {"tunnel", tunnel}} {
		b.Run(bc.name, func(b *testing.B) { benchHTTP(b, bc.addr, true) })
	}
}

// BenchmarkMeshHTTPNewConn is BenchmarkMeshHTTP with one connection per
// request (connection setup cost: backend dial, tunnel dial and header).
// Run with a bounded -benchtime (e.g. 3000x) to spare ephemeral ports.
func BenchmarkMeshHTTPNewConn(b *testing.B) {
	direct, local, tunnel := benchTargets(b, nodeOpts{}, nodeOpts{})
	for _, bc := range []struct{ name, addr string }{{"direct", direct}, {"local", local}, {"tunnel", tunnel}} {
		b.Run(bc.name, func(b *testing.B) { benchHTTP(b, bc.addr, false) })
	}
}

// BenchmarkMeshHTTPTLS measures the tunnel path with mutual TLS.
func BenchmarkMeshHTTPTLS(b *testing.B) {
	ca := newTestCA(b)
	_, _, tunnel := benchTargets(b, ca.tlsOpts(b, "node-a"), ca.tlsOpts(b, "node-b"))
	b.Run("tunnel", func(b *testing.B) { benchHTTP(b, tunnel, true) })
	b.Run("tunnel-newconn", func(b *testing.B) { benchHTTP(b, tunnel, false) })
}

// BenchmarkMeshThroughput moves 1 MiB responses over keep-alive
// connections: direct, local path (splice(2) both ways) and tunnel path.
func BenchmarkMeshThroughput(b *testing.B) {
	na := startNode(b, "node-a", nodeOpts{bind: "127.0.0.1"})
	nb := startNode(b, "node-b", nodeOpts{bind: "127.0.0.2"})
	body := make([]byte, 1<<20)
	big := func(n *fakeNode, task string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body) }))
		b.Cleanup(srv.Close)
		n.addTask(task, uint16(srv.Listener.Addr().(*net.TCPAddr).Port))
		return srv.Listener.Addr().String()
	}
	direct := big(na, "big-a")
	big(nb, "big-b")
	pl, pt := freePort(b), freePort(b)
	ports := []Port{
		{Protocol: TCP, Published: pl, Target: 80, Backends: []Backend{na.backend("big-a")}},
		{Protocol: TCP, Published: pt, Target: 80, Backends: []Backend{nb.backend("big-b")}},
	}
	for _, n := range []*fakeNode{na, nb} {
		if err := n.mesh.Update(ports); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct{ name, addr string }{
		{"direct", direct}, {"local", hostPort("127.0.0.1", pl)}, {"tunnel", hostPort("127.0.0.1", pt)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			benchHTTP(b, bc.addr, true)
		})
	}
}

// BenchmarkFastPathNetns compares, in a throwaway network namespace (the
// test binary re-executed under unshare -n; root only), HTTP to the
// container directly and through a published port forwarded by the
// kernel fast path. Its results are the child's, printed above a skip.
func BenchmarkFastPathNetns(b *testing.B) {
	if os.Getenv(netnsChildEnv) == "1" {
		fastPathBenchChild(b)
		return
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if err := exec.Command("unshare", "-n", "true").Run(); err != nil {
		b.Skipf("unshare -n: %v", err)
	}
	bt := flag.Lookup("test.benchtime").Value.String()
	cmd := exec.Command("unshare", "-n", os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkFastPathNetns$", "-test.benchtime="+bt)
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "BenchmarkFastPathNetns/") {
			fmt.Println(l)
		}
	}
	b.Skip("measured in a network namespace, results above")
}

func fastPathBenchChild(b *testing.B) {
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		b.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	n := &fakeNode{id: "node-a", tasks: map[string]uint16{}}
	// Two containers alike, so TIME_WAIT left by one variant never
	// collides with the (DNATed) connections of the other.
	srv := httpTask(b, n, "task-0")
	httpTask(b, n, "task-1")
	m, err := New(Config{NodeID: "node-a", BindAddr: "127.0.0.2", Resolver: n, TargetOverride: n.override,
		FastPath: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	n.mesh = m
	pub := freePort(b)
	if err := m.Update([]Port{{Protocol: TCP, Published: pub, Target: 80, Backends: []Backend{n.backend("task-1")}}}); err != nil {
		b.Fatal(err)
	}
	direct, fast := srv.Listener.Addr().String(), hostPort("127.0.0.2", pub)
	for _, bc := range []struct {
		name, addr string
		keepAlive  bool
	}{{"direct", direct, true}, {"fast", fast, true}, {"direct-newconn", direct, false}, {"fast-newconn", fast, false}} {
		b.Run(bc.name, func(b *testing.B) { benchHTTP(b, bc.addr, bc.keepAlive) })
	}
}
