//go:build integration

package overlay

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/integration/testbed"
)

// create creates a service on netID from an image of the test image's
// kind; mutate adjusts the spec.
func (s *swarm) create(name, netID string, replicas uint64, mutate func(*api.ServiceSpec)) string {
	s.t.Helper()
	spec := &api.ServiceSpec{
		Annotations: &api.Annotations{Name: name},
		Task: &api.TaskSpec{
			Container: &api.ContainerSpec{Image: image},
			Networks:  []*api.NetworkAttachmentConfig{{Target: netID}},
		},
		Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}},
	}
	if mutate != nil {
		mutate(spec)
	}
	resp, err := s.ctl.CreateService(s.ctx, &api.CreateServiceRequest{Spec: spec})
	if err != nil {
		s.t.Fatalf("create service %s: %v", name, err)
	}
	return resp.GetService().GetId()
}

// vip is service id's virtual IP on netID.
func (s *swarm) vip(id, netID string) netip.Addr {
	s.t.Helper()
	var addr netip.Addr
	testbed.Eventually(s.t, 30*time.Second, "the service's virtual IP", func() bool {
		resp, err := s.ctl.GetService(s.ctx, &api.GetServiceRequest{ServiceId: id})
		if err != nil {
			return false
		}
		for _, v := range resp.GetService().GetEndpoint().GetVirtualIps() {
			if p, err := netip.ParsePrefix(v.GetAddr()); err == nil && v.GetNetworkId() == netID {
				addr = p.Addr()
				return true
			}
		}
		return false
	})
	return addr
}

// exec runs the test image's binary with args in task tk's container and
// returns its trimmed output.
func (s *swarm) exec(tk task, args ...string) (string, error) {
	ids, err := tk.host.Engine(s.ctx, "ps", "-q", "--filter", "label=com.docker.swarm.task.id="+tk.id)
	if err != nil {
		return "", err
	}
	if ids == "" {
		return "", fmt.Errorf("no container for task %s on %s", tk.id, tk.host.Name)
	}
	return tk.host.Engine(s.ctx, append([]string{"exec", strings.Fields(ids)[0], "/app"}, args...)...)
}

// resolve is what name resolves to in tk's container, sorted.
func (s *swarm) resolve(tk task, name string) ([]string, error) {
	out, err := s.exec(tk, "-resolve", name)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func ips(tasks []task) []string {
	out := make([]string, 0, len(tasks))
	for _, tk := range tasks {
		out = append(out, tk.ip.String())
	}
	slices.Sort(out)
	return out
}

// watch starts, in every task of watchers, a watch of name until it
// resolves to all of want, or to any address if want is empty (or, gone,
// until it no longer does), and returns a function that waits for them
// and returns when each saw it.
func (s *swarm) watch(watchers []task, name string, want []netip.Addr, gone bool) func() []time.Time {
	args := []string{"-watch", name}
	if len(want) > 0 {
		var l []string
		for _, a := range want {
			l = append(l, a.String())
		}
		args = append(args, "-for", strings.Join(l, ","))
	}
	if gone {
		args = append(args, "-gone")
	}
	out := make([]time.Time, len(watchers))
	errs := make([]error, len(watchers))
	var wg sync.WaitGroup
	for i, w := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := s.exec(w, args...)
			if err != nil {
				errs[i] = err
				return
			}
			ns, err := strconv.ParseInt(strings.TrimSpace(o), 10, 64)
			if err != nil {
				errs[i] = fmt.Errorf("watch output %q: %w", o, err)
				return
			}
			out[i] = time.Unix(0, ns)
		}()
	}
	return func() []time.Time {
		s.t.Helper()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				s.t.Fatalf("watch %s from %s: %v", name, watchers[i].host.Name, err)
			}
		}
		return out
	}
}

// started waits until every watcher's exec is running in its container.
func (s *swarm) started(watchers []task) {
	s.t.Helper()
	testbed.Eventually(s.t, 30*time.Second, "the watchers running", func() bool {
		for _, w := range watchers {
			out, err := w.host.Engine(s.ctx, "ps", "-q", "--filter", "label=com.docker.swarm.task.id="+w.id)
			if err != nil || out == "" {
				return false
			}
			top, err := w.host.Engine(s.ctx, "top", strings.Fields(out)[0])
			if err != nil || !strings.Contains(top, "-watch") {
				return false
			}
		}
		return true
	})
}

// TestServiceDiscovery: tasks on three hosts resolve a service by name to
// its virtual IP, balanced over its tasks on every host, tasks.<service>
// to every task, a dnsrr service to its tasks; a new task is resolvable
// on every host soon after it runs and a removed one is gone within a
// second; a swarmd restart (kill -9) leaves the containers' connectivity
// intact and the plugin serving again.
func TestServiceDiscovery(t *testing.T) {
	s := newSwarm(t, 3)
	netID := s.network("disco")
	web := s.create("web", netID, 3, func(sp *api.ServiceSpec) { sp.Task.Placement = &api.Placement{MaxReplicas: 1} })
	tasks := s.running(web, 3)
	vip := s.vip(web, netID)

	t.Run("names resolve on every host", func(t *testing.T) {
		for _, tk := range tasks {
			if got, err := s.resolve(tk, "web"); err != nil || !slices.Equal(got, []string{vip.String()}) {
				t.Errorf("web from %s: %v %v, want the virtual IP %s", tk.host.Name, got, err, vip)
			}
			if got, err := s.resolve(tk, "tasks.web"); err != nil || !slices.Equal(got, ips(tasks)) {
				t.Errorf("tasks.web from %s: %v %v, want %v", tk.host.Name, got, err, ips(tasks))
			}
		}
	})

	t.Run("the virtual IP balances over every task from every host", func(t *testing.T) {
		for _, from := range tasks {
			seen := map[string]bool{}
			for range 9 {
				out, err := s.exec(from, "-probe", "http://web:80/")
				if err != nil {
					t.Fatalf("GET http://web/ from %s: %v", from.host.Name, err)
				}
				seen[strings.Fields(out)[0]] = true
			}
			if len(seen) != 3 {
				t.Errorf("from %s, 9 requests to http://web/ reached %d tasks (%v), want all 3", from.host.Name, len(seen), seen)
			}
		}
	})

	t.Run("a dnsrr service resolves to its tasks", func(t *testing.T) {
		rr := s.create("rr", netID, 2, func(sp *api.ServiceSpec) {
			sp.Endpoint = &api.EndpointSpec{Mode: api.EndpointSpec_DNSRR}
		})
		rrTasks := s.running(rr, 2)
		testbed.Eventually(t, 10*time.Second, "rr resolving to its tasks", func() bool {
			got, err := s.resolve(tasks[0], "rr")
			return err == nil && slices.Equal(got, ips(rrTasks))
		})
		if _, err := s.ctl.RemoveService(s.ctx, &api.RemoveServiceRequest{ServiceId: rr}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a new task is resolvable everywhere soon, a removed one gone within a second", func(t *testing.T) {
		late := s.create("late", netID, 0, nil)
		wait := s.watch(tasks, "tasks.late", nil, false)
		s.started(tasks)
		s.scale(late, 1)
		lateTask := s.running(late, 1)[0]
		for i, at := range wait() {
			t.Logf("tasks.late resolvable on %s %s after the task was RUNNING", tasks[i].host.Name, at.Sub(lateTask.running).Round(time.Millisecond))
		}

		// Two tasks, then one: the name stays, the removed task's
		// address leaves it.
		s.scale(late, 2)
		both := s.running(late, 2)
		bothIPs := []netip.Addr{both[0].ip, both[1].ip}
		// Every watcher must see both first, or it would end at once.
		testbed.Eventually(t, 30*time.Second, "tasks.late resolving to both tasks on every host", func() bool {
			for _, tk := range tasks {
				if got, err := s.resolve(tk, "tasks.late"); err != nil || len(got) != 2 {
					return false
				}
			}
			return true
		})
		waitGone := s.watch(tasks, "tasks.late", bothIPs, true)
		s.started(tasks)
		scaled := time.Now()
		s.scale(late, 1)
		for i, at := range waitGone() {
			d := at.Sub(scaled)
			t.Logf("tasks.late without the removed task on %s %s after the scale-down request", tasks[i].host.Name, d.Round(time.Millisecond))
			if d > time.Second {
				t.Errorf("the removed task stayed in DNS on %s for %s, want under a second", tasks[i].host.Name, d)
			}
		}
		if _, err := s.ctl.RemoveService(s.ctx, &api.RemoveServiceRequest{ServiceId: late}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a swarmd killed and restarted keeps its containers connected", func(t *testing.T) {
		victim := tasks[1]
		others := []task{tasks[0], tasks[2]}
		if err := victim.host.Kill(); err != nil {
			t.Fatal(err)
		}
		// swarmd is down: its containers still reach the others, by
		// address and through the virtual IP, and are reached.
		for _, o := range others {
			if err := s.probe(victim, o.ip); err != nil {
				t.Errorf("with swarmd down on %s, its task no longer reaches %s: %v", victim.host.Name, o.ip, err)
			}
			if err := s.probe(o, victim.ip); err != nil {
				t.Errorf("with swarmd down on %s, its task is unreachable from %s: %v", victim.host.Name, o.host.Name, err)
			}
		}
		if err := s.probe(victim, vip); err != nil {
			t.Errorf("with swarmd down on %s, its task no longer reaches the virtual IP: %v", victim.host.Name, err)
		}
		if err := victim.host.StartSwarmd(s.ctx); err != nil {
			t.Fatal(err)
		}
		testbed.Eventually(t, 30*time.Second, "names resolving again on "+victim.host.Name, func() bool {
			got, err := s.resolve(victim, "tasks.web")
			return err == nil && slices.Equal(got, ips(tasks))
		})
		// The plugin serves again: a new task on that host joins the
		// network and reaches the others by name.
		after := s.create("after", netID, 1, func(sp *api.ServiceSpec) {
			sp.Task.Placement = &api.Placement{Constraints: []string{"node.hostname==" + victim.host.Name}}
		})
		at := s.running(after, 1)[0]
		if err := s.probe(at, tasks[0].ip); err != nil {
			t.Errorf("a task started after the restart does not reach %s: %v", tasks[0].ip, err)
		}
		if _, err := s.exec(at, "-probe", "http://web:80/"); err != nil {
			t.Errorf("a task started after the restart does not reach http://web/: %v", err)
		}
	})
}
