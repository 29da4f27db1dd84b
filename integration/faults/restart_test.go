//go:build integration

package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/openswarm/swarmd/integration/testbed"
)

// clusterOpts says what newClusterOpts builds besides three managers.
type clusterOpts struct {
	// workers more hosts join as workers (h4..).
	workers int
	// images are built on every host.
	images []string
	// initArgs are added to h1's `docker swarm init`.
	initArgs []string
	// stateDirSize makes the state dir of the hosts it names (by index,
	// h1 is 0) a tmpfs of that many bytes (testbed.Host.LimitStateDir).
	stateDirSize map[int]int64
}

// newClusterOpts starts three managers (c.hosts, h1..h3) and the workers of
// opts (returned). It creates the registers: services reg0.. of no replica
// whose label k is the value.
func newClusterOpts(t testing.TB, opts clusterOpts) (*cluster, []*testbed.Host) {
	t.Helper()
	testbed.RequireEngine(t)
	bin, err := swarmdBin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	tb, err := testbed.New(ctx, testbed.Config{Hosts: 3 + opts.workers, SwarmdBin: bin, Images: opts.images, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	all := tb.Hosts()
	c := &cluster{t: t, ctx: ctx, tb: tb, hosts: all[:3], cli: map[*testbed.Host]*client.Client{}}
	wk := all[3:]
	t.Cleanup(func() {
		for _, cl := range c.cli {
			cl.Close()
		}
		if t.Failed() {
			for _, h := range all {
				t.Logf("--- %s swarmd log:\n%s", h.Name, h.LogTail(40))
			}
		}
		if err := tb.Close(); err != nil {
			t.Logf("testbed close: %v", err)
		}
	})
	for i, size := range opts.stateDirSize {
		if err := all[i].LimitStateDir(size); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, h := range all {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = h.StartSwarmd(ctx) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range all {
		c.cli[h] = c.newClient(h)
	}
	m := c.hosts[0]
	c.docker(m, append([]string{"swarm", "init", "--advertise-addr", m.IP}, opts.initArgs...)...)
	token := c.docker(m, "swarm", "join-token", "-q", "manager")
	for _, h := range c.hosts[1:] {
		c.docker(h, "swarm", "join", "--token", token, m.IP+":2377")
	}
	if len(wk) > 0 {
		wtoken := c.docker(m, "swarm", "join-token", "-q", "worker")
		for _, h := range wk {
			c.docker(h, "swarm", "join", "--token", wtoken, m.IP+":2377")
		}
	}
	c.eventually(60*time.Second, "three Ready managers, one leader, Ready workers", func() bool {
		out, err := m.Docker(ctx, "node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}")
		return err == nil && strings.Count(out, "Ready") == len(all) &&
			strings.Count(out, "Leader") == 1 && strings.Count(out, "Reachable") == 2
	})
	// Registers reg0.., then one probe service per manager.
	for i := range registers + len(c.hosts) {
		name := fmt.Sprintf("reg%d", i)
		if i >= registers {
			name = "probe-" + c.hosts[i-registers].Name
		}
		spec := swarm.ServiceSpec{
			Annotations: swarm.Annotations{Name: name},
			TaskTemplate: swarm.TaskSpec{
				ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest"},
			},
			Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: new(uint64)}},
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := c.cli[m].ServiceCreate(rctx, spec, swarm.ServiceCreateOptions{QueryRegistry: false})
		cancel()
		if err != nil {
			t.Fatalf("create service %s: %v", name, err)
		}
		if i < registers {
			c.svcs = append(c.svcs, resp.ID)
		} else {
			c.probes = append(c.probes, resp.ID)
		}
	}
	return c, wk
}

// runFault runs the load, calls fault at faultAt and stops the load tail
// after fault returns (or at the latest after max).
func (c *cluster) runFault(s uint64, faultAt, tail, max time.Duration, fault func(hs *history)) *history {
	hs := &history{start: time.Now()}
	ctx, cancel := context.WithTimeout(c.ctx, max)
	defer cancel()
	wg := c.load(ctx, hs, s)
	c.probe(ctx, hs, wg)
	select {
	case <-time.After(faultAt):
		fault(hs)
		select {
		case <-time.After(tail):
		case <-ctx.Done():
		}
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
	return hs
}

// managerUp reports whether some other manager lists h as a Ready manager
// that is Reachable (or the leader), with one leader in the list.
func (c *cluster) managerUp(h *testbed.Host) bool {
	for _, x := range c.hosts {
		if x == h {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, reqTimeout)
		nodes, err := c.cli[x].NodeList(ctx, swarm.NodeListOptions{})
		cancel()
		if err != nil {
			continue
		}
		leaders, up := 0, false
		for _, n := range nodes {
			ms := n.ManagerStatus
			if ms != nil && ms.Leader {
				leaders++
			}
			if n.Description.Hostname == h.Name && n.Status.State == swarm.NodeStateReady &&
				ms != nil && ms.Reachability == swarm.ReachabilityReachable {
				up = true
			}
		}
		if leaders == 1 && up {
			return true
		}
	}
	return false
}

// checkFinalValues checks that all final reads (clients >= clients) of a
// register agree and that the value is one some client wrote (acknowledged
// or unknown), or "" if no write of it was acknowledged.
func checkFinalValues(t *testing.T, hs *history) {
	t.Helper()
	ops := hs.finish()
	written := map[int]map[string]string{} // key -> value -> "acked"/"unknown"
	ackedAny := map[int]bool{}
	final := map[int]map[string]bool{}
	for _, op := range ops {
		in, out := op.Input.(regInput), op.Output.(regOutput)
		switch {
		case in.Write:
			if written[in.Key] == nil {
				written[in.Key] = map[string]string{}
			}
			kind := "acked"
			if out.Unknown {
				kind = "unknown"
			} else {
				ackedAny[in.Key] = true
			}
			written[in.Key][in.Value] = kind
		case op.ClientId >= clients:
			if final[in.Key] == nil {
				final[in.Key] = map[string]bool{}
			}
			final[in.Key][out.Value] = true
		}
	}
	for key := range registers {
		if len(final[key]) != 1 {
			t.Errorf("reg%d: the hosts' final reads disagree: %v", key, final[key])
			continue
		}
		for v := range final[key] {
			kind, ok := written[key][v]
			switch {
			case ok:
				t.Logf("reg%d: final value %q (an %s write)", key, v, kind)
			case v == "" && !ackedAny[key]:
				t.Logf("reg%d: final value empty (no write acknowledged)", key)
			default:
				t.Errorf("reg%d: final value %q is no write any client made (acknowledged writes: %v)", key, v, ackedAny[key])
			}
		}
	}
}

// TestRollingRestartOfManagers restarts each of the three managers in turn
// (SIGTERM, start again, wait until it is a Reachable manager again) while
// clients on all three read and write, and checks that the history is
// linearizable and the final values are written ones.
func TestRollingRestartOfManagers(t *testing.T) {
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 1))
	c := newCluster(t)
	faultAt := time.Duration(3000+rng.IntN(2000)) * time.Millisecond
	order := rng.Perm(len(c.hosts))
	hs := c.runFault(s, faultAt, 3*time.Second, 90*time.Second, func(*history) {
		for _, i := range order {
			h := c.hosts[i]
			t0 := time.Now()
			if err := h.StopSwarmd(c.ctx); err != nil {
				t.Error(err)
				return
			}
			if err := h.StartSwarmd(c.ctx); err != nil {
				t.Error(err)
				return
			}
			deadline := time.Now().Add(30 * time.Second)
			// h itself answers (its control API reaches a leader) and
			// another manager lists it as Reachable.
			for c.leaderSeenBy(h) == "" || !c.managerUp(h) {
				if time.Now().After(deadline) {
					t.Errorf("%s is not back as a Reachable manager 30 s after its restart", h.Name)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("restarted %s; Reachable again after %s", h.Name, time.Since(t0).Round(time.Millisecond))
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("leader at the end: %s", c.oneLeader())
	c.raftSettled()
	c.finalReads(hs)
	check(t, hs)
	checkFinalValues(t, hs)
}

// TestWorkerCutOffBeyondGrace cuts a worker off for longer than the
// heartbeat grace, by freezing its swarmd (SIGSTOP) or by a network
// partition from the managers: the managers mark it Down and replace its
// task on another node; once it is back, the worker must stop its old
// task's container, leaving exactly one running task per slot.
func TestWorkerCutOffBeyondGrace(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cut, end func(c *cluster, w *testbed.Host) error
	}{
		{"paused",
			func(_ *cluster, w *testbed.Host) error { return w.Pause() },
			func(_ *cluster, w *testbed.Host) error { return w.Resume() }},
		{"partitioned",
			func(c *cluster, w *testbed.Host) error { return c.tb.Partition([]*testbed.Host{w}, c.hosts) },
			func(c *cluster, _ *testbed.Host) error { return c.tb.Heal() }},
	} {
		t.Run(tc.name, func(t *testing.T) { workerCutOff(t, tc.cut, tc.end) })
	}
}

func workerCutOff(t *testing.T, cut, end func(c *cluster, w *testbed.Host) error) {
	const image = "swarmd-test:v1"
	// A heartbeat period of 1 s (grace 3 s), set at init so that every
	// node is told it from its first heartbeat on: after a later `swarm
	// update`, a node's deadline is pushed back by the old grace until it
	// next heartbeats.
	c, wk := newClusterOpts(t, clusterOpts{workers: 1, images: []string{image}, initArgs: []string{"--dispatcher-heartbeat", "1s"}})
	m, w := c.hosts[0], wk[0]
	cl := c.cli[m]
	{
		ctx, cancel := context.WithTimeout(c.ctx, reqTimeout)
		sw, err := cl.SwarmInspect(ctx)
		cancel()
		t.Logf("dispatcher heartbeat period: %s (%v)", sw.Spec.Dispatcher.HeartbeatPeriod, err)
	}
	// h1 drained while the service is placed, so with one task per node
	// the three tasks land on h2, h3 and the worker; h1 is then free for
	// the worker's replacement.
	c.docker(m, "node", "update", "--availability", "drain", m.Name)
	c.docker(m, "service", "create", "--name", "web", "--replicas", "3", "--replicas-max-per-node", "1",
		"--detach", "--no-resolve-image", image)
	svcID := c.docker(m, "service", "inspect", "--format", "{{.ID}}", "web")

	nodeName := map[string]string{}
	tasks := func() []swarm.Task {
		ctx, cancel := context.WithTimeout(c.ctx, reqTimeout)
		defer cancel()
		ts, err := cl.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svcID))})
		if err != nil {
			return nil
		}
		if len(nodeName) == 0 {
			if nodes, err := cl.NodeList(ctx, swarm.NodeListOptions{}); err == nil {
				for _, n := range nodes {
					nodeName[n.ID] = n.Description.Hostname
				}
			}
		}
		return ts
	}
	// running returns, per slot, the hosts where a task's observed state is
	// running, and how many of those tasks are desired to run.
	running := func(ts []swarm.Task) (map[int][]string, int) {
		bySlot, desired := map[int][]string{}, 0
		for _, tk := range ts {
			if tk.Status.State == swarm.TaskStateRunning {
				bySlot[tk.Slot] = append(bySlot[tk.Slot], nodeName[tk.NodeID])
				if tk.DesiredState == swarm.TaskStateRunning {
					desired++
				}
			}
		}
		return bySlot, desired
	}
	var old swarm.Task
	c.eventually(60*time.Second, "three running tasks, one on the worker", func() bool {
		ts := tasks()
		bySlot, desired := running(ts)
		if desired != 3 || len(bySlot) != 3 {
			return false
		}
		for _, tk := range ts {
			if tk.Status.State == swarm.TaskStateRunning && nodeName[tk.NodeID] == w.Name {
				old = tk
				return true
			}
		}
		return false
	})
	if old.Status.ContainerStatus == nil || old.Status.ContainerStatus.ContainerID == "" ||
		!containerRunning(c.ctx, w, old.Status.ContainerStatus.ContainerID) {
		t.Fatalf("the worker's task %s reports no container running on %s's engine", old.ID, w.Name)
	}
	c.docker(m, "node", "update", "--availability", "active", m.Name)
	t.Logf("worker %s runs task %s (slot %d, container %.12s)", w.Name, old.ID, old.Slot, old.Status.ContainerStatus.ContainerID)

	t0 := time.Now()
	if err := cut(c, w); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = end(c, w)
		}
	}()
	c.eventually(30*time.Second, w.Name+" Down", func() bool {
		out, err := m.Docker(c.ctx, "node", "inspect", "--format", "{{.Status.State}}", w.Name)
		return err == nil && out == "down"
	})
	t.Logf("measure: %s Down %s after it was cut off", w.Name, time.Since(t0).Round(time.Millisecond))
	var repl swarm.Task
	c.eventually(30*time.Second, "the worker's task replaced and running on another node", func() bool {
		var oldNow *swarm.Task
		repl = swarm.Task{}
		for _, tk := range tasks() {
			if tk.ID == old.ID {
				oldNow = &tk
			}
			if tk.Slot == old.Slot && tk.ID != old.ID && tk.DesiredState == swarm.TaskStateRunning &&
				tk.Status.State == swarm.TaskStateRunning && nodeName[tk.NodeID] != w.Name {
				repl = tk
			}
		}
		return oldNow != nil && oldNow.DesiredState != swarm.TaskStateRunning && repl.ID != ""
	})
	t.Logf("measure: slot %d: task %s running on %s %s after the worker was cut off", old.Slot, repl.ID, nodeName[repl.NodeID], time.Since(t0).Round(time.Millisecond))
	t.Logf("service ps while %s is cut off:\n%s", w.Name, c.docker(m, "service", "ps", "--no-trunc", "web"))
	if err := end(c, w); err != nil {
		t.Fatal(err)
	}
	resumed = true
	t1 := time.Now()
	t.Logf("%s back after %s", w.Name, t1.Sub(t0).Round(time.Millisecond))

	// Converge: three running tasks, one per slot, the old container no
	// longer running on the worker's engine.
	oldCID := old.Status.ContainerStatus.ContainerID
	engineRunning := func() string {
		if containerRunning(c.ctx, w, oldCID) {
			return oldCID
		}
		return ""
	}
	c.eventually(30*time.Second, "one running task per slot, the worker's old container stopped", func() bool {
		bySlot, desired := running(tasks())
		if desired != 3 || len(bySlot) != 3 {
			return false
		}
		for _, hosts := range bySlot {
			if len(hosts) != 1 {
				return false
			}
		}
		return engineRunning() == ""
	})
	t.Logf("measure: converged %s after the worker was back", time.Since(t1).Round(time.Millisecond))
	// And it stays so for a few seconds (no late restart of the old task).
	for range 20 {
		time.Sleep(150 * time.Millisecond)
		bySlot, desired := running(tasks())
		for slot, hosts := range bySlot {
			if len(hosts) > 1 {
				t.Fatalf("slot %d: %d tasks running (%v)", slot, len(hosts), hosts)
			}
		}
		if desired != 3 || len(bySlot) != 3 {
			t.Fatalf("%d running tasks desired to run in %d slots, want 3", desired, len(bySlot))
		}
		if out := engineRunning(); out != "" {
			t.Fatalf("the worker's old container %s runs again", out)
		}
	}
	out := c.docker(m, "service", "ps", "--filter", "desired-state=running", "--format", "{{.Name}} {{.Node}} {{.CurrentState}}", "web")
	t.Logf("service ps --filter desired-state=running:\n%s", out)
	if n := len(strings.Split(out, "\n")); n != 3 {
		t.Errorf("%d tasks desired to run, want 3", n)
	}
	ps, err := w.Engine(c.ctx, "inspect", "--format", "{{.State.Status}}", oldCID)
	t.Logf("worker engine, old task's container %.12s: %q (%v)", oldCID, ps, err)
	// On the engines themselves: one running container per slot, over
	// the containers of every task of the service.
	hostByName := map[string]*testbed.Host{}
	for _, h := range append(append([]*testbed.Host(nil), c.hosts...), wk...) {
		hostByName[h.Name] = h
	}
	perSlot := map[int][]string{}
	for _, tk := range tasks() {
		h := hostByName[nodeName[tk.NodeID]]
		if h == nil || tk.Status.ContainerStatus == nil || tk.Status.ContainerStatus.ContainerID == "" {
			continue
		}
		if containerRunning(c.ctx, h, tk.Status.ContainerStatus.ContainerID) {
			perSlot[tk.Slot] = append(perSlot[tk.Slot], h.Name)
		}
	}
	t.Logf("running containers per slot: %v", perSlot)
	if len(perSlot) != 3 {
		t.Errorf("running containers in %d slots, want 3: %v", len(perSlot), perSlot)
	}
	for slot, hosts := range perSlot {
		if len(hosts) != 1 {
			t.Errorf("slot %d: %d running containers (%v)", slot, len(hosts), hosts)
		}
	}
}

// containerRunning reports whether container id runs on h's engine (false
// if it is stopped or gone; true if the engine does not answer, so that a
// check waiting for false keeps waiting).
func containerRunning(ctx context.Context, h *testbed.Host, id string) bool {
	out, err := h.Engine(ctx, "inspect", "--format", "{{.State.Running}}", id)
	if err != nil {
		return !strings.Contains(out, "No such")
	}
	return out == "true"
}
