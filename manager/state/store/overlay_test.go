package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestScansSeeTheOverlay checks that an index scan within a transaction
// sees the transaction's own writes exactly as if they had all been
// copied into its indexes first (which scans now skip when no pending
// write has or had the value scanned): random creates, updates moving
// tasks between services and nodes, and deletes, each followed by scans.
func TestScansSeeTheOverlay(t *testing.T) {
	services := []string{"svcA", "svcB", "svcC"}
	nodes := []string{"", "n1", "n2"}
	task := func(id, svc, node string, slot uint64) *api.Task {
		return &api.Task{Id: id, ServiceId: svc, NodeId: node, Slot: slot, DesiredState: api.TaskState_TASK_STATE_RUNNING,
			Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_PENDING}}
	}
	scans := func() []By {
		bys := []By{All, ByTaskState(api.TaskState_TASK_STATE_PENDING), ByDesiredState(api.TaskState_TASK_STATE_RUNNING),
			ByIDPrefix("t1"), Or(ByServiceID("svcA"), ByNodeID("n2"))}
		for _, s := range services {
			bys = append(bys, ByServiceID(s), BySlot(s, 1), BySlot(s, 2))
		}
		for _, n := range nodes[1:] {
			bys = append(bys, ByNodeID(n))
		}
		return bys
	}()
	for seed := uint64(1); seed <= 30; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 7))
			s := NewMemoryStore(nil)
			defer s.Close()
			var base []api.StoreObject
			for i := range 12 {
				base = append(base, task(fmt.Sprintf("t%02d", i), services[i%3], nodes[i%3], uint64(i%4)))
			}
			create(t, s, base...)
			snap := s.state.Load()
			now := timestamppb.Now()
			// got skips materializing when it can; want always does.
			got, want := newTx(snap, now), newTx(snap, now)
			write := func(tx *tx, op, id, svc, node string, slot uint64) error {
				switch op {
				case "create":
					return tx.Create(task(id, svc, node, slot))
				case "update":
					cur := Get[*api.Task](tx, id)
					if cur == nil {
						return nil
					}
					cur.ServiceId, cur.NodeId, cur.Slot = svc, node, slot
					return tx.Update(cur)
				default:
					if Get[*api.Task](tx, id) == nil {
						return nil
					}
					return tx.Delete(KindTask, id)
				}
			}
			for step := range 60 {
				op := []string{"create", "update", "update", "delete"}[rnd.IntN(4)]
				id := fmt.Sprintf("t%02d", rnd.IntN(20))
				svc, node, slot := services[rnd.IntN(3)], nodes[rnd.IntN(3)], uint64(rnd.IntN(3))
				if op == "create" {
					id = fmt.Sprintf("t%02d", 20+step)
				}
				if err := write(got, op, id, svc, node, slot); err != nil {
					t.Fatalf("step %d: %s %s: %v", step, op, id, err)
				}
				if err := write(want, op, id, svc, node, slot); err != nil {
					t.Fatalf("step %d (reference): %v", step, err)
				}
				by := scans[rnd.IntN(len(scans))]
				want.materialize(KindTask)
				if g, w := scanIDs(t, got, by), scanIDs(t, want, by); !slices.Equal(g, w) {
					t.Fatalf("step %d: %s %s then scan %v: %v, want %v", step, op, id, by, g, w)
				}
				if n, err := got.count(KindTask, by); err != nil || n != len(scanIDs(t, want, by)) {
					t.Fatalf("step %d: count %v = %d, %v", step, by, n, err)
				}
			}
		})
	}
}

func scanIDs(t *testing.T, tx *tx, by By) []string {
	t.Helper()
	var ids []string
	err := tx.each(KindTask, by, func(o api.StoreObject) bool {
		ids = append(ids, o.GetId())
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
