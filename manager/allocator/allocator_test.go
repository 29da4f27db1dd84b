package allocator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/openswarm/swarmd/manager/state/store/storetest"
	"google.golang.org/protobuf/proto"
)

const (
	stateNew      = api.TaskState_TASK_STATE_NEW
	statePending  = api.TaskState_TASK_STATE_PENDING
	stateRunning  = api.TaskState_TASK_STATE_RUNNING
	stateComplete = api.TaskState_TASK_STATE_COMPLETE
	stateShutdown = api.TaskState_TASK_STATE_SHUTDOWN
	stateFailed   = api.TaskState_TASK_STATE_FAILED
)

// testNow is when the tests' tasks are created and their clocks start.
func testNow() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// newStore returns a store closed when the test ends, after the
// allocators started later have stopped.
func newStore(t *testing.T, p store.Proposer) *store.MemoryStore {
	return storetest.New(t, p)
}

// startAllocator runs an allocator on s until the test ends or the
// returned stop is called.
func startAllocator(t *testing.T, s *store.MemoryStore, opts ...Option) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := New(s, append([]Option{
		WithClock(clockwork.NewFakeClockAt(testNow())),
		WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))),
	}, opts...)...)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor waits until cond holds on the store, re-checking at every change.
func waitFor(t *testing.T, s *store.MemoryStore, what string, cond func(tx store.ReadTx) bool) {
	t.Helper()
	events, cancel, err := s.ViewAndWatch(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		ok := false
		s.View(func(tx store.ReadTx) { ok = cond(tx) })
		if ok {
			return
		}
		select {
		case <-events:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func create(t *testing.T, s *store.MemoryStore, objs ...api.StoreObject) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func update(t *testing.T, s *store.MemoryStore, kind store.Kind, id string, change func(o api.StoreObject)) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		o := tx.Get(kind, id)
		if o == nil {
			return fmt.Errorf("%s %s not found", kind, id)
		}
		change(o)
		return tx.Update(o)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, s *store.MemoryStore, kind store.Kind, id string) {
	t.Helper()
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Delete(kind, id) }); err != nil {
		t.Fatal(err)
	}
}

func network(id string, ingress bool, subnets ...string) *api.Network {
	n := &api.Network{Id: id, Spec: &api.NetworkSpec{Annotations: &api.Annotations{Name: id}, Driver: "overlay", Ingress: ingress}}
	for _, s := range subnets {
		n.Spec.Ipam = append(n.Spec.Ipam, &api.IPAMConfig{Subnet: s})
	}
	return n
}

func tasksOf(s *api.Service, n int) []api.StoreObject {
	var out []api.StoreObject
	for i := range n {
		out = append(out, orchestrator.NewTask(s, uint64(i+1), "", testNow()))
	}
	return out
}

func findTasks(tx store.ReadTx, serviceID string) []*api.Task {
	tasks, _ := store.FindTasks(tx, store.ByServiceID(serviceID))
	return tasks
}

func allInState(tx store.ReadTx, serviceID string, n int, st api.TaskState) bool {
	tasks := findTasks(tx, serviceID)
	return len(tasks) == n && !slices.ContainsFunc(tasks, func(t *api.Task) bool { return t.GetStatus().GetState() != st })
}

// checkConsistent fails if the allocations the store records conflict:
// a port, address, VNI held twice, or overlapping carved subnets.
func checkConsistent(t *testing.T, s *store.MemoryStore) {
	t.Helper()
	s.View(func(tx store.ReadTx) {
		networks, _ := store.FindNetworks(tx, store.All)
		services, _ := store.FindServices(tx, store.All)
		tasks, _ := store.FindTasks(tx, store.All)
		if problems := newLedger(DynamicPortStart, DynamicPortEnd).rebuild(networks, services, tasks); len(problems) > 0 {
			t.Fatalf("conflicting allocations in the store: %v", problems)
		}
		var subnets []netip.Prefix
		for _, n := range networks {
			for _, c := range n.GetIpam() {
				p := netip.MustParsePrefix(c.GetSubnet())
				for _, q := range subnets {
					if p.Overlaps(q) {
						t.Fatalf("subnets %s and %s overlap", p, q)
					}
				}
				subnets = append(subnets, p)
			}
		}
	})
}

func TestRunPublishedPorts(t *testing.T) {
	s := newStore(t, nil)
	ing := network("ingress", true)
	webSvc := service("svc-web", "web", api.EndpointSpec_VIP, nil, port(tcp, 80, 8080, ingress))
	dynSvc := service("svc-dyn", "dyn", api.EndpointSpec_VIP, nil, port(tcp, 80, 0, ingress), port(udp, 53, 0, ingress))
	create(t, s, ing, webSvc, dynSvc)
	create(t, s, slices.Concat(tasksOf(webSvc, 2), tasksOf(dynSvc, 2))...)
	startAllocator(t, s)

	waitFor(t, s, "tasks pending", func(tx store.ReadTx) bool {
		return allInState(tx, "svc-web", 2, statePending) && allInState(tx, "svc-dyn", 2, statePending)
	})
	s.View(func(tx store.ReadTx) {
		n := store.GetNetwork(tx, "ingress")
		if got := subnetsOf(n); !slices.Equal(got, []string{"10.0.0.0/24"}) || n.GetVni() != 4096 {
			t.Fatalf("ingress network allocated %v vni %d", got, n.GetVni())
		}
		for id, want := range map[string][]uint32{"svc-web": {8080}, "svc-dyn": {30000, 30000}} {
			svc := store.GetService(tx, id)
			ep := svc.GetEndpoint()
			var got []uint32
			for _, p := range ep.GetPorts() {
				got = append(got, p.GetPublishedPort())
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s published %v, want %v", id, got, want)
			}
			if !proto.Equal(ep.GetSpec(), svc.GetSpec().GetEndpoint()) {
				t.Fatalf("%s endpoint spec differs from its spec", id)
			}
			if len(ep.GetVirtualIps()) != 1 || ep.GetVirtualIps()[0].GetNetworkId() != "ingress" {
				t.Fatalf("%s VIPs %v, want one on ingress", id, ep.GetVirtualIps())
			}
			for _, task := range findTasks(tx, id) {
				if !proto.Equal(task.GetEndpoint(), ep) {
					t.Fatalf("task %s endpoint %v, want the service's %v", task.GetId(), task.GetEndpoint(), ep)
				}
				if task.GetStatus().GetMessage() != PendingMessage || task.GetStatus().GetErr() != "" {
					t.Fatalf("task status %v", task.GetStatus())
				}
				if len(task.GetNetworks()) != 1 || task.GetNetworks()[0].GetNetwork().GetId() != "ingress" ||
					!proto.Equal(task.GetNetworks()[0].GetNetwork().GetIpam()[0], n.GetIpam()[0]) {
					t.Fatalf("task networks %v, want the ingress network", task.GetNetworks())
				}
				if orchestrator.IsTaskDirty(svc, task) {
					t.Fatal("allocated task is dirty for its service")
				}
			}
		}
	})
	checkConsistent(t, s)
}

func TestRunAddressExhaustion(t *testing.T) {
	tests := []struct {
		name        string
		mode        api.EndpointSpec_ResolutionMode
		wantPending int // the rest stay NEW with the error
	}{
		{name: "dnsrr: one task gets the only address", mode: api.EndpointSpec_DNSRR, wantPending: 1},
		{name: "vip: the service's VIP takes it", mode: api.EndpointSpec_VIP, wantPending: 0},
	}
	const errText = "no free address in network small (subnet 10.9.0.0/30)"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, nil)
			svc := service("svc", "svc", tt.mode, []string{"small"})
			create(t, s, network("small", false, "10.9.0.0/30"), svc)
			create(t, s, tasksOf(svc, 2)...)
			startAllocator(t, s)

			count := func(tx store.ReadTx) (pending, failed int, addr string) {
				for _, task := range findTasks(tx, "svc") {
					switch {
					case task.GetStatus().GetState() == statePending:
						pending++
						addr = task.GetNetworks()[0].GetAddresses()[0]
					case task.GetStatus().GetState() == stateNew && task.GetStatus().GetErr() == errText:
						failed++
					}
				}
				return pending, failed, addr
			}
			waitFor(t, s, "one address handed out, the rest refused", func(tx store.ReadTx) bool {
				p, f, _ := count(tx)
				return p == tt.wantPending && f == 2-tt.wantPending
			})
			if tt.wantPending == 0 {
				return
			}
			var holder string
			s.View(func(tx store.ReadTx) {
				_, _, addr := count(tx)
				if addr != "10.9.0.2/30" {
					t.Fatalf("address %s, want 10.9.0.2/30", addr)
				}
				for _, task := range findTasks(tx, "svc") {
					if task.GetStatus().GetState() == statePending {
						holder = task.GetId()
					}
				}
			})
			// The task holding the address dies: the other gets it.
			update(t, s, store.KindTask, holder, func(o api.StoreObject) {
				task := o.(*api.Task)
				task.DesiredState = stateShutdown
				task.Status.State = stateFailed
			})
			waitFor(t, s, "the freed address handed out", func(tx store.ReadTx) bool {
				for _, task := range findTasks(tx, "svc") {
					if task.GetId() != holder && task.GetStatus().GetState() == statePending {
						return task.GetNetworks()[0].GetAddresses()[0] == "10.9.0.2/30" && task.GetStatus().GetErr() == ""
					}
				}
				return false
			})
		})
	}
}

func TestRunServiceDeletionFreesPort(t *testing.T) {
	s := newStore(t, nil)
	// Both ask for 8080, as a race past the control API's check would
	// leave them; the older keeps it.
	a := service("svc-a", "a", api.EndpointSpec_VIP, nil, port(tcp, 80, 8080, ingress))
	create(t, s, network("ingress", true), a)
	b := service("svc-b", "b", api.EndpointSpec_VIP, nil, port(tcp, 80, 8080, ingress))
	create(t, s, b)
	create(t, s, slices.Concat(tasksOf(a, 1), tasksOf(b, 1))...)
	startAllocator(t, s)

	const errText = "port 8080/tcp is already in use by service a (svc-a)"
	waitFor(t, s, "a allocated, b refused", func(tx store.ReadTx) bool {
		bt := findTasks(tx, "svc-b")
		return allInState(tx, "svc-a", 1, statePending) &&
			len(bt) == 1 && bt[0].GetStatus().GetState() == stateNew && bt[0].GetStatus().GetErr() == errText
	})
	s.View(func(tx store.ReadTx) {
		if ep := store.GetService(tx, "svc-b").GetEndpoint(); ep != nil {
			t.Fatalf("the loser has an endpoint: %v", ep)
		}
	})

	remove(t, s, store.KindService, "svc-a")
	waitFor(t, s, "b allocated", func(tx store.ReadTx) bool {
		ep := store.GetService(tx, "svc-b").GetEndpoint()
		return allInState(tx, "svc-b", 1, statePending) && len(ep.GetPorts()) == 1 && ep.GetPorts()[0].GetPublishedPort() == 8080
	})
	s.View(func(tx store.ReadTx) {
		if st := findTasks(tx, "svc-a")[0].GetStatus(); st.GetState() != statePending {
			t.Fatalf("task of the deleted service changed: %v", st)
		}
	})
	checkConsistent(t, s)
}

func TestRunServiceUpdate(t *testing.T) {
	s := newStore(t, nil)
	svc := service("svc", "web", api.EndpointSpec_VIP, []string{"front"}, port(tcp, 80, 0, ingress))
	create(t, s, network("ingress", true), network("front", false), network("back", false), svc)
	startAllocator(t, s)
	var before *api.Endpoint
	waitFor(t, s, "service allocated", func(tx store.ReadTx) bool {
		before = store.GetService(tx, "svc").GetEndpoint()
		return len(before.GetVirtualIps()) == 2
	})

	update(t, s, store.KindService, "svc", func(o api.StoreObject) {
		spec := o.(*api.Service).Spec
		spec.Task.Networks = []*api.NetworkAttachmentConfig{{Target: "back"}}
		spec.Endpoint.Ports = append(spec.Endpoint.Ports, port(tcp, 443, 0, ingress))
	})
	var after *api.Endpoint
	waitFor(t, s, "service reallocated", func(tx store.ReadTx) bool {
		after = store.GetService(tx, "svc").GetEndpoint()
		return len(after.GetPorts()) == 2
	})
	if after.GetPorts()[0].GetPublishedPort() != before.GetPorts()[0].GetPublishedPort() || after.GetPorts()[1].GetPublishedPort() == before.GetPorts()[0].GetPublishedPort() {
		t.Fatalf("ports %v after %v", after.GetPorts(), before.GetPorts())
	}
	if !proto.Equal(after.GetVirtualIps()[0], before.GetVirtualIps()[0]) || after.GetVirtualIps()[1].GetNetworkId() != "back" || len(after.GetVirtualIps()) != 2 {
		t.Fatalf("VIPs %v after %v: want ingress kept, front replaced by back", after.GetVirtualIps(), before.GetVirtualIps())
	}

	// The VIP on front is free again: a task on front gets it.
	other := service("svc-2", "other", api.EndpointSpec_DNSRR, []string{"front"})
	create(t, s, other)
	create(t, s, tasksOf(other, 1)...)
	waitFor(t, s, "task on front", func(tx store.ReadTx) bool { return allInState(tx, "svc-2", 1, statePending) })
	s.View(func(tx store.ReadTx) {
		if got := findTasks(tx, "svc-2")[0].GetNetworks()[0].GetAddresses()[0]; got != before.GetVirtualIps()[1].GetAddr() {
			t.Fatalf("task on front got %s, want the freed VIP %s", got, before.GetVirtualIps()[1].GetAddr())
		}
	})
	checkConsistent(t, s)
}

func TestRunNetworks(t *testing.T) {
	s := newStore(t, nil)
	if err := s.Update(context.Background(), func(tx store.Tx) error {
		return tx.Create(&api.Cluster{Id: "c", Spec: &api.ClusterSpec{Annotations: &api.Annotations{Name: "default"}},
			DefaultAddressPool: []string{"10.20.0.0/16"}, DefaultAddressPoolMask: 24})
	}); err != nil {
		t.Fatal(err)
	}
	create(t, s, network("a", false), network("b", false, "10.20.1.0/24"), network("c", false))
	macvlan := network("d", false, "192.168.9.0/24")
	macvlan.Spec.Driver = "macvlan"
	create(t, s, macvlan)
	startAllocator(t, s)

	allocated := func(tx store.ReadTx, ids ...string) bool {
		for _, id := range ids {
			if len(store.GetNetwork(tx, id).GetIpam()) == 0 {
				return false
			}
		}
		return true
	}
	waitFor(t, s, "networks allocated", func(tx store.ReadTx) bool { return allocated(tx, "a", "b", "c", "d") })
	want := map[string]struct {
		subnet string
		vni    uint32
	}{
		"a": {"10.20.0.0/24", 4096},
		"b": {"10.20.1.0/24", 4097},
		"c": {"10.20.2.0/24", 4098},
		"d": {"192.168.9.0/24", 0},
	}
	s.View(func(tx store.ReadTx) {
		for id, w := range want {
			n := store.GetNetwork(tx, id)
			if got := subnetsOf(n); !slices.Equal(got, []string{w.subnet}) || n.GetVni() != w.vni {
				t.Fatalf("network %s: %v vni %d, want %s vni %d", id, got, n.GetVni(), w.subnet, w.vni)
			}
		}
	})
	checkConsistent(t, s)

	// A deleted network's subnet and VNI go to the next one.
	remove(t, s, store.KindNetwork, "a")
	create(t, s, network("e", false))
	waitFor(t, s, "network e allocated", func(tx store.ReadTx) bool { return allocated(tx, "e") })
	s.View(func(tx store.ReadTx) {
		n := store.GetNetwork(tx, "e")
		if got := subnetsOf(n); !slices.Equal(got, []string{"10.20.0.0/24"}) || n.GetVni() != 4096 {
			t.Fatalf("network e: %v vni %d, want the freed 10.20.0.0/24 and 4096", got, n.GetVni())
		}
	})
}

func TestRunTaskEligibility(t *testing.T) {
	s := newStore(t, nil)
	svc := service("svc", "web", api.EndpointSpec_VIP, []string{"front"})
	create(t, s, network("front", false), svc)
	mk := func(desired api.TaskState, serviceID string) *api.Task {
		task := orchestrator.NewTask(svc, 1, "", testNow())
		task.DesiredState = desired
		task.ServiceId = serviceID
		return task
	}
	running, job := mk(stateRunning, "svc"), mk(stateComplete, "svc")
	stopped, orphan := mk(stateShutdown, "svc"), mk(stateRunning, "gone")
	create(t, s, running, job, stopped, orphan)
	startAllocator(t, s)

	waitFor(t, s, "runnable tasks pending", func(tx store.ReadTx) bool {
		return store.GetTask(tx, running.GetId()).GetStatus().GetState() == statePending &&
			store.GetTask(tx, job.GetId()).GetStatus().GetState() == statePending
	})
	s.View(func(tx store.ReadTx) {
		for _, id := range []string{stopped.GetId(), orphan.GetId()} {
			if st := store.GetTask(tx, id).GetStatus(); st.GetState() != stateNew || st.GetErr() != "" {
				t.Fatalf("task %s: %v, want it left alone", id, st)
			}
		}
	})
}

// TestRunRestart checks that a new allocator on the same store (a new
// leader) continues without allocating anything twice.
func TestRunRestart(t *testing.T) {
	s := newStore(t, nil)
	webSvc := service("svc-web", "web", api.EndpointSpec_VIP, []string{"front"}, port(tcp, 80, 8080, ingress), port(tcp, 81, 0, ingress))
	create(t, s, network("ingress", true), network("front", false), webSvc)
	create(t, s, tasksOf(webSvc, 3)...)
	stop := startAllocator(t, s)
	waitFor(t, s, "first allocation", func(tx store.ReadTx) bool { return allInState(tx, "svc-web", 3, statePending) })
	stop()

	versions := map[string]uint64{}
	saved, err := s.Save()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range saved.GetNetworks() {
		versions[n.GetId()] = n.GetMeta().GetVersion().GetIndex()
	}
	for _, o := range saved.GetServices() {
		versions[o.GetId()] = o.GetMeta().GetVersion().GetIndex()
	}
	for _, o := range saved.GetTasks() {
		versions[o.GetId()] = o.GetMeta().GetVersion().GetIndex()
	}

	// While no allocator runs: more tasks, a new service, a new network.
	api2 := service("svc-api", "api", api.EndpointSpec_VIP, []string{"front", "back"}, port(tcp, 80, 0, ingress))
	create(t, s, network("back", false), api2)
	create(t, s, slices.Concat(tasksOf(webSvc, 2), tasksOf(api2, 3))...)
	startAllocator(t, s)
	waitFor(t, s, "second allocation", func(tx store.ReadTx) bool {
		return allInState(tx, "svc-web", 5, statePending) && allInState(tx, "svc-api", 3, statePending)
	})

	s.View(func(tx store.ReadTx) {
		for id, v := range versions {
			var o api.StoreObject
			for _, k := range []store.Kind{store.KindNetwork, store.KindService, store.KindTask} {
				if o = tx.Get(k, id); o != nil {
					break
				}
			}
			if got := o.GetMeta().GetVersion().GetIndex(); got != v {
				t.Fatalf("%s rewritten by the new allocator (version %d -> %d)", id, v, got)
			}
		}
		ports := store.GetService(tx, "svc-api").GetEndpoint().GetPorts()
		if len(ports) != 1 || ports[0].GetPublishedPort() != 30001 {
			t.Fatalf("new service's ports %v, want 30001 (30000 is web's)", ports)
		}
	})
	checkConsistent(t, s)
}

func TestRunRestore(t *testing.T) {
	s := newStore(t, nil)
	svc := service("svc", "web", api.EndpointSpec_DNSRR, []string{"front"})
	create(t, s, network("front", false), svc)
	create(t, s, tasksOf(svc, 2)...)
	startAllocator(t, s)
	waitFor(t, s, "allocated", func(tx store.ReadTx) bool { return allInState(tx, "svc", 2, statePending) })

	// Replace the store's content (as a snapshot from the raft log would):
	// one task gone, a new one to allocate.
	snap, err := s.Save()
	if err != nil {
		t.Fatal(err)
	}
	gone := snap.Tasks[0].GetNetworks()[0].GetAddresses()[0]
	snap.Tasks = append(snap.Tasks[1:], orchestrator.NewTask(svc, 3, "", testNow()))
	if err := s.Restore(snap); err != nil {
		t.Fatal(err)
	}
	waitFor(t, s, "new task allocated after the restore", func(tx store.ReadTx) bool { return allInState(tx, "svc", 2, statePending) })
	s.View(func(tx store.ReadTx) {
		for _, task := range findTasks(tx, "svc") {
			if task.GetSlot() == 3 && task.GetNetworks()[0].GetAddresses()[0] != gone {
				t.Fatalf("new task got %s, want the address the restore freed (%s)", task.GetNetworks()[0].GetAddresses()[0], gone)
			}
		}
	})
	checkConsistent(t, s)
}

// hookProposer applies proposals to its store at once, after calling hook
// (if set), which may apply other requests first or drop the proposal by
// returning an error.
type hookProposer struct {
	mu    sync.Mutex
	s     *store.MemoryStore
	index uint64
	hook  func(p *hookProposer, actions []*api.StoreAction) error
}

func (p *hookProposer) ProposeValue(ctx context.Context, actions []*api.StoreAction) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hook != nil {
		if err := p.hook(p, actions); err != nil {
			return err
		}
	}
	return p.apply(actions)
}

// apply applies copies of actions as the next request (p.mu held).
func (p *hookProposer) apply(actions []*api.StoreAction) error {
	copies := make([]*api.StoreAction, len(actions))
	for i, a := range actions {
		copies[i] = proto.CloneOf(a)
	}
	p.index++
	return p.s.Apply(p.index, copies)
}

// once returns a hook calling f for the first proposal match accepts.
func once(match func(a *api.StoreAction) bool, f func(p *hookProposer, a *api.StoreAction) error) func(*hookProposer, []*api.StoreAction) error {
	done := false
	return func(p *hookProposer, actions []*api.StoreAction) error {
		if done {
			return nil
		}
		for _, a := range actions {
			if match(a) {
				done = true
				return f(p, a)
			}
		}
		return nil
	}
}

// TestRunSequenceConflict has a concurrent change of a service (as a
// control API update winning the race in raft) make the allocator's write
// of its endpoint fail with ErrSequenceConflict: the allocator must drop
// what it reserved for it, re-read and allocate again.
func TestRunSequenceConflict(t *testing.T) {
	raced := false
	p := &hookProposer{hook: once(
		func(a *api.StoreAction) bool {
			return a.GetKind() == api.StoreAction_UPDATE && a.GetService().GetEndpoint() != nil
		},
		func(p *hookProposer, a *api.StoreAction) error {
			var cur *api.Service
			p.s.View(func(tx store.ReadTx) { cur = store.GetService(tx, a.GetService().GetId()) })
			cur.Spec.Annotations.Labels = map[string]string{"raced": "yes"}
			raced = true
			return p.apply([]*api.StoreAction{{Kind: api.StoreAction_UPDATE, Target: &api.StoreAction_Service{Service: cur}}})
		})}
	s := newStore(t, p)
	p.s = s
	svc := service("svc", "web", api.EndpointSpec_VIP, []string{"front"}, port(tcp, 80, 0, ingress))
	create(t, s, network("ingress", true), network("front", false), svc)
	create(t, s, tasksOf(svc, 2)...)
	startAllocator(t, s)

	waitFor(t, s, "allocated despite the race", func(tx store.ReadTx) bool { return allInState(tx, "svc", 2, statePending) })
	s.View(func(tx store.ReadTx) {
		got := store.GetService(tx, "svc")
		if !raced || got.GetSpec().GetAnnotations().GetLabels()["raced"] != "yes" {
			t.Fatal("the concurrent change did not happen or was lost")
		}
		if len(got.GetEndpoint().GetVirtualIps()) != 2 {
			t.Fatalf("VIPs %v", got.GetEndpoint().GetVirtualIps())
		}
		for _, task := range findTasks(tx, "svc") {
			if !proto.Equal(task.GetEndpoint(), got.GetEndpoint()) {
				t.Fatal("task endpoint is not the service's recorded one")
			}
		}
	})
	checkConsistent(t, s)
	// The addresses the failed write had reserved were freed: the next
	// ones are the lowest after what the store records.
	create(t, s, tasksOf(svc, 1)[0])
	waitFor(t, s, "one more task", func(tx store.ReadTx) bool { return allInState(tx, "svc", 3, statePending) })
	s.View(func(tx store.ReadTx) {
		var addrs []string
		for _, task := range findTasks(tx, "svc") {
			for _, att := range task.GetNetworks() {
				if att.GetNetwork().GetId() == "front" {
					addrs = append(addrs, att.GetAddresses()[0])
				}
			}
		}
		vip := store.GetService(tx, "svc").GetEndpoint().GetVirtualIps()[1].GetAddr()
		addrs = append(addrs, vip)
		slices.Sort(addrs)
		if want := []string{"10.0.0.2/24", "10.0.0.3/24", "10.0.0.4/24", "10.0.0.5/24"}; !slices.Equal(addrs, want) {
			t.Fatalf("addresses on front %v, want %v (nothing leaked)", addrs, want)
		}
	})
}

// TestRunRetryAfterFailedProposal has the proposal moving the tasks to
// PENDING fail without any change to the store (no event follows): the
// allocator retries after its retry delay.
func TestRunRetryAfterFailedProposal(t *testing.T) {
	p := &hookProposer{hook: once(
		func(a *api.StoreAction) bool { return a.GetTask().GetStatus().GetState() == statePending },
		func(*hookProposer, *api.StoreAction) error { return errors.New("proposal dropped") })}
	s := newStore(t, p)
	p.s = s
	svc := service("svc", "web", api.EndpointSpec_DNSRR, []string{"front"})
	create(t, s, network("front", false), svc)
	create(t, s, tasksOf(svc, 2)...)
	clock := clockwork.NewFakeClockAt(testNow())
	startAllocator(t, s, WithClock(clock))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // the retry timer
		t.Fatalf("no retry timer: %v", err)
	}
	s.View(func(tx store.ReadTx) {
		if allInState(tx, "svc", 2, statePending) {
			t.Fatal("tasks pending although the proposal was dropped")
		}
	})
	clock.Advance(minRetryDelay)
	waitFor(t, s, "tasks pending after the retry", func(tx store.ReadTx) bool { return allInState(tx, "svc", 2, statePending) })
	checkConsistent(t, s)
	s.View(func(tx store.ReadTx) {
		var addrs []string
		for _, task := range findTasks(tx, "svc") {
			addrs = append(addrs, task.GetNetworks()[0].GetAddresses()[0])
		}
		slices.Sort(addrs)
		if want := []string{"10.0.0.2/24", "10.0.0.3/24"}; !slices.Equal(addrs, want) {
			t.Fatalf("addresses %v, want %v (the dropped write's reservations freed)", addrs, want)
		}
	})
}

func TestRunDynamicPortsExhausted(t *testing.T) {
	s := newStore(t, nil)
	a := service("svc-a", "a", api.EndpointSpec_VIP, nil, port(tcp, 80, 0, ingress))
	b := service("svc-b", "b", api.EndpointSpec_VIP, nil, port(tcp, 80, 0, ingress))
	create(t, s, network("ingress", true), a)
	create(t, s, b)
	create(t, s, slices.Concat(tasksOf(a, 1), tasksOf(b, 1))...)
	startAllocator(t, s, WithDynamicPortRange(31000, 31000))

	const errText = "no free port left in the dynamic range 31000-31000 for tcp"
	waitFor(t, s, "a allocated, b refused", func(tx store.ReadTx) bool {
		bt := findTasks(tx, "svc-b")
		return allInState(tx, "svc-a", 1, statePending) && len(bt) == 1 && bt[0].GetStatus().GetErr() == errText
	})
	s.View(func(tx store.ReadTx) {
		if got := store.GetService(tx, "svc-a").GetEndpoint().GetPorts()[0].GetPublishedPort(); got != 31000 {
			t.Fatalf("a published %d", got)
		}
	})
}
