package swarmbench

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// Options are what every scenario needs.
type Options struct {
	// Swarmd is the swarmd binary; Dir holds the managers' state.
	Swarmd, Dir string
	// IP is the first loopback address of the managers (e.g. 127.0.0.71);
	// manager i listens on IP+i, port 4242.
	IP    [4]byte
	Out   io.Writer
	Nodes int
	// JoinParallel is how many simulated nodes join at once.
	JoinParallel int
	// ManagerArgs are extra flags for the first manager (e.g.
	// --listen-debug to profile it).
	ManagerArgs []string
	// RunTasks gives the simulated nodes of Schedule workers that take
	// their assignments and run their tasks (see Agents).
	RunTasks bool
}

func (o Options) addr(i int) string {
	return fmt.Sprintf("%d.%d.%d.%d:4242", o.IP[0], o.IP[1], o.IP[2], int(o.IP[3])+i)
}

// startCluster starts n managers (the first initialises the swarm) and
// returns them once all are ready.
func startCluster(ctx context.Context, o Options, n int) ([]*Manager, error) {
	first, err := StartManager(o.Swarmd, filepath.Join(o.Dir, "m0"), "m0", o.addr(0), append([]string{"--init"}, o.ManagerArgs...)...)
	if err != nil {
		return nil, err
	}
	ms := []*Manager{first}
	stop := func() {
		for _, m := range ms {
			m.Kill()
		}
	}
	if err := first.WaitReady(ctx); err != nil {
		stop()
		return nil, err
	}
	_, mtoken, err := first.JoinTokens(ctx)
	if err != nil {
		stop()
		return nil, err
	}
	for i := 1; i < n; i++ {
		m, err := StartManager(o.Swarmd, filepath.Join(o.Dir, fmt.Sprintf("m%d", i)), fmt.Sprintf("m%d", i), o.addr(i),
			"--join-addr", first.Addr, "--join-token", mtoken)
		if err != nil {
			stop()
			return nil, err
		}
		ms = append(ms, m)
		if err := m.WaitReady(ctx); err != nil {
			stop()
			return nil, err
		}
	}
	return ms, nil
}

// ScheduleResult is what Schedule measured.
type ScheduleResult struct {
	Nodes, Services, Tasks int
	// Join is how long the simulated nodes took to join and register.
	Join time.Duration
	// Assigned is the time from the first CreateService to every task
	// ASSIGNED (or further).
	Assigned time.Duration
	// PeakRSS is the manager's peak resident memory; IdleRSS its resident
	// memory with the nodes connected, before the services.
	PeakRSS, IdleRSS int64
	// CPU is the manager's CPU time from the first CreateService to every
	// task assigned: less sensitive than Assigned to other work on the
	// machine.
	CPU time.Duration
	// NodesCPU is the benchmark process's own CPU time then: the simulated
	// nodes (taking their assignments, with RunTasks), and the polling, on
	// the same CPUs as the manager.
	NodesCPU time.Duration
	// Running, with RunTasks, is the time from the first CreateService to
	// every task RUNNING on its node.
	Running time.Duration
}

// Schedule creates services x replicas tasks on o.Nodes simulated nodes of
// a one-manager swarm and measures the time until all are assigned.
func Schedule(ctx context.Context, o Options, services, replicas int) (ScheduleResult, error) {
	res := ScheduleResult{Nodes: o.Nodes, Services: services, Tasks: services * replicas}
	var debugAddr string
	o.ManagerArgs, debugAddr = withDebug(o.ManagerArgs, fmt.Sprintf("%d.%d.%d.%d:4243", o.IP[0], o.IP[1], o.IP[2], o.IP[3]))
	ms, err := startCluster(ctx, o, 1)
	if err != nil {
		return res, err
	}
	m := ms[0]
	defer m.Kill()
	wtoken, _, err := m.JoinTokens(ctx)
	if err != nil {
		return res, err
	}
	start := time.Now()
	agents, err := StartAgents(ctx, o.Nodes, o.JoinParallel, m.Addr, wtoken, []string{m.Addr}, o.RunTasks)
	if err != nil {
		return res, err
	}
	defer agents.Stop()
	if err := waitReadyNodes(ctx, m, o.Nodes); err != nil {
		return res, err
	}
	res.Join = time.Since(start)
	if err := drainManagers(ctx, m); err != nil {
		return res, err
	}
	res.IdleRSS, _, _ = m.Memory()
	fmt.Fprintf(o.Out, "%d simulated nodes joined and READY in %s; manager RSS %d MiB\n", o.Nodes, res.Join.Round(time.Millisecond), res.IdleRSS>>20)

	cpu0, err := m.CPUTime()
	if err != nil {
		return res, err
	}
	self0, err := selfCPUTime()
	if err != nil {
		return res, err
	}
	start = time.Now()
	ids := make([]string, 0, services)
	for i := range services {
		resp, err := m.Control().CreateService(ctx, &api.CreateServiceRequest{Spec: &api.ServiceSpec{
			Annotations: &api.Annotations{Name: fmt.Sprintf("bench-%03d", i)},
			Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "bench:latest"}},
			Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: uint64(replicas)}},
		}})
		if err != nil {
			return res, fmt.Errorf("create service %d: %w", i, err)
		}
		ids = append(ids, resp.GetService().GetId())
	}
	created := time.Since(start)
	if err := waitCensus(ctx, debugAddr, res.Tasks, atLeast(api.TaskState_TASK_STATE_ASSIGNED)); err != nil {
		return res, err
	}
	res.Assigned = time.Since(start)
	cpu1, err := m.CPUTime()
	if err != nil {
		return res, err
	}
	res.CPU = cpu1 - cpu0
	self1, err := selfCPUTime()
	if err != nil {
		return res, err
	}
	res.NodesCPU = self1 - self0
	_, res.PeakRSS, _ = m.Memory()
	if o.RunTasks {
		running := func(st api.TaskState) bool { return st == api.TaskState_TASK_STATE_RUNNING }
		if err := waitCensus(ctx, debugAddr, res.Tasks, running); err != nil {
			return res, err
		}
		res.Running = time.Since(start)
	}
	// Untimed: every service has its replicas assigned to nodes.
	if err := checkAssigned(ctx, m, ids, replicas); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Out, "%d services x %d replicas on %d nodes: created in %s, all ASSIGNED after %s; manager CPU %s, peak RSS %d MiB; simulated nodes' CPU %s\n",
		services, replicas, o.Nodes, created.Round(time.Millisecond), res.Assigned.Round(time.Millisecond), res.CPU.Round(10*time.Millisecond), res.PeakRSS>>20,
		res.NodesCPU.Round(10*time.Millisecond))
	if o.RunTasks {
		fmt.Fprintf(o.Out, "all RUNNING on their nodes after %s\n", res.Running.Round(time.Millisecond))
	}
	return res, nil
}

// drainManagers drains the manager nodes, as the managers of a large swarm
// are: the tasks go to the simulated nodes only, not to a manager's own
// engine (whose attempts to run them would load the machine measured).
func drainManagers(ctx context.Context, m *Manager) error {
	resp, err := m.Control().ListNodes(ctx, &api.ListNodesRequest{Filters: &api.ListFilters{Roles: []api.NodeRole{api.NodeRole_NODE_ROLE_MANAGER}}})
	if err != nil {
		return fmt.Errorf("list managers: %w", err)
	}
	for _, n := range resp.GetNodes() {
		spec := proto.CloneOf(n.GetSpec())
		if spec == nil {
			spec = &api.NodeSpec{}
		}
		spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN
		_, err := m.Control().UpdateNode(ctx, &api.UpdateNodeRequest{NodeId: n.GetId(), NodeVersion: n.GetMeta().GetVersion(), Spec: spec})
		if err != nil {
			return fmt.Errorf("drain manager %s: %w", n.GetId(), err)
		}
	}
	return nil
}

// waitReadyNodes polls until want worker nodes are READY.
func waitReadyNodes(ctx context.Context, m *Manager, want int) error {
	return poll(ctx, 100*time.Millisecond, func() (bool, error) {
		resp, err := m.Control().ListNodes(ctx, &api.ListNodesRequest{Filters: &api.ListFilters{Roles: []api.NodeRole{api.NodeRole_NODE_ROLE_WORKER}}})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range resp.GetNodes() {
			if n.GetStatus().GetState() == api.NodeStatus_READY {
				ready++
			}
		}
		return ready >= want, nil
	})
}

// waitCensus polls the manager's task census until want tasks are in a
// state that in accepts: the swarm holds only the services measured. A
// scrape costs the manager a few microseconds (the census is kept as tasks
// are written); listing the tasks through the control API instead cost it
// about a tenth of its CPU during the burst, encoding every task at least
// once.
func waitCensus(ctx context.Context, debugAddr string, want int, in func(api.TaskState) bool) error {
	return poll(ctx, 50*time.Millisecond, func() (bool, error) {
		n, err := countTasks(ctx, debugAddr, in)
		return n >= want, err
	})
}

// atLeast accepts the states from min on.
func atLeast(min api.TaskState) func(api.TaskState) bool {
	return func(st api.TaskState) bool { return st >= min }
}

// checkAssigned checks that every service in ids has replicas tasks
// assigned to nodes.
func checkAssigned(ctx context.Context, m *Manager, ids []string, replicas int) error {
	for _, id := range ids {
		resp, err := m.Control().ListTasks(ctx, &api.ListTasksRequest{Filters: &api.ListFilters{ServiceIds: []string{id}}})
		if err != nil {
			return fmt.Errorf("list tasks of service %s: %w", id, err)
		}
		assigned := 0
		for _, t := range resp.GetTasks() {
			if t.GetStatus().GetState() >= api.TaskState_TASK_STATE_ASSIGNED && t.GetNodeId() != "" {
				assigned++
			}
		}
		if assigned != replicas {
			return fmt.Errorf("service %s: %d tasks assigned, want %d", id, assigned, replicas)
		}
	}
	return nil
}

func poll(ctx context.Context, every time.Duration, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// HeartbeatResult is what Heartbeat measured.
type HeartbeatResult struct {
	Nodes int
	// CPU is the leader's CPU use (cores) while the nodes heartbeat on
	// the default period; RSS its resident memory then.
	CPU float64
	RSS int64
	// Failover is the time from killing the leader until every node has
	// a session with the new leader; Down counts the nodes the store
	// showed not READY at that point.
	Failover time.Duration
	Down     int
}

// Heartbeat connects o.Nodes simulated nodes to a three-manager swarm,
// measures the leader's CPU and memory over window, then kills the leader
// and measures how long until every node is back with the new leader.
func Heartbeat(ctx context.Context, o Options, window time.Duration) (HeartbeatResult, error) {
	res := HeartbeatResult{Nodes: o.Nodes}
	ms, err := startCluster(ctx, o, 3)
	if err != nil {
		return res, err
	}
	defer func() {
		for _, m := range ms {
			m.Kill()
		}
	}()
	leader := ms[0]
	wtoken, _, err := leader.JoinTokens(ctx)
	if err != nil {
		return res, err
	}
	addrs := []string{ms[0].Addr, ms[1].Addr, ms[2].Addr}
	start := time.Now()
	agents, err := StartAgents(ctx, o.Nodes, o.JoinParallel, leader.Addr, wtoken, addrs, false)
	if err != nil {
		return res, err
	}
	defer agents.Stop()
	if err := waitReadyNodes(ctx, leader, o.Nodes); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Out, "%d simulated nodes joined and READY in %s\n", o.Nodes, time.Since(start).Round(time.Millisecond))

	cpu0, err := leader.CPUTime()
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	cpu1, _ := leader.CPUTime()
	res.CPU = float64(cpu1-cpu0) / float64(time.Since(t0))
	res.RSS, _, _ = leader.Memory()
	fmt.Fprintf(o.Out, "leader with %d nodes heartbeating: %.3f cores, RSS %d MiB\n", o.Nodes, res.CPU, res.RSS>>20)

	killed := time.Now()
	leader.Kill()
	rest := ms[1:]
	var next *Manager
	// The way back, as it goes: when the new leader is known, then how
	// many nodes are in session with it each second.
	report := killed.Add(time.Second)
	err = poll(ctx, 10*time.Millisecond, func() (bool, error) {
		if next == nil {
			for _, m := range rest {
				// A manager may hold a control call while it has no
				// leader: ask each briefly.
				cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				leads := m.IsLeader(cctx)
				cancel()
				if leads {
					next = m
					fmt.Fprintf(o.Out, "  %s: %s leads\n", time.Since(killed).Round(time.Millisecond), m.Name)
				}
			}
			return false, nil
		}
		connected := agents.Connected(next.Addr)
		if time.Now().After(report) {
			fmt.Fprintf(o.Out, "  %s: %d nodes in session with %s\n", time.Since(killed).Round(time.Second), connected, next.Name)
			// The next line a second from now: when the leader was
			// found late, the seconds before it are not printed at once.
			report = time.Now().Add(time.Second)
		}
		return connected == agents.Len(), nil
	})
	if err != nil {
		return res, err
	}
	res.Failover = time.Since(killed)
	resp, err := next.Control().ListNodes(ctx, &api.ListNodesRequest{Filters: &api.ListFilters{Roles: []api.NodeRole{api.NodeRole_NODE_ROLE_WORKER}}})
	if err != nil {
		return res, err
	}
	states := map[string]int{}
	for _, n := range resp.GetNodes() {
		if n.GetStatus().GetState() != api.NodeStatus_READY {
			res.Down++
		}
		states[n.GetStatus().GetState().String()]++
	}
	keys := make([]string, 0, len(states))
	for k := range states {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(o.Out, "leader killed: all %d nodes in session with the new leader %s after %s; worker states then:", o.Nodes, next.Name, res.Failover.Round(time.Millisecond))
	for _, k := range keys {
		fmt.Fprintf(o.Out, " %s=%d", k, states[k])
	}
	fmt.Fprintln(o.Out)
	return res, nil
}
