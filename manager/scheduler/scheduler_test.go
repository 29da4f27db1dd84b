package scheduler

import (
	"context"
	"errors"
	"fmt"
	"github.com/openswarm/swarmd/manager/orchestrator/orchestratortest"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/openswarm/swarmd/manager/state/store/storetest"
	"google.golang.org/protobuf/proto"
)

// waitTimeout bounds every wait of these tests; waits end as soon as
// their condition holds.
const waitTimeout = 20 * time.Second

// runner runs a Scheduler on a store with a fake clock and no batching
// delay (unless opts say otherwise).
type runner struct {
	t      *testing.T
	store  *store.MemoryStore
	clock  *clockwork.FakeClock
	sch    *Scheduler
	ctx    context.Context
	cancel context.CancelFunc
	done   chan error
}

func startRunner(t *testing.T, s *store.MemoryStore, opts ...Option) *runner {
	t.Helper()
	r := &runner{t: t, store: s, clock: clockwork.NewFakeClock(), done: make(chan error, 1)}
	r.ctx, r.cancel = context.WithTimeout(context.Background(), waitTimeout)
	opts = append([]Option{WithClock(r.clock), WithLogger(slog.New(slog.DiscardHandler)), WithBatchDelay(0)}, opts...)
	sch := New(s, opts...)
	r.sch = sch
	go func() { r.done <- sch.Run(r.ctx) }()
	t.Cleanup(func() {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// newStore returns a local store, closed once the test and its
// scheduler are done.
func newStore(t *testing.T) *store.MemoryStore {
	return storetest.New(t, nil)
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
		t.Fatalf("create: %v", err)
	}
}

// update changes the stored object of type T with that ID.
func update[T api.StoreObject](t *testing.T, s *store.MemoryStore, id string, change func(T)) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		o := store.Get[T](tx, id)
		change(o)
		return tx.Update(o)
	})
	if err != nil {
		t.Fatalf("update %s: %v", id, err)
	}
}

func getTask(s *store.MemoryStore, id string) *api.Task {
	var t *api.Task
	s.View(func(tx store.ReadTx) { t = store.GetTask(tx, id) })
	return t
}

func assignedTo(node string, ids ...string) func(tx store.ReadTx) bool {
	return func(tx store.ReadTx) bool {
		for _, id := range ids {
			tk := store.GetTask(tx, id)
			if tk.GetStatus().GetState() != api.TaskState_TASK_STATE_ASSIGNED || node != "" && tk.GetNodeId() != node {
				return false
			}
		}
		return true
	}
}

func pendingWith(err string, ids ...string) func(tx store.ReadTx) bool {
	return func(tx store.ReadTx) bool {
		for _, id := range ids {
			tk := store.GetTask(tx, id)
			if tk.GetStatus().GetState() != api.TaskState_TASK_STATE_PENDING || tk.GetStatus().GetErr() != err {
				return false
			}
		}
		return true
	}
}

func ids(tasks []*api.Task) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.Id)
	}
	return out
}

func objects[T api.StoreObject](in ...T) []api.StoreObject {
	out := make([]api.StoreObject, len(in))
	for i, o := range in {
		out[i] = o
	}
	return out
}

func TestRunAssignsPendingTasks(t *testing.T) {
	s := newStore(t)
	first := mkTasks("a", "s", 5)
	create(t, s, objects(nodes3()...)...)
	create(t, s, objects(first...)...)
	r := startRunner(t, s)
	orchestratortest.WaitFor(t, s, "the first tasks assigned", assignedTo("", ids(first)...))

	later := mkTasks("b", "s", 4)
	create(t, s, objects(later...)...)
	all := append(ids(first), ids(later)...)
	orchestratortest.WaitFor(t, s, "every task assigned", assignedTo("", all...))

	perNode := map[string]int{}
	for _, id := range all {
		tk := getTask(s, id)
		st := tk.GetStatus()
		if st.GetMessage() != AssignedMessage || st.GetErr() != "" || !st.GetTimestamp().AsTime().Equal(r.clock.Now()) {
			t.Errorf("task %s status %v", id, st)
		}
		perNode[tk.GetNodeId()]++
	}
	if perNode["n1"] != 3 || perNode["n2"] != 3 || perNode["n3"] != 3 {
		t.Errorf("tasks per node %v, want 3 each", perNode)
	}
}

func TestRunWaitsForAFittingNode(t *testing.T) {
	s := newStore(t)
	create(t, s, mkNode("n1", nodeResources(cpu, gib)), mkTask("t1", "s", reserve(2*cpu, 0)))
	startRunner(t, s)
	orchestratortest.WaitFor(t, s, "the task left pending with the reason", pendingWith("no suitable node (insufficient resources on 1 node)", "t1"))

	create(t, s, mkNode("n2"))
	orchestratortest.WaitFor(t, s, "the task assigned to the new node", assignedTo("n2", "t1"))
	if e := getTask(s, "t1").GetStatus().GetErr(); e != "" {
		t.Fatalf("assigned task keeps error %q", e)
	}
}

// TestRunRewritesErrorsOnlyWhenTheyChange checks that a re-evaluation
// giving the same reason writes nothing, and a different reason is
// written.
func TestRunRewritesErrorsOnlyWhenTheyChange(t *testing.T) {
	s := newStore(t)
	create(t, s, mkNode("n1", nodeResources(cpu, gib)), mkTask("big", "s", reserve(2*cpu, 0)))
	startRunner(t, s)
	const one = "no suitable node (insufficient resources on 1 node)"
	orchestratortest.WaitFor(t, s, "the reason written", pendingWith(one, "big"))
	before := version(getTask(s, "big"))

	// A relevant node change that leaves the reason as it is, then a
	// probe: once the probe is assigned the change has been looked at.
	update(t, s, "n1", func(n *api.Node) { n.Spec.Annotations.Labels = map[string]string{"rack": "r1"} })
	create(t, s, mkTask("probe", "other"))
	orchestratortest.WaitFor(t, s, "the probe assigned", assignedTo("n1", "probe"))
	if after := version(getTask(s, "big")); after != before {
		t.Fatalf("unchanged reason rewritten: version %d -> %d", before, after)
	}

	create(t, s, mkNode("n2", nodeResources(cpu, gib)))
	orchestratortest.WaitFor(t, s, "the new reason written", pendingWith("no suitable node (insufficient resources on 2 nodes)", "big"))
}

func TestRunRetriesWhenResourcesAreFreed(t *testing.T) {
	s := newStore(t)
	create(t, s, mkNode("n1", nodeResources(cpu, gib)), mkTask("t1", "s", reserve(cpu, 0)), mkTask("t2", "s", reserve(cpu, 0), slot(2)))
	startRunner(t, s)
	orchestratortest.WaitFor(t, s, "t1 assigned, t2 pending", func(tx store.ReadTx) bool {
		return assignedTo("n1", "t1")(tx) && pendingWith("no suitable node (insufficient resources on 1 node)", "t2")(tx)
	})

	update(t, s, "t1", func(tk *api.Task) { tk.Status.State = api.TaskState_TASK_STATE_COMPLETE })
	orchestratortest.WaitFor(t, s, "t2 assigned", assignedTo("n1", "t2"))
}

func TestRunGlobalTasks(t *testing.T) {
	s := newStore(t)
	create(t, s,
		mkNode("n1"), mkNode("n2", availability(api.NodeAvailability_NODE_AVAILABILITY_DRAIN)),
		mkTask("g1", "g", preset("n1")), mkTask("g2", "g", preset("n2")),
	)
	startRunner(t, s)
	orchestratortest.WaitFor(t, s, "g1 assigned to n1, g2 pending", func(tx store.ReadTx) bool {
		return assignedTo("n1", "g1")(tx) && pendingWith("no suitable node (1 node not available for new tasks)", "g2")(tx)
	})

	update(t, s, "n2", func(n *api.Node) { n.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_ACTIVE })
	orchestratortest.WaitFor(t, s, "g2 assigned to n2", assignedTo("n2", "g2"))
}

func TestRunIgnoresDownAndRemovedNodes(t *testing.T) {
	s := newStore(t)
	create(t, s, mkNode("n1"), mkNode("n2"), mkNode("n3"), mkTask("r1", "s", running("n1")))
	startRunner(t, s)
	update(t, s, "n1", func(n *api.Node) { n.Status.State = api.NodeStatus_DOWN })
	if err := s.Update(context.Background(), func(tx store.Tx) error { return store.DeleteNode(tx, "n3") }); err != nil {
		t.Fatal(err)
	}
	tasks := mkTasks("t", "s", 4, specVersion(2))
	create(t, s, objects(tasks...)...)
	orchestratortest.WaitFor(t, s, "every task on n2", assignedTo("n2", ids(tasks)...))
	if tk := getTask(s, "r1"); tk.GetNodeId() != "n1" || tk.GetStatus().GetState() != api.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("a task of the down node was touched: %v", tk)
	}
}

func TestRunBatchDelay(t *testing.T) {
	s := newStore(t)
	create(t, s, mkNode("n1"))
	r := startRunner(t, s, WithBatchDelay(50*time.Millisecond))
	create(t, s, mkTask("t1", "s"))
	if err := r.clock.BlockUntilContext(r.ctx, 1); err != nil {
		t.Fatalf("no batching timer: %v", err)
	}
	if st := getTask(s, "t1").GetStatus().GetState(); st != api.TaskState_TASK_STATE_PENDING {
		t.Fatalf("scheduled before the batching delay: %v", st)
	}
	r.clock.Advance(50 * time.Millisecond)
	orchestratortest.WaitFor(t, s, "the task assigned", assignedTo("n1", "t1"))
}

func TestRunReloadsAfterRestore(t *testing.T) {
	s := newStore(t)
	create(t, s, mkNode("old"))
	startRunner(t, s)
	snap := &api.StoreSnapshot{Nodes: []*api.Node{mkNode("n1")}, Tasks: mkTasks("t", "s", 3)}
	if err := s.Restore(snap); err != nil {
		t.Fatal(err)
	}
	orchestratortest.WaitFor(t, s, "restored tasks assigned", assignedTo("n1", "t1", "t2", "t3"))
}

// TestRunConcurrentUpdatesLoseNothing has writers update pending tasks
// while the scheduler assigns them: every task ends assigned and every
// writer's change is kept.
func TestRunConcurrentUpdatesLoseNothing(t *testing.T) {
	s := newStore(t)
	tasks := mkTasks("t", "s", 60)
	create(t, s, objects(nodes3()...)...)
	startRunner(t, s)

	const writers, rounds = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("writer%d", w)
			for i := range rounds {
				err := s.Update(context.Background(), func(tx store.Tx) error {
					for j := w; j < len(tasks); j += writers {
						tk := store.GetTask(tx, tasks[j].Id)
						if tk == nil {
							continue
						}
						if tk.Annotations == nil {
							tk.Annotations = &api.Annotations{}
						}
						if tk.Annotations.Labels == nil {
							tk.Annotations.Labels = map[string]string{}
						}
						tk.Annotations.Labels[key] = fmt.Sprint(i)
						if err := tx.Update(tk); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// The tasks appear while the writers run: the first rounds find
	// none, later ones race the scheduler.
	for i := 0; i < len(tasks); i += 10 {
		create(t, s, objects(tasks[i:i+10]...)...)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writer: %v", err)
	}
	orchestratortest.WaitFor(t, s, "every task assigned", assignedTo("", ids(tasks)...))
	perNode := map[string]int{}
	for j, tk := range tasks {
		got := getTask(s, tk.Id)
		perNode[got.GetNodeId()]++
		key := fmt.Sprintf("writer%d", j%writers)
		if v, ok := got.GetAnnotations().GetLabels()[key]; ok && v != fmt.Sprint(rounds-1) {
			t.Errorf("task %s: %s = %s, want the writer's last value %d", tk.Id, key, v, rounds-1)
		}
	}
	if perNode["n1"] != 20 || perNode["n2"] != 20 || perNode["n3"] != 20 {
		t.Errorf("tasks per node %v, want 20 each", perNode)
	}
}

// hookProposer applies proposals to its store at once, after running a
// one-shot hook: a write that lands between a transaction's preparation
// and its application, as another manager's could.
type hookProposer struct {
	s     *store.MemoryStore
	mu    sync.Mutex
	index uint64
	hook  func()
}

func (p *hookProposer) ProposeValue(ctx context.Context, actions []*api.StoreAction) error {
	p.mu.Lock()
	hook := p.hook
	p.hook = nil
	p.mu.Unlock()
	if hook != nil {
		hook()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	owned := make([]*api.StoreAction, len(actions))
	for i, a := range actions {
		owned[i] = proto.CloneOf(a)
	}
	p.index++
	return p.s.Apply(p.index, owned)
}

func (p *hookProposer) setHook(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hook = f
}

// TestRunRetriesAfterAConflictAtApply makes the scheduler's batch fail at
// apply time: the task it carried is re-read and assigned by a later
// pass, keeping the concurrent change.
func TestRunRetriesAfterAConflictAtApply(t *testing.T) {
	p := &hookProposer{}
	s := storetest.New(t, p)
	p.s = s
	create(t, s, mkNode("n1"), mkTask("t1", "s"), mkTask("t2", "s", slot(2)))
	conflicted := make(chan struct{})
	p.setHook(func() {
		update(t, s, "t1", func(tk *api.Task) { tk.Annotations = &api.Annotations{Labels: map[string]string{"by": "other"}} })
		close(conflicted)
	})
	r := startRunner(t, s)
	select {
	case <-conflicted:
	case <-r.ctx.Done():
		t.Fatal("the scheduler never wrote")
	}
	if err := r.clock.BlockUntilContext(r.ctx, 1); err != nil {
		t.Fatalf("no retry timer: %v", err)
	}
	if st := getTask(s, "t2").GetStatus().GetState(); st != api.TaskState_TASK_STATE_PENDING {
		t.Fatalf("t2 written by a failed batch: %v", st)
	}
	r.clock.Advance(maxRetryDelay)
	orchestratortest.WaitFor(t, s, "both tasks assigned", assignedTo("n1", "t1", "t2"))
	if got := getTask(s, "t1").GetAnnotations().GetLabels()["by"]; got != "other" {
		t.Fatalf("the concurrent change was lost: label %q", got)
	}
}

func TestWriteSkipsTasksChangedMeanwhile(t *testing.T) {
	s := newStore(t)
	create(t, s, mkNode("n1"), mkTask("changed", "s"), mkTask("deleted", "s"), mkTask("ok", "s"))
	read := map[string]*api.Task{}
	for _, id := range []string{"changed", "deleted", "ok"} {
		read[id] = getTask(s, id)
	}
	update(t, s, "changed", func(tk *api.Task) { tk.Status.Message = "touched" })
	if err := s.Update(context.Background(), func(tx store.Tx) error { return store.DeleteTask(tx, "deleted") }); err != nil {
		t.Fatal(err)
	}

	sch := New(s, WithLogger(slog.New(slog.DiscardHandler)), WithClock(clockwork.NewFakeClock()))
	var ds []decision
	for _, id := range []string{"changed", "deleted", "ok"} {
		ds = append(ds, decision{ref: &taskRef{t: read[id]}, base: read[id], node: "n1"})
	}
	res, err := sch.write(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.fresh) != 1 || res.fresh[0].GetStatus().GetMessage() != "touched" ||
		len(res.gone) != 1 || res.gone[0] != "deleted" {
		t.Fatalf("result: fresh %v, gone %v", res.fresh, res.gone)
	}
	if tk := getTask(s, "changed"); tk.GetNodeId() != "" || tk.GetStatus().GetState() != api.TaskState_TASK_STATE_PENDING {
		t.Fatalf("a changed task was overwritten: %v", tk)
	}
	if tk := getTask(s, "ok"); tk.GetNodeId() != "n1" || tk.GetStatus().GetState() != api.TaskState_TASK_STATE_ASSIGNED || tk.GetStatus().GetErr() != "" {
		t.Fatalf("task not assigned: %v", tk)
	}
}

func TestRunEnds(t *testing.T) {
	t.Run("context", func(t *testing.T) {
		s := store.NewMemoryStore(nil)
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- New(s, WithLogger(slog.New(slog.DiscardHandler))).Run(ctx) }()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	})
	t.Run("watch closed", func(t *testing.T) {
		s := store.NewMemoryStore(nil)
		done := make(chan error, 1)
		go func() { done <- New(s, WithLogger(slog.New(slog.DiscardHandler))).Run(context.Background()) }()
		// Close may come before Run subscribes; then Run's watch is
		// closed from the start.
		s.Close()
		if err := <-done; !errors.Is(err, errWatchClosed) {
			t.Fatalf("Run = %v, want %v", err, errWatchClosed)
		}
	})
}

func TestRetryDelay(t *testing.T) {
	cases := []struct {
		failures int
		want     time.Duration
	}{
		{1, minRetryDelay}, {2, 2 * minRetryDelay}, {3, 4 * minRetryDelay}, {20, maxRetryDelay}, {1000, maxRetryDelay},
	}
	for _, c := range cases {
		if got := retryDelay(c.failures); got != c.want {
			t.Errorf("retryDelay(%d) = %v, want %v", c.failures, got, c.want)
		}
	}
}
