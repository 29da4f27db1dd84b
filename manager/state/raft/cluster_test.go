package raft_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/raft"
	"github.com/openswarm/swarmd/manager/state/raft/raftest"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// createServices writes n services named prefix-i through the given member.
func createServices(t testing.TB, m *raftest.Member, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		err := m.Store.Update(ctxT(t, 10*time.Second), func(tx store.Tx) error {
			return tx.Create(&api.Service{Id: name, Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: name}}})
		})
		if err != nil {
			t.Fatalf("create %s through %s: %v", name, m.Name, err)
		}
	}
}

func countServices(m *raftest.Member) int {
	var n int
	m.Store.View(func(tx store.ReadTx) {
		s, _ := store.FindServices(tx, store.All)
		n = len(s)
	})
	return n
}

func TestReplication(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-members", size), func(t *testing.T) {
			c := raftest.New(t, size, raftest.Options{})
			for i, m := range c.Running() {
				createServices(t, m, fmt.Sprintf("via-%d", i), 5)
			}
			c.WaitConverged()
			for _, m := range c.Running() {
				if got := countServices(m); got != 5*size {
					t.Fatalf("%s holds %d services, want %d", m.Name, got, 5*size)
				}
			}
		})
	}
}

func TestLeaderFailover(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{})
	old := c.WaitLeader()
	createServices(t, old, "before", 3)
	c.Stop(old)
	start := time.Now()
	l := c.WaitLeader()
	createServices(t, l, "after", 3)
	t.Logf("new leader %s writable %s after the old one stopped (tick 10ms, election 10 ticks)", l.Name, time.Since(start))
	if l == old {
		t.Fatal("stopped member still leads")
	}
	if err := c.Restart(old); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged()
	if got := countServices(old); got != 6 {
		t.Fatalf("restarted member holds %d services, want 6", got)
	}
}

func TestRestartKeepsCommittedData(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{})
	createServices(t, c.WaitLeader(), "a", 10)
	f := c.Followers()[0]
	c.Stop(f)
	createServices(t, c.WaitLeader(), "b", 10)
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged()
	// The whole cluster down and up again: everything committed is back.
	for _, m := range c.Members() {
		c.Stop(m)
	}
	for _, m := range c.Members() {
		if err := c.Restart(m); err != nil {
			t.Fatal(err)
		}
	}
	c.WaitLeader()
	c.WaitConverged()
	for _, m := range c.Running() {
		if got := countServices(m); got != 20 {
			t.Fatalf("%s holds %d services after full restart, want 20", m.Name, got)
		}
	}
}

func TestSnapshotCatchUpLargerThanGRPCLimit(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{SnapshotInterval: 20, LogEntriesForSlowFollowers: 5})
	f := c.Followers()[0]
	c.Stop(f)
	l := c.WaitLeader()
	payload := make([]byte, 200<<10)
	for i := 0; i < 30; i++ { // 30 × 200 KiB: a 6 MiB snapshot
		payload[0] = byte(i)
		name := fmt.Sprintf("blob-%d", i)
		err := l.Store.Update(ctxT(t, 10*time.Second), func(tx store.Tx) error {
			return tx.Create(&api.Config{Id: name, Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: name}, Data: payload}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	createServices(t, l, "more", 30) // push past the next snapshot and compaction
	if err := c.Restart(f); err != nil {
		t.Fatal(err)
	}
	c.WaitConverged()
	if f.Node.SnapshotsReceived() == 0 {
		t.Fatal("lagging member caught up without a snapshot; the test did not exercise snapshot transfer")
	}
	snap, err := f.Store.Save()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.GetConfigs()) != 30 {
		t.Fatalf("lagging member holds %d configs, want 30", len(snap.GetConfigs()))
	}
}

func TestMembershipChanges(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{})
	l := c.WaitLeader()
	victim := c.Followers()[0]
	if err := l.Node.RemoveMember(ctxT(t, 10*time.Second), victim.Node.ID()); err != nil {
		t.Fatal(err)
	}
	raftest.Eventually(t, 10*time.Second, "removed member stops", func() bool {
		select {
		case <-victim.Node.Done():
			return true
		default:
			return false
		}
	})
	if !errors.Is(victim.Node.Err(), raft.ErrMemberRemoved) {
		t.Fatalf("removed member stopped with %v, want ErrMemberRemoved", victim.Node.Err())
	}
	createServices(t, c.WaitLeader(), "two", 3)

	// A removed member cannot come back with its old identity.
	c.Stop(victim)
	if err := c.Restart(victim); !errors.Is(err, raft.ErrMemberRemoved) {
		t.Fatalf("restart of removed member: %v, want ErrMemberRemoved", err)
	}
	c.Forget(victim)

	n := c.Add("")
	createServices(t, n, "new", 3)
	c.WaitConverged()
	raftest.Eventually(t, 10*time.Second, "new member promoted to voter", func() bool {
		return len(c.WaitLeader().Node.Members()) == 3 && countServices(n) == 6
	})
	if got := len(l.Node.Members()); got != 3 {
		t.Fatalf("%d members, want 3", got)
	}
}

func TestRemovedWhileDownIsRefusedByPeers(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{})
	victim := c.Followers()[0]
	id := victim.Node.ID()
	c.Stop(victim)
	l := c.WaitLeader()
	if err := l.Node.RemoveMember(ctxT(t, 10*time.Second), id); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(victim); err != nil {
		t.Fatal(err)
	}
	raftest.Eventually(t, 10*time.Second, "peers turn the removed member away", func() bool {
		select {
		case <-victim.Node.Done():
			return errors.Is(victim.Node.Err(), raft.ErrMemberRemoved)
		default:
			return false
		}
	})
}

func TestRemoveRefusedWithoutQuorum(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{})
	fs := c.Followers()
	c.Stop(fs[0])
	l := c.WaitLeader()
	raftest.Eventually(t, 10*time.Second, "leader notices the stopped member", func() bool { return !l.Node.Reachable(fs[0].ID) })
	err := l.Node.RemoveMember(ctxT(t, 5*time.Second), fs[1].Node.ID())
	if !errors.Is(err, raft.ErrLostQuorum) {
		t.Fatalf("removing a healthy member with another down: %v, want ErrLostQuorum", err)
	}
}

func TestForceNewCluster(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{})
	createServices(t, c.WaitLeader(), "kept", 10)
	c.WaitConverged()
	survivor := c.Followers()[0]
	for _, m := range c.Members() {
		c.Stop(m)
	}
	// Quorum is lost for good; one survivor restarts alone.
	if err := c.ForceNewCluster(survivor); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members() {
		if m != survivor {
			c.Forget(m)
		}
	}
	l := c.WaitLeader()
	if l != survivor {
		t.Fatalf("leader %s, want the survivor %s", l.Name, survivor.Name)
	}
	if got := countServices(survivor); got != 10 {
		t.Fatalf("survivor holds %d services, want 10", got)
	}
	createServices(t, survivor, "after", 2)
	c.Add("")
	c.WaitConverged()
	if got := len(survivor.Node.Members()); got != 2 {
		t.Fatalf("%d members after a join, want 2", got)
	}
}

func TestVersionConflictAcrossMembers(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{})
	l := c.WaitLeader()
	createServices(t, l, "svc", 1)
	c.WaitConverged()
	var base *api.Service
	l.Store.View(func(tx store.ReadTx) { base = store.GetService(tx, "svc-0") })

	// Two members update the same version at once: one wins, one is told
	// "update out of sequence", and nothing else changes.
	errs := make(chan error, 2)
	for i, m := range c.Running()[:2] {
		go func() {
			errs <- m.Store.Update(ctxT(t, 10*time.Second), func(tx store.Tx) error {
				s := store.GetService(tx, "svc-0")
				s.Meta = proto.Clone(base.GetMeta()).(*api.Meta)
				s.Spec.Annotations.Labels = map[string]string{"writer": fmt.Sprint(i)}
				return tx.Update(s)
			})
		}()
	}
	var ok, conflict int
	for range 2 {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrSequenceConflict):
			conflict++
		default:
			t.Fatalf("unexpected error %v", err)
		}
	}
	if ok != 1 || conflict != 1 {
		t.Fatalf("%d succeeded and %d conflicted, want 1 and 1", ok, conflict)
	}
	c.WaitConverged()
	// A stale write now is refused too.
	err := l.Store.Update(ctxT(t, 10*time.Second), func(tx store.Tx) error {
		s := store.GetService(tx, "svc-0")
		s.Meta = proto.Clone(base.GetMeta()).(*api.Meta)
		return tx.Update(s)
	})
	if !errors.Is(err, store.ErrSequenceConflict) || err.Error() == "" {
		t.Fatalf("stale update: %v", err)
	}
}

// A new leader is ready for reads only once it has applied an entry of its
// own term: then its store holds every write the old leader acknowledged.
// Followers are never ready.
func TestWaitLeaderReady(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for round := range 3 {
		old := c.WaitLeader()
		createServices(t, old, fmt.Sprintf("r%d-", round), 5)
		c.Stop(old)
		l := c.WaitLeader()
		if err := l.Node.WaitLeaderReady(ctx); err != nil {
			t.Fatalf("round %d: WaitLeaderReady on the new leader: %v", round, err)
		}
		if got, want := countServices(l), 5*(round+1); got != want {
			t.Fatalf("round %d: a ready leader holds %d services, want %d", round, got, want)
		}
		for _, f := range c.Followers() {
			if err := f.Node.WaitLeaderReady(ctx); !errors.Is(err, raft.ErrNotLeader) {
				t.Fatalf("round %d: WaitLeaderReady on follower %s = %v, want ErrNotLeader", round, f.Name, err)
			}
		}
		if err := c.Restart(old); err != nil {
			t.Fatal(err)
		}
		c.WaitConverged()
	}
}

// TestOwnProposalsAppliedFromMemory: a member applies the transactions it
// proposed from memory (its stored tasks keep sharing the service's task
// spec, as the transaction built them) and the others decode them, with
// the same result; after the leadership moves, each member still applies
// only its own proposals from memory, and no member modified an object it
// had stored.
func TestOwnProposalsAppliedFromMemory(t *testing.T) {
	c := raftest.New(t, 3, raftest.Options{StoreOptions: []store.Option{store.WithMutationCheck()}})
	write := func(m *raftest.Member, svcID string) {
		t.Helper()
		ctx := ctxT(t, 10*time.Second)
		err := m.Store.Update(ctx, func(tx store.Tx) error {
			return tx.Create(&api.Service{Id: svcID, Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: svcID},
				Task: &api.TaskSpec{Container: &api.ContainerSpec{Image: "nginx"}}}})
		})
		if err != nil {
			t.Fatal(err)
		}
		err = m.Store.Batch(ctx, func(b *store.Batch) error {
			for i := range 10 {
				err := b.Update(func(tx store.Tx) error {
					svc := store.Lookup[*api.Service](tx, svcID)
					return tx.CreateOwned(&api.Task{Id: fmt.Sprintf("%s-%d", svcID, i), ServiceId: svcID, Slot: uint64(i + 1),
						Spec: svc.GetSpec().GetTask(), ServiceAnnotations: svc.GetSpec().GetAnnotations(),
						Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_PENDING}})
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		status := &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED, Message: "assigned"}
		err = m.Store.Update(ctx, func(tx store.Tx) error {
			return store.Each(tx, store.ByServiceID(svcID), func(task *api.Task) bool {
				upd := store.Shallow(task)
				upd.NodeId, upd.Status = "node-1", status
				return tx.UpdateOwned(upd) == nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// sharesSpec reports whether m's stored tasks of svcID point at the
	// stored service's task spec, as only the proposer's do.
	sharesSpec := func(m *raftest.Member, svcID string) bool {
		shared := false
		m.Store.View(func(tx store.ReadTx) {
			svc := store.Lookup[*api.Service](tx, svcID)
			task := store.Lookup[*api.Task](tx, svcID+"-0")
			shared = task.GetNodeId() == "node-1" && task.GetSpec() == svc.GetSpec().GetTask()
		})
		return shared
	}
	check := func(proposer *raftest.Member, svcID string) {
		t.Helper()
		for _, m := range c.Running() {
			if got := sharesSpec(m, svcID); got != (m == proposer) {
				t.Errorf("%s's tasks of %s share the service's spec: %v, want %v (proposed by %s)", m.Name, svcID, got, m == proposer, proposer.Name)
			}
		}
	}

	l := c.WaitLeader()
	f := c.Followers()[0]
	write(l, "via-leader")
	write(f, "via-follower")
	c.WaitConverged()
	check(l, "via-leader")
	check(f, "via-follower")

	if err := l.Node.TransferLeadership(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	nl := c.WaitLeader()
	write(nl, "via-new-leader")
	write(l, "via-old-leader")
	c.WaitConverged()
	check(nl, "via-new-leader")
	check(l, "via-old-leader")
	for _, m := range c.Running() {
		if err := m.Store.CheckUnmodified(); err != nil {
			t.Errorf("%s: %v", m.Name, err)
		}
	}
}
