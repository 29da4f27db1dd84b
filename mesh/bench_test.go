package mesh

import (
	"net"
	"net/http"
	"net/http/httptest"
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
