package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// twinProposer stands in for raft with two members: each proposal is
// encoded, then applied to the proposing store (the leader) from memory
// with ApplyBatchProposed, and to the follower as a decoded copy of the
// encoding, as raft does. Every request gets its own index.
type twinProposer struct {
	mu               sync.Mutex
	leader, follower *MemoryStore
	index            uint64
}

func (p *twinProposer) ProposeValue(ctx context.Context, actions []*api.StoreAction) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	data, err := proto.Marshal(&api.InternalRaftRequest{Proposer: 1, Seq: p.index + 1, Actions: actions})
	if err != nil {
		return err
	}
	p.index++
	ferrs := p.follower.ApplyBatch([]uint64{p.index}, [][]*api.StoreAction{decodeActions(data)})
	lerrs := p.leader.ApplyBatchProposed([]uint64{p.index}, [][]*api.StoreAction{actions}, []bool{true})
	if (lerrs[0] == nil) != (ferrs[0] == nil) {
		return fmt.Errorf("leader applied with %v, follower with %v", lerrs[0], ferrs[0])
	}
	return lerrs[0]
}

// TestApplyProposedEqualsDecoded checks that a store applying its own
// proposals from memory (the objects given to CreateOwned and UpdateOwned,
// sharing messages with stored objects, and the copies Create and Update
// make) ends with the same content and publishes the same events as a
// store applying what was decoded from the log, and that neither modified
// an object it had stored.
func TestApplyProposedEqualsDecoded(t *testing.T) {
	svcSpec := func(image string) *api.ServiceSpec {
		return &api.ServiceSpec{Annotations: &api.Annotations{Name: image},
			Task: &api.TaskSpec{Container: &api.ContainerSpec{Image: image}}}
	}
	// Each workload writes through s (the leader) only.
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s *MemoryStore)
	}{
		{"create and update copies", func(t *testing.T, s *MemoryStore) {
			svc := &api.Service{Id: "svc", Spec: svcSpec("nginx:1")}
			create(t, s, svc)
			s.View(func(tx ReadTx) { svc = Get[*api.Service](tx, "svc") })
			svc.Spec.Task.Container.Image = "nginx:2" // the caller's copy, not the stored one
			if err := s.Update(ctx, func(tx Tx) error { return tx.Update(svc) }); err != nil {
				t.Fatal(err)
			}
			if err := s.Update(ctx, func(tx Tx) error { return tx.Delete(KindService, "svc") }); err != nil {
				t.Fatal(err)
			}
		}},
		{"owned tasks sharing the service's messages", func(t *testing.T, s *MemoryStore) {
			create(t, s, &api.Service{Id: "svc", Spec: svcSpec("nginx:1"), SpecVersion: &api.Version{Index: 3}})
			var svc *api.Service
			s.View(func(tx ReadTx) { svc = Lookup[*api.Service](tx, "svc") })
			err := s.Update(ctx, func(tx Tx) error {
				for i := range 20 {
					task := &api.Task{Id: fmt.Sprintf("t%02d", i), ServiceId: "svc", Slot: uint64(i + 1),
						Spec: svc.GetSpec().GetTask(), SpecVersion: svc.GetSpecVersion(),
						ServiceAnnotations: svc.GetSpec().GetAnnotations(),
						DesiredState:       api.TaskState_TASK_STATE_RUNNING,
						Status:             &api.TaskStatus{State: api.TaskState_TASK_STATE_PENDING, Message: "pending"}}
					if err := tx.CreateOwned(task); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// Assign them as the scheduler does: shallow copies with a
			// status shared by the pass, a few per transaction.
			status := &api.TaskStatus{State: api.TaskState_TASK_STATE_ASSIGNED, Message: "scheduler assigned task to node"}
			for i := 0; i < 20; i += 5 {
				err := s.Update(ctx, func(tx Tx) error {
					for j := i; j < i+5; j++ {
						cur := Lookup[*api.Task](tx, fmt.Sprintf("t%02d", j))
						upd := Shallow(cur)
						upd.NodeId = fmt.Sprintf("node-%d", j%3)
						upd.Status = status
						if err := tx.UpdateOwned(upd); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"a failing request changes neither", func(t *testing.T, s *MemoryStore) {
			create(t, s, &api.Service{Id: "svc", Spec: svcSpec("nginx:1")})
			var stale *api.Service
			s.View(func(tx ReadTx) { stale = Get[*api.Service](tx, "svc") })
			before := s.state.Load()
			fresh := proto.Clone(stale).(*api.Service)
			fresh.Spec.Task.Container.Image = "nginx:2"
			if err := s.Update(ctx, func(tx Tx) error { return tx.Update(fresh) }); err != nil {
				t.Fatal(err)
			}
			// Prepared on the state from before fresh was applied, so
			// it passes the transaction's check and fails at apply,
			// after its first action was performed (and undone).
			tx := newTx(before, timestamppb.Now())
			if err := tx.Create(&api.Service{Id: "other", Spec: svcSpec("redis")}); err != nil {
				t.Fatal(err)
			}
			stale.Spec.Task.Container.Image = "nginx:3"
			if err := tx.Update(stale); err != nil {
				t.Fatal(err)
			}
			tx.abort()
			if err := s.propose(ctx, tx.actions); !errors.Is(err, ErrSequenceConflict) {
				t.Fatalf("stale update: %v, want ErrSequenceConflict", err)
			}
		}},
		{"batch split across proposals", func(t *testing.T, s *MemoryStore) {
			create(t, s, &api.Service{Id: "svc", Spec: svcSpec("nginx:1")})
			err := s.Batch(ctx, func(b *Batch) error {
				for i := range 60 {
					err := b.Update(func(tx Tx) error {
						id := fmt.Sprintf("t%02d", i%20)
						if cur := Lookup[*api.Task](tx, id); cur != nil {
							upd := Shallow(cur)
							upd.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN + api.TaskState(i)
							return tx.UpdateOwned(upd)
						}
						return tx.CreateOwned(bigTask(id, "svc", uint64(i), 200))
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
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &twinProposer{}
			p.leader = NewMemoryStore(p, WithMutationCheck(), WithClock(fixedClock()), WithMaxProposalBytes(4096))
			p.follower = NewMemoryStore(nil, WithMutationCheck())
			defer p.leader.Close()
			defer p.follower.Close()
			lch, lcancel := p.leader.Watch()
			defer lcancel()
			fch, fcancel := p.follower.Watch()
			defer fcancel()

			// A reader of everything stored, as watchers and the
			// control API are, concurrently with the writes: the race
			// detector sees any stored message modified in place.
			done := make(chan struct{})
			var readers sync.WaitGroup
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					p.leader.View(func(tx ReadTx) {
						_ = Each(tx, All, func(task *api.Task) bool {
							_ = proto.Size(task)
							return true
						})
					})
				}
			}()
			tc.run(t, p.leader)
			close(done)
			readers.Wait()

			// A last write whose commit ends both event streams.
			create(t, p.leader, &api.Cluster{Id: "end", Spec: &api.ClusterSpec{Annotations: &api.Annotations{Name: "end"}}})
			end := p.index

			if l, f := mustSave(t, p.leader), mustSave(t, p.follower); !proto.Equal(l, f) {
				t.Fatalf("leader and follower differ:\nleader   %v\nfollower %v", l, f)
			}
			for i := 0; ; i++ {
				le, fe := nextEvent(t, lch), nextEvent(t, fch)
				if le.Action != fe.Action || le.Index != fe.Index || !sameObject(le.Object, fe.Object) || !sameObject(le.Old, fe.Old) {
					t.Fatalf("event %d differs: leader %v %d %v, follower %v %d %v", i, le.Action, le.Index, le.Object, fe.Action, fe.Index, fe.Object)
				}
				if le.Action == EventCommit && le.Index == end {
					break
				}
			}
			for name, s := range map[string]*MemoryStore{"leader": p.leader, "follower": p.follower} {
				if err := s.CheckUnmodified(); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}

func sameObject(a, b api.StoreObject) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return proto.Equal(a, b)
}
