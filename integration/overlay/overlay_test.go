//go:build integration

// Package overlay tests swarmd's overlay networks on hosts that each have
// their own network namespace, Docker Engine and swarmd (the testbed):
// tasks of one network reach each other across hosts by address, tasks of
// another network do not, and a task that leaves is unreachable at once.
package overlay

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/integration/testbed"
)

const image = "swarmd-test:v1"

// swarmdBin builds the binaries once (or uses SWARMD_BIN_DIR).
var swarmdBin = sync.OnceValues(testbed.BuildBinaries)

// swarm is a testbed whose hosts formed one swarm, h1 its manager, with a
// control API client on h1.
type swarm struct {
	t     testing.TB
	ctx   context.Context
	hosts []*testbed.Host
	ctl   api.ControlClient
}

func newSwarm(t testing.TB, n int) *swarm {
	t.Helper()
	testbed.RequireEngine(t)
	bin, err := swarmdBin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	tb := testbed.NewSwarm(ctx, t, testbed.Config{Hosts: n, SwarmdBin: bin, Images: []string{image}, Logf: t.Logf})
	s := &swarm{t: t, ctx: ctx, hosts: tb.Hosts()}
	m := s.hosts[0]
	conn, err := grpc.NewClient("unix://"+m.ControlSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s.ctl = api.NewControlClient(conn)
	return s
}

func (s *swarm) host(nodeID string) *testbed.Host {
	s.t.Helper()
	resp, err := s.ctl.GetNode(s.ctx, &api.GetNodeRequest{NodeId: nodeID})
	if err != nil {
		s.t.Fatal(err)
	}
	name := resp.GetNode().GetDescription().GetHostname()
	for _, h := range s.hosts {
		if h.Name == name {
			return h
		}
	}
	s.t.Fatalf("node %s (%s) is no testbed host", nodeID, name)
	return nil
}

func (s *swarm) network(name string) string {
	s.t.Helper()
	resp, err := s.ctl.CreateNetwork(s.ctx, &api.CreateNetworkRequest{Spec: &api.NetworkSpec{
		Annotations: &api.Annotations{Name: name}, Driver: "overlay",
	}})
	if err != nil {
		s.t.Fatalf("create network %s: %v", name, err)
	}
	return resp.GetNetwork().GetId()
}

func (s *swarm) service(name, netID string, replicas uint64) string {
	s.t.Helper()
	resp, err := s.ctl.CreateService(s.ctx, &api.CreateServiceRequest{Spec: &api.ServiceSpec{
		Annotations: &api.Annotations{Name: name},
		Task: &api.TaskSpec{
			Container: &api.ContainerSpec{Image: image},
			Placement: &api.Placement{MaxReplicas: 1},
			Networks:  []*api.NetworkAttachmentConfig{{Target: netID}},
		},
		Mode: &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}},
	}})
	if err != nil {
		s.t.Fatalf("create service %s: %v", name, err)
	}
	return resp.GetService().GetId()
}

func (s *swarm) scale(id string, replicas uint64) {
	s.t.Helper()
	got, err := s.ctl.GetService(s.ctx, &api.GetServiceRequest{ServiceId: id})
	if err != nil {
		s.t.Fatal(err)
	}
	spec := got.GetService().GetSpec()
	spec.Mode = &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}}
	if _, err := s.ctl.UpdateService(s.ctx, &api.UpdateServiceRequest{
		ServiceId: id, ServiceVersion: got.GetService().GetMeta().GetVersion(), Spec: spec,
	}); err != nil {
		s.t.Fatalf("scale: %v", err)
	}
}

// task is a running task of a service: where it runs and its overlay
// address.
type task struct {
	id      string
	host    *testbed.Host
	ip      netip.Addr
	running time.Time // when its agent saw it RUNNING
}

// running waits until the service has exactly n tasks RUNNING and meant
// to run, and returns them.
func (s *swarm) running(svc string, n int) []task {
	s.t.Helper()
	var out []*api.Task
	testbed.Eventually(s.t, 90*time.Second, fmt.Sprintf("%d tasks of %s running", n, svc), func() bool {
		resp, err := s.ctl.ListTasks(s.ctx, &api.ListTasksRequest{})
		if err != nil {
			return false
		}
		out = out[:0]
		for _, tk := range resp.GetTasks() {
			if tk.GetServiceId() == svc && tk.GetDesiredState() == api.TaskState_TASK_STATE_RUNNING &&
				tk.GetStatus().GetState() == api.TaskState_TASK_STATE_RUNNING {
				out = append(out, tk)
			}
		}
		return len(out) == n
	})
	var tasks []task
	for _, tk := range out {
		if len(tk.GetNetworks()) != 1 || len(tk.GetNetworks()[0].GetAddresses()) != 1 {
			s.t.Fatalf("task %s has networks %v", tk.GetId(), tk.GetNetworks())
		}
		p := netip.MustParsePrefix(tk.GetNetworks()[0].GetAddresses()[0])
		tasks = append(tasks, task{id: tk.GetId(), host: s.host(tk.GetNodeId()), ip: p.Addr(), running: tk.GetStatus().GetTimestamp().AsTime()})
	}
	return tasks
}

// probe GETs http://ip:80/ from inside task from's container.
func (s *swarm) probe(from task, ip netip.Addr) error {
	ids, err := from.host.Engine(s.ctx, "ps", "-q", "--filter", "label=com.docker.swarm.task.id="+from.id)
	if err != nil {
		return err
	}
	if ids == "" {
		return fmt.Errorf("no container for task %s on %s", from.id, from.host.Name)
	}
	_, err = from.host.Engine(s.ctx, "exec", strings.Fields(ids)[0], "/app", "-probe", "http://"+ip.String()+":80/")
	return err
}

// swarmdPID is the process ID of h's swarmd: the one serving the network
// plugin named after h.
func swarmdPID(h *testbed.Host) string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "swarmd" && slices.Contains(args, "swarmd-"+h.Name) {
			return filepath.Base(filepath.Dir(p))
		}
	}
	return ""
}

// programmed reports whether h's overlay namespaces hold a permanent
// neighbour entry for ip (the peer's address programmed on the VXLAN
// device). The namespaces are named in swarmd's own mount namespace.
func programmed(ctx context.Context, h *testbed.Host, ip netip.Addr) bool {
	pid := swarmdPID(h)
	if pid == "" {
		return false
	}
	out, err := exec.CommandContext(ctx, "nsenter", "-t", pid, "-m", "ls", "/var/run/netns").Output()
	if err != nil {
		return false
	}
	for _, ns := range strings.Fields(string(out)) {
		if !strings.HasPrefix(ns, "swov-"+h.IP+"-") {
			continue
		}
		out, err := exec.CommandContext(ctx, "nsenter", "-t", pid, "-m", "ip", "-n", ns, "neigh", "show", "to", ip.String()).Output()
		if err == nil && strings.Contains(string(out), "PERMANENT") {
			return true
		}
	}
	return false
}

// programmedAt is when h's swarmd first logged peers of network netID
// added after after.
func programmedAt(h *testbed.Host, netID string, after time.Time) (time.Time, bool) {
	b, err := os.ReadFile(filepath.Join(h.Dir, "swarmd.log"))
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `msg="peers programmed"`) || !strings.Contains(line, "network.id="+netID) || strings.Contains(line, " added=0 ") {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err == nil && at.After(after) {
			return at, true
		}
	}
	return time.Time{}, false
}

// TestOverlayNetwork: three tasks of one overlay network, one per host,
// reach each other by address; a task of another overlay network reaches
// none of them; a task scaled away is unreachable; and the time from a
// task RUNNING to its address programmed on the other hosts is reported.
func TestOverlayNetwork(t *testing.T) {
	s := newSwarm(t, 3)
	front := s.network("front")
	back := s.network("back")
	web := s.service("web", front, 2)
	tasks := s.running(web, 2)

	t.Run("a new task is programmed on the other hosts", func(t *testing.T) {
		scaledAt := time.Now()
		s.scale(web, 3)
		all := s.running(web, 3)
		var added task
		for _, tk := range all {
			if !slices.ContainsFunc(tasks, func(o task) bool { return o.id == tk.id }) {
				added = tk
			}
		}
		tasks = all
		var others []*testbed.Host
		for _, tk := range all {
			if tk.id != added.id {
				others = append(others, tk.host)
			}
		}
		testbed.Eventually(t, 30*time.Second, "the new task programmed on the other hosts", func() bool {
			for _, h := range others {
				if !programmed(s.ctx, h, added.ip) {
					return false
				}
			}
			return true
		})
		progAt := time.Now()
		from := all[slices.IndexFunc(all, func(o task) bool { return o.id != added.id })]
		testbed.Eventually(t, 30*time.Second, "the new task reachable", func() bool { return s.probe(from, added.ip) == nil })
		t.Logf("task %s on %s: RUNNING at %s; seen programmed on %d other hosts by polling within %s of RUNNING; reachable from %s within %s",
			added.id, added.host.Name, added.running.Format(time.RFC3339Nano), len(others),
			progAt.Sub(added.running).Round(time.Millisecond), from.host.Name, time.Since(added.running).Round(time.Millisecond))
		for _, h := range others {
			if at, ok := programmedAt(h, front, scaledAt); ok {
				t.Logf("%s programmed the new peer %s after RUNNING (negative: before; scale request at %s)",
					h.Name, at.Sub(added.running).Round(time.Millisecond), at.Sub(scaledAt).Round(time.Millisecond))
			}
		}
	})

	t.Run("every task reaches every other across hosts", func(t *testing.T) {
		hosts := map[string]bool{}
		for _, tk := range tasks {
			hosts[tk.host.Name] = true
		}
		if len(hosts) != 3 {
			t.Fatalf("tasks on %v, want one per host", hosts)
		}
		for _, a := range tasks {
			for _, b := range tasks {
				if a.id == b.id {
					continue
				}
				if err := s.probe(a, b.ip); err != nil {
					t.Errorf("%s (%s) -> %s (%s): %v", a.host.Name, a.ip, b.host.Name, b.ip, err)
				}
			}
		}
	})

	lone := s.service("lone", back, 1)
	t.Run("another network's task reaches none", func(t *testing.T) {
		lone := s.running(lone, 1)[0]
		// A probe that fails waits for its timeout: all run at once.
		var wg sync.WaitGroup
		for _, b := range tasks {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if err := s.probe(lone, b.ip); err == nil {
					t.Errorf("back task on %s reached front task %s on %s", lone.host.Name, b.ip, b.host.Name)
				}
			}()
			go func() {
				defer wg.Done()
				if err := s.probe(b, lone.ip); err == nil {
					t.Errorf("front task on %s reached back task %s", b.host.Name, lone.ip)
				}
			}()
		}
		wg.Wait()
	})

	t.Run("a task scaled away is unreachable", func(t *testing.T) {
		// Every task is programmed on the hosts of the others first: the
		// check below can fail.
		for _, a := range tasks {
			for _, b := range tasks {
				if a.host != b.host && !programmed(s.ctx, a.host, b.ip) {
					t.Fatalf("%s is not programmed on %s", b.ip, a.host.Name)
				}
			}
		}
		s.scale(web, 2)
		left := s.running(web, 2)
		var gone task
		for _, tk := range tasks {
			if !slices.ContainsFunc(left, func(o task) bool { return o.id == tk.id }) {
				gone = tk
			}
		}
		start := time.Now()
		testbed.Eventually(t, 30*time.Second, "the removed task unprogrammed", func() bool {
			for _, tk := range left {
				if tk.host != gone.host && programmed(s.ctx, tk.host, gone.ip) {
					return false
				}
			}
			return true
		})
		t.Logf("task %s on %s removed: unprogrammed on the other hosts within %s of its task leaving the running set",
			gone.id, gone.host.Name, time.Since(start).Round(time.Millisecond))
		for _, tk := range left {
			if err := s.probe(tk, gone.ip); err == nil {
				t.Errorf("%s still reaches the removed task's address %s", tk.host.Name, gone.ip)
			}
		}
		if err := s.probe(left[0], left[1].ip); err != nil {
			t.Errorf("the remaining tasks no longer reach each other: %v", err)
		}
	})

	t.Run("the last task leaving removes the engine networks", func(t *testing.T) {
		for _, id := range []string{web, lone} {
			if _, err := s.ctl.RemoveService(s.ctx, &api.RemoveServiceRequest{ServiceId: id}); err != nil {
				t.Fatal(err)
			}
		}
		for _, h := range s.hosts {
			testbed.Eventually(t, 60*time.Second, "no swarm network left on "+h.Name+"'s engine", func() bool {
				out, err := h.Engine(s.ctx, "network", "ls", "-q", "--filter", "label=com.docker.swarm.network.id")
				return err == nil && out == ""
			})
		}
	})
}
