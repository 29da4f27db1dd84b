//go:build integration

package mesh

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openswarm/swarmd/integration/testbed"
)

// BenchmarkMeshRequests measures HTTP requests (a new connection each, as
// most clients of a published port make them) through the routing mesh
// against the same requests sent straight to the container, in one run on
// the testbed. One task runs on h1:
//
//	direct     client in h1's namespace -> the container's address:80
//	local      client in h1's namespace -> 10.99.0.11:8080 (h1's mesh, local task)
//	direct-h2  client in h2's namespace -> the container's address:80, routed
//	           by h1 (the testbed gives each engine a docker0 subnet of its
//	           own for this; real hosts cannot reach another's containers)
//	remote     client in h2's namespace -> 10.99.0.12:8080 (h2's mesh, to h1)
//	proxy      client in h1's namespace -> 10.99.0.11:9090, a minimal
//	           userspace proxy of the benchmark's own (accept, dial the
//	           container, copy both ways): the anchor of the userspace path
//
// The paths take turns in 20 rounds of b.N/20 requests each; per path it
// reports requests per second, the ratio to direct over the whole run (-x)
// and the median of the 20 rounds' ratios (-x-med: a round's paths run one
// right after the other, so load from elsewhere that falls on a single
// round moves it less), and the latency percentiles. The remote path is
// also compared with direct-h2, the same client on the same node without
// the mesh (-xs, -xs-med): what the mesh itself costs, apart from the hop
// between the nodes; the local path is compared with the minimal proxy
// (-xp, -xp-med). Run with a bounded count: -bench MeshRequests -benchtime
// 3000x. It runs the mesh on its userspace path alone
// (--mesh-fast-path=false).
func BenchmarkMeshRequests(b *testing.B) { benchMeshRequests(b, "--mesh-fast-path=false") }

// BenchmarkMeshRequestsFastPath is BenchmarkMeshRequests on the kernel
// path (the default): nftables DNAT to the local container, and to h1 from
// h2.
func BenchmarkMeshRequestsFastPath(b *testing.B) { benchMeshRequests(b) }

func benchMeshRequests(b *testing.B, swarmdArgs ...string) {
	s := newSwarmCfg(b, testbed.Config{Hosts: 2, RoutedBridges: true}, swarmdArgs...)
	m := s.hosts[0]
	s.docker(m, "service", "create", "--name", "bench", "--replicas", "1", "--publish", "8080:80",
		"--constraint", "node.hostname==h1", "--detach", "--no-resolve-image", image)
	var containerIP string
	deadline := time.Now().Add(60 * time.Second)
	for containerIP == "" {
		ids, _ := m.Engine(s.ctx, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=bench")
		if id := strings.TrimSpace(ids); id != "" {
			containerIP, _ = m.Engine(s.ctx, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", id)
			containerIP = strings.TrimSpace(containerIP)
		}
		if time.Now().After(deadline) {
			b.Fatal("the bench task does not run")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.hosts[1].RouteBridge(s.ctx, s.hosts[0]); err != nil {
		b.Fatal(err)
	}
	proxyAddr, err := bareProxy(b, s.hosts[0], containerIP+":80")
	if err != nil {
		b.Fatal(err)
	}
	// same is the index of the case sending the same requests from the
	// same node without the mesh.
	cases := []struct {
		name string
		from *testbed.Host
		addr string
		same int
	}{
		{"direct", s.hosts[0], containerIP + ":80", 0},
		{"local", s.hosts[0], s.hosts[0].IP + ":8080", 0},
		{"direct-h2", s.hosts[1], containerIP + ":80", 2},
		{"remote", s.hosts[1], s.hosts[1].IP + ":8080", 2},
		{"proxy", s.hosts[0], proxyAddr, 0},
	}
	clients := make([]*http.Client, len(cases))
	for i, tc := range cases {
		clients[i] = tc.from.HTTPClient()
		clients[i].Timeout = 5 * time.Second
		url := "http://" + tc.addr + "/"
		warm := time.Now().Add(20 * time.Second)
		for {
			if _, err := fetch(clients[i], url); err == nil {
				break
			} else if time.Now().After(warm) {
				b.Fatalf("%s does not answer: %v", url, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The paths take turns, a share of b.N requests each per round, so
	// that load from elsewhere falls on all of them alike.
	const rounds = 20
	per := max(b.N/rounds, 1)
	lat := make([][]time.Duration, len(cases))
	took := make([]time.Duration, len(cases))
	round := make([][]time.Duration, len(cases))
	b.ResetTimer()
	for r := range rounds {
		for k := range cases {
			i := (k + r) % len(cases)
			start := time.Now()
			l, failed := requests(clients[i], "http://"+cases[i].addr+"/", per)
			took[i] += time.Since(start)
			round[i] = append(round[i], time.Since(start))
			if failed > 0 {
				b.Fatalf("%s: %d of %d requests failed", cases[i].name, failed, per)
			}
			lat[i] = append(lat[i], l...)
		}
	}
	b.StopTimer()
	// ratio reports case i against case base over the whole run and as
	// the median of the rounds' ratios.
	ratio := func(i, base int, unit string) {
		b.ReportMetric(took[base].Seconds()/took[i].Seconds(), cases[i].name+"-"+unit)
		ratios := make([]float64, rounds)
		for r := range rounds {
			ratios[r] = round[base][r].Seconds() / round[i][r].Seconds()
		}
		slices.Sort(ratios)
		b.ReportMetric((ratios[rounds/2-1]+ratios[rounds/2])/2, cases[i].name+"-"+unit+"-med")
	}
	for i, tc := range cases {
		rate := float64(rounds*per) / took[i].Seconds()
		slices.Sort(lat[i])
		b.ReportMetric(rate, tc.name+"-req/s")
		ratio(i, 0, "x")
		if tc.same != 0 && tc.same != i {
			ratio(i, tc.same, "xs")
		}
		if tc.name == "local" {
			ratio(i, len(cases)-1, "xp")
		}
		b.ReportMetric(float64(lat[i][len(lat[i])/2].Microseconds())/1000, tc.name+"-p50-ms")
		b.ReportMetric(float64(lat[i][len(lat[i])*99/100].Microseconds())/1000, tc.name+"-p99-ms")
	}
}

// requests sends n requests to url from 8 concurrent clients and returns
// their latencies and how many failed.
func requests(c *http.Client, url string, n int) ([]time.Duration, int64) {
	const workers = 8
	lat := make([]time.Duration, n)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				start := time.Now()
				if _, err := fetch(c, url); err != nil {
					failed.Add(1)
				}
				lat[i] = time.Since(start)
			}
		}()
	}
	wg.Wait()
	return lat, failed.Load()
}

func fetch(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(body), nil
}

// BenchmarkMeshPropagation measures how fast the mesh follows its tasks,
// on three hosts: each op scales a service from 2 to 3 replicas (one per
// node) and back. join-ms is from the new task's RUNNING status (its
// timestamp, set by its node) until every node's mesh has routed a
// request to it; leave-ms is from the scale-down call until no node routes
// to the removed task any more (its container still runs for a moment:
// answers from it after that would be the mesh's). Both are the worst
// node of each op, averaged over ops.
func BenchmarkMeshPropagation(b *testing.B) {
	s := newSwarm(b, 3)
	m := s.hosts[0]
	s.docker(m, "service", "create", "--name", "prop", "--replicas", "2", "--replicas-max-per-node", "1",
		"--publish", "8090:80", "--detach", "--no-resolve-image", image)
	running := func(want int) map[string]string { // task ID -> container hostname
		out := map[string]string{}
		s.eventually(60*time.Second, fmt.Sprintf("prop %d/%d", want, want), func() bool {
			ids, err := m.Docker(s.ctx, "service", "ps", "prop", "-q", "--filter", "desired-state=running")
			if err != nil {
				return false
			}
			clear(out)
			for _, id := range strings.Fields(ids) {
				st, err := m.Docker(s.ctx, "inspect", "--format", "{{.Status.State}} {{.Status.ContainerStatus.ContainerID}}", id)
				f := strings.Fields(st)
				if err != nil || len(f) != 2 || f[0] != "running" {
					return false
				}
				out[id] = f[1][:12]
			}
			return len(out) == want
		})
		return out
	}
	before := running(2)
	var joinTotal, leaveTotal time.Duration
	b.ResetTimer()
	for range b.N {
		s.docker(m, "service", "scale", "--detach", "prop=3")
		after := running(3)
		var newID string
		for id := range after {
			if _, ok := before[id]; !ok {
				newID = id
			}
		}
		ts, err := m.Docker(s.ctx, "inspect", "--format", "{{.Status.Timestamp.UnixNano}}", newID)
		if err != nil {
			b.Fatal(err)
		}
		var nanos int64
		fmt.Sscan(ts, &nanos)
		runningAt := time.Unix(0, nanos)
		var worst time.Duration
		for _, h := range s.hosts {
			c := h.HTTPClient()
			c.Timeout = 2 * time.Second
			deadline := time.Now().Add(20 * time.Second)
			for {
				body, err := fetch(c, "http://"+h.IP+":8090/")
				if err == nil && strings.HasPrefix(body, after[newID]) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%s never routed to the new task", h.Name)
				}
			}
			worst = max(worst, time.Since(runningAt))
		}
		joinTotal += worst

		// Requests from every node over a fixed observation window after
		// the scale-down call: when did each task answer last?
		scaled := time.Now()
		s.docker(m, "service", "scale", "--detach", "prop=2")
		lastSeen := map[string]time.Time{}
		clients := make([]*http.Client, len(s.hosts))
		for i, h := range s.hosts {
			clients[i] = h.HTTPClient()
			clients[i].Timeout = 2 * time.Second
		}
		for i := 0; time.Since(scaled) < 3*time.Second; i++ {
			h := s.hosts[i%len(s.hosts)]
			if body, err := fetch(clients[i%len(s.hosts)], "http://"+h.IP+":8090/"); err == nil {
				lastSeen[strings.Fields(body)[0]] = time.Now()
			}
		}
		now := running(2)
		for id, host := range after {
			if _, ok := now[id]; !ok {
				if t, ok := lastSeen[host]; ok {
					leaveTotal += t.Sub(scaled)
				}
			}
		}
		before = now
	}
	b.StopTimer()
	b.ReportMetric(float64(joinTotal.Milliseconds())/float64(b.N), "join-ms")
	b.ReportMetric(float64(leaveTotal.Milliseconds())/float64(b.N), "leave-ms")
}

// BenchmarkServiceCreate3Hosts measures `docker service create --replicas 6
// --publish` until 6/6 run over three hosts, through swarmd and, as the
// anchor in the same run on the same hosts and engines, through the
// engines' own swarm mode (dockerd, on port 2477 so both swarms coexist).
func BenchmarkServiceCreate3Hosts(b *testing.B) {
	s := newSwarm(b, 3)
	m := s.hosts[0]
	// dockerd's own swarm over the same three engines.
	if out, err := m.Engine(s.ctx, "swarm", "init", "--advertise-addr", m.IP+":2477", "--listen-addr", m.IP+":2477"); err != nil {
		b.Fatalf("dockerd swarm init: %v %s", err, out)
	}
	b.Cleanup(func() {
		for _, h := range s.hosts {
			_, _ = h.Engine(s.ctx, "swarm", "leave", "--force")
		}
	})
	token, err := m.Engine(s.ctx, "swarm", "join-token", "-q", "worker")
	if err != nil {
		b.Fatal(err)
	}
	for _, h := range s.hosts[1:] {
		if out, err := h.Engine(s.ctx, "swarm", "join", "--token", strings.TrimSpace(token), "--advertise-addr", h.IP+":2477",
			"--listen-addr", h.IP+":2477", m.IP+":2477"); err != nil {
			b.Fatalf("dockerd swarm join: %v %s", err, out)
		}
	}
	clis := []struct {
		name string
		cli  func(args ...string) (string, error)
	}{
		{"swarmd", func(args ...string) (string, error) { return m.Docker(s.ctx, args...) }},
		{"dockerd", func(args ...string) (string, error) { return m.Engine(s.ctx, args...) }},
	}
	for _, c := range clis {
		b.Run(c.name, func(b *testing.B) {
			var total time.Duration
			for i := range b.N {
				name := fmt.Sprintf("c%d", i)
				port := 18100 + i
				start := time.Now()
				if out, err := c.cli("service", "create", "--name", name, "--replicas", "6", "--publish", fmt.Sprintf("%d:80", port),
					"--detach", "--no-resolve-image", image); err != nil {
					b.Fatalf("create: %v %s", err, out)
				}
				for {
					out, err := c.cli("service", "ls", "--filter", "name="+name, "--format", "{{.Replicas}}")
					if err == nil && strings.TrimSpace(out) == "6/6" {
						break
					}
					if time.Since(start) > 2*time.Minute {
						b.Fatalf("%s: %s not 6/6 after 2 minutes: %q", c.name, name, out)
					}
					time.Sleep(50 * time.Millisecond)
				}
				total += time.Since(start)
				b.StopTimer()
				_, _ = c.cli("service", "rm", name)
				b.StartTimer()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s-to-6/6")
		})
	}
}

// bareProxy serves, in h's namespace on h's address, a minimal TCP proxy to
// target: per connection a dial and a copy each way (splice(2) between the
// two sockets), nothing else. It stops with the benchmark.
func bareProxy(b *testing.B, h *testbed.Host, target string) (string, error) {
	lis, err := h.Listen("tcp", h.IP+":9090")
	if err != nil {
		return "", err
	}
	b.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				bc, err := h.DialContext(context.Background(), "tcp", target)
				if err != nil {
					return
				}
				defer bc.Close()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(bc, c)
					_ = bc.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				_, _ = io.Copy(c, bc)
				_ = c.(*net.TCPConn).CloseWrite()
				<-done
			}()
		}
	}()
	return lis.Addr().String(), nil
}
