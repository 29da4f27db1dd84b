//go:build integration

// Package mesh tests swarmd's ingress routing mesh on hosts that each
// have their own network namespace, Docker Engine and swarmd (the
// testbed), driven with the real docker CLI. The kernel has no IPVS.
package mesh

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openswarm/swarmd/integration/testbed"
)

const image = "swarmd-test:v1"

// swarmdBin builds the binaries once (or uses SWARMD_BIN_DIR).
var swarmdBin = sync.OnceValues(testbed.BuildBinaries)

// swarm is a testbed whose hosts formed one swarm: h1 the manager.
type swarm struct {
	t     testing.TB
	ctx   context.Context
	tb    *testbed.Testbed
	hosts []*testbed.Host
}

// newSwarm starts n hosts whose swarmd run with extra flags, and forms
// one swarm of them, h1 its manager.
func newSwarm(t testing.TB, n int, extra ...string) *swarm {
	t.Helper()
	return newSwarmCfg(t, testbed.Config{Hosts: n}, extra...)
}

// newSwarmCfg is newSwarm on a testbed made with cfg (its binaries,
// images and logger filled in).
func newSwarmCfg(t testing.TB, cfg testbed.Config, extra ...string) *swarm {
	t.Helper()
	testbed.RequireEngine(t)
	bin, err := swarmdBin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	cfg.SwarmdBin, cfg.Images, cfg.Logf = bin, []string{image}, t.Logf
	tb := testbed.NewSwarm(ctx, t, cfg, extra...)
	s := &swarm{t: t, ctx: ctx, tb: tb, hosts: tb.Hosts()}
	return s
}

func (s *swarm) docker(h *testbed.Host, args ...string) string {
	s.t.Helper()
	return h.MustDocker(s.ctx, s.t, args...)
}

func (s *swarm) eventually(timeout time.Duration, what string, cond func() bool) {
	s.t.Helper()
	testbed.Eventually(s.t, timeout, what, cond)
}

// get fetches http://addr/ with a fresh connection and returns the body
// (the answering container's hostname and version).
func get(addr string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return strings.Fields(string(b))[0], nil
}

// udpAsk sends msg to addr over UDP and returns the answer.
func udpAsk(addr, msg string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// TestRoutingMesh is the routing mesh as a docker user meets it on three
// hosts without IPVS, through the kernel path (the default) and through
// the userspace path alone.
func TestRoutingMesh(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"kernel", nil},
		{"userspace", []string{"--mesh-fast-path=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) { routingMesh(t, tc.args...) })
	}
}

func routingMesh(t *testing.T, swarmdArgs ...string) {
	s := newSwarm(t, 3, swarmdArgs...)
	m := s.hosts[0]
	// Two replicas kept off h3, so one node has no task of its own.
	s.docker(m, "service", "create", "--name", "web", "--replicas", "2", "--publish", "8080:80",
		"--publish", "published=5353,target=53,protocol=udp",
		"--constraint", "node.hostname!=h3", "--detach", "--no-resolve-image", image)
	s.eventually(60*time.Second, "web 2/2", func() bool {
		out, _ := m.Docker(s.ctx, "service", "ls", "--filter", "name=web", "--format", "{{.Replicas}}")
		return out == "2/2"
	})
	if out := s.docker(m, "service", "ps", "web", "--filter", "desired-state=running", "--format", "{{.Node}}"); strings.Contains(out, "h3") {
		t.Fatalf("a task landed on h3: %s", out)
	}

	t.Run("every node answers, both tasks serve", func(t *testing.T) {
		for _, h := range s.hosts {
			addr := h.IP + ":8080"
			s.eventually(10*time.Second, "port 8080 answers on "+h.Name, func() bool { _, err := get(addr); return err == nil })
		}
		seen := map[string]int{}
		for i := range 120 {
			h := s.hosts[i%3]
			who, err := get(h.IP + ":8080")
			if err != nil {
				t.Fatalf("request %d to %s: %v", i, h.Name, err)
			}
			seen[who]++
		}
		if len(seen) != 2 {
			t.Fatalf("answers over 120 requests: %v, want both tasks", seen)
		}
		t.Logf("answers over 120 requests: %v", seen)
	})

	t.Run("udp", func(t *testing.T) {
		for _, h := range s.hosts {
			var answer string
			s.eventually(10*time.Second, "udp 5353 answers on "+h.Name, func() bool {
				a, err := udpAsk(h.IP+":5353", "ping")
				answer = a
				return err == nil
			})
			if !strings.HasSuffix(answer, " ping") {
				t.Fatalf("%s: udp answer %q", h.Name, answer)
			}
		}
	})

	t.Run("a killed task leaves, its replacement joins", func(t *testing.T) {
		ids := strings.Fields(s.docker(s.hosts[1], "ps", "-q", "--filter", "label=com.docker.swarm.service.name=web"))
		if len(ids) == 0 {
			ids = strings.Fields(s.docker(m, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=web"))
		}
		// Requests run all along; count failures and when they happen.
		stop := make(chan struct{})
		var mu sync.Mutex
		var fails, oks []time.Time
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := get(s.hosts[2].IP + ":8080")
				mu.Lock()
				if err != nil {
					fails = append(fails, time.Now())
				} else {
					oks = append(oks, time.Now())
				}
				mu.Unlock()
			}
		}()
		killed := time.Now()
		var victimHost *testbed.Host
		for _, h := range s.hosts[:2] {
			if out, err := h.Engine(s.ctx, "kill", ids[0]); err == nil {
				victimHost = h
				break
			} else {
				t.Logf("%s: kill: %s", h.Name, out)
			}
		}
		if victimHost == nil {
			t.Fatal("could not kill a task container")
		}
		s.eventually(60*time.Second, "web back to 2/2", func() bool {
			out, _ := m.Docker(s.ctx, "service", "ls", "--filter", "name=web", "--format", "{{.Replicas}}")
			return out == "2/2" && time.Since(killed) > 2*time.Second
		})
		recovered := time.Now()
		// After recovery, 200 more requests must all succeed.
		s.eventually(60*time.Second, "200 requests after recovery", func() bool {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, ok := range oks {
				if ok.After(recovered) {
					n++
				}
			}
			return n >= 200
		})
		close(stop)
		wg.Wait()
		var late int
		var window time.Duration
		for _, f := range fails {
			if f.After(recovered) {
				late++
			}
			if d := f.Sub(killed); d > window {
				window = d
			}
		}
		t.Logf("killed a task on %s: %d failed requests, the last %v after the kill; %d after recovery", victimHost.Name, len(fails), window, late)
		if late > 0 {
			t.Fatalf("%d requests failed after the service was back to 2/2", late)
		}
	})

	t.Run("publish-rm frees the port everywhere; a taken port is refused", func(t *testing.T) {
		s.docker(m, "service", "create", "--name", "other", "--publish", "8081:80", "--detach", "--no-resolve-image", image)
		out, err := m.Docker(s.ctx, "service", "create", "--name", "clash", "--publish", "8081:80", "--detach", "--no-resolve-image", image)
		if err == nil || !strings.Contains(out, "8081") {
			t.Fatalf("a second service on port 8081: %v %q", err, out)
		}
		for _, h := range s.hosts {
			s.eventually(30*time.Second, "8081 answers on "+h.Name, func() bool { _, err := get(h.IP + ":8081"); return err == nil })
		}
		s.docker(m, "service", "update", "--publish-rm", "published=8081,target=80", "--detach", "other")
		if out := s.docker(m, "service", "inspect", "--format", "{{len .Spec.EndpointSpec.Ports}} {{len .Endpoint.Ports}}", "other"); out != "0 0" {
			t.Fatalf("ports after --publish-rm (spec, endpoint): %s", out)
		}
		for _, h := range s.hosts {
			s.eventually(10*time.Second, "8081 freed on "+h.Name, func() bool { return refused(h.IP + ":8081") })
		}
	})

	t.Run("host mode binds only where a task runs", func(t *testing.T) {
		s.docker(m, "service", "create", "--name", "hostmode", "--publish", "mode=host,published=9090,target=80",
			"--constraint", "node.hostname==h2", "--detach", "--no-resolve-image", image)
		s.eventually(60*time.Second, "hostmode 1/1", func() bool {
			out, _ := m.Docker(s.ctx, "service", "ls", "--filter", "name=hostmode", "--format", "{{.Replicas}}")
			return out == "1/1"
		})
		s.eventually(10*time.Second, "9090 answers on h2", func() bool { _, err := get(s.hosts[1].IP + ":9090"); return err == nil })
		for _, h := range []*testbed.Host{s.hosts[0], s.hosts[2]} {
			if !refused(h.IP + ":9090") {
				t.Fatalf("host-mode port 9090 open on %s, which runs no task", h.Name)
			}
		}
	})

	t.Run("removing the service frees the port everywhere", func(t *testing.T) {
		s.docker(m, "service", "rm", "web")
		for _, h := range s.hosts {
			s.eventually(10*time.Second, "8080 freed on "+h.Name, func() bool { return refused(h.IP + ":8080") })
		}
	})
}

// TestFastPath: with --mesh-fast-path (the default) the kernel forwards every published
// port, on hosts whose FORWARD policy is DROP (the engine's default when it
// turns forwarding on itself): on the node with the task straight to its
// container, keeping the client's address; on a node without it to the
// node with it, which delivers to its own task (the container sees the
// forwarding node as the client). No request goes through userspace once
// the rules are in; moving the task turns the rules around, and removing
// the service removes them and the host firewall's chain.
func TestFastPath(t *testing.T) {
	s := newSwarm(t, 2, "--mesh-fast-path")
	m, other := s.hosts[0], s.hosts[1]
	for _, h := range s.hosts {
		if out, err := h.Exec(s.ctx, "iptables", "-w", "-P", "FORWARD", "DROP"); err != nil {
			t.Fatalf("FORWARD policy on %s: %v: %s", h.Name, err, out)
		}
	}
	s.docker(m, "service", "create", "--name", "fast", "--replicas", "1", "--publish", "8080:80",
		"--constraint", "node.hostname==h1", "--detach", "--no-resolve-image", image)
	s.eventually(60*time.Second, "fast 1/1", func() bool {
		out, _ := m.Docker(s.ctx, "service", "ls", "--filter", "name=fast", "--format", "{{.Replicas}}")
		return out == "1/1"
	})
	// h1 sends the port to the container, h2 to h1.
	s.waitRule(m, "dnat to 172.17.")
	s.waitRule(other, "dnat to "+m.IP+":8080")
	s.waitRule(other, "ip dscp set 0x3b masquerade")
	for i := range 50 {
		h := s.hosts[i%2]
		if _, err := get(h.IP + ":8080"); err != nil {
			t.Fatalf("request %d to %s: %v", i, h.Name, err)
		}
	}
	// A client on the node without the task (output chain).
	if _, err := fetch(other.HTTPClient(), "http://"+other.IP+":8080/"); err != nil {
		t.Fatalf("request from h2 to itself: %v", err)
	}
	// The container saw the test's own address (kernel, local) and h2's
	// (kernel, forwarded by h2); the userspace mesh would show the bridge
	// gateway 172.17.0.1.
	from := s.clients(m, "fast", 51)
	if from[testbed.BridgeIP] != 25 || from[other.IP] != 26 || len(from) != 2 {
		t.Fatalf("clients seen by the task (last 51 requests): %v", from)
	}
	// The task moves to h2: the rules turn around.
	s.docker(m, "service", "update", "--detach", "--constraint-rm", "node.hostname==h1", "--constraint-add", "node.hostname==h2", "fast")
	s.eventually(60*time.Second, "the task on h2", func() bool {
		out, _ := m.Docker(s.ctx, "service", "ps", "fast", "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}")
		return strings.HasPrefix(out, "h2 Running")
	})
	s.waitRule(m, "dnat to "+other.IP+":8080")
	for _, h := range s.hosts {
		s.eventually(20*time.Second, "8080 answers on "+h.Name+" after the move", func() bool { _, err := get(h.IP + ":8080"); return err == nil })
	}
	for i := range 10 {
		if _, err := get(m.IP + ":8080"); err != nil {
			t.Fatalf("request %d to h1 after the move: %v", i, err)
		}
	}
	if from := s.clients(other, "fast", 10); from[m.IP] != 10 {
		t.Fatalf("clients seen by the task on h2 (last 10 requests, all through h1): %v", from)
	}
	s.docker(m, "service", "rm", "fast")
	for _, h := range s.hosts {
		s.eventually(20*time.Second, "no fast-path rules on "+h.Name, func() bool {
			_, nftErr := h.Exec(s.ctx, "nft", "list", "table", "ip", "swarmd_mesh")
			_, iptErr := h.Exec(s.ctx, "iptables", "-w", "-S", "SWARMD-MESH")
			return nftErr != nil && iptErr != nil
		})
	}
}

// waitRule waits until h's fast-path table holds a rule containing want.
func (s *swarm) waitRule(h *testbed.Host, want string) {
	s.t.Helper()
	s.eventually(30*time.Second, h.Name+" fast path: "+want, func() bool {
		out, err := h.Exec(s.ctx, "nft", "list", "table", "ip", "swarmd_mesh")
		return err == nil && strings.Contains(out, want)
	})
}

// clients counts the client addresses of the last n requests the
// service's container on h logged ("GET / from ADDR:PORT").
func (s *swarm) clients(h *testbed.Host, service string, n int) map[string]int {
	s.t.Helper()
	id := strings.TrimSpace(s.engine(h, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+service))
	var from []string
	// The engine's log driver writes the lines a little after the answers.
	s.eventually(10*time.Second, fmt.Sprintf("%d requests in the container's log", n), func() bool {
		from = from[:0]
		for _, line := range strings.Split(s.engine(h, "logs", id), "\n") {
			if rest, ok := strings.CutPrefix(line, "GET / from "); ok {
				if host, _, err := net.SplitHostPort(strings.TrimSpace(rest)); err == nil {
					from = append(from, host)
				}
			}
		}
		return len(from) >= n
	})
	out := map[string]int{}
	for _, a := range from[len(from)-n:] {
		out[a]++
	}
	return out
}

func (s *swarm) engine(h *testbed.Host, args ...string) string {
	s.t.Helper()
	out, err := h.Engine(s.ctx, args...)
	if err != nil {
		s.t.Fatalf("docker %s on %s: %v\n%s", strings.Join(args, " "), h.Name, err, out)
	}
	return out
}
