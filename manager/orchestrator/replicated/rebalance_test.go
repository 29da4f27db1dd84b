package replicated

import (
	"testing"

	"github.com/openswarm/swarmd/api"
)

// spread returns running tasks of s: count[i] of them on node ids[i].
func spread(s *api.Service, ids []string, count []int) []*api.Task {
	var tasks []*api.Task
	slot := uint64(1)
	for i, n := range ids {
		for range count[i] {
			tasks = append(tasks, task(s, slot, n, stRunning))
			slot++
		}
	}
	return tasks
}

func TestPlanMoves(t *testing.T) {
	svc := newService("web", 0)
	tests := []struct {
		name  string
		nodes []string
		count []int
		limit int
		from  []string // nodes the moves leave, in order
	}{
		{"even", []string{"a", "b", "c"}, []int{2, 2, 1}, 0, nil},
		{"new node, no limit", []string{"a", "b", "c"}, []int{3, 3, 0}, 0, []string{"a", "b"}},
		{"new node, one at a time", []string{"a", "b", "c"}, []int{3, 3, 0}, 1, []string{"a"}},
		{"two new nodes", []string{"a", "b", "c"}, []int{6, 0, 0}, 0, []string{"a", "a", "a", "a"}},
		{"only empty nodes", []string{"a", "b"}, []int{0, 0}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tasks := spread(svc, tt.nodes, tt.count)
			moves := planMoves(tasks, loadOf(tasks, tt.nodes), tt.limit)
			var from []string
			for _, m := range moves {
				from = append(from, m.GetNodeId())
			}
			if len(from) != len(tt.from) {
				t.Fatalf("moves from %v, want %v", from, tt.from)
			}
			for i := range from {
				if from[i] != tt.from[i] {
					t.Fatalf("moves from %v, want %v", from, tt.from)
				}
			}
			// The highest slot of a node moves first.
			for _, m := range moves {
				for _, other := range tasks {
					if other.GetNodeId() == m.GetNodeId() && other.GetSlot() > m.GetSlot() && !contains(moves, other) {
						t.Errorf("moved slot %d before slot %d", m.GetSlot(), other.GetSlot())
					}
				}
			}
		})
	}
}

func contains(tasks []*api.Task, t *api.Task) bool {
	for _, o := range tasks {
		if o == t {
			return true
		}
	}
	return false
}

func TestNextWave(t *testing.T) {
	svc := newService("web", 6)
	nodes := []string{"a", "b", "c"}
	uneven := spread(svc, nodes, []int{3, 3, 0})
	notSettled := spread(svc, nodes, []int{3, 2, 0})
	notSettled = append(notSettled, task(svc, 9, "c", stAssigned))
	unconstrained := newService("web", 6)
	unconstrained.Spec.Update = nil // parallelism 0: all at once

	tests := []struct {
		name  string
		svc   *api.Service
		tasks []*api.Task
		last  int
		moves int
		done  bool
	}{
		{"first wave", svc, uneven, 0, 1, false},
		{"all at once", unconstrained, uneven, 0, 2, false},
		{"progress made", svc, uneven, 4, 1, false},
		{"no progress", svc, uneven, 3, 0, true},
		{"even", svc, spread(svc, nodes, []int{2, 2, 1}), 0, 0, true},
		{"waits for the last wave", svc, notSettled, 3, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := nextWave(tt.svc, tt.tasks, nodes, tt.last)
			if len(w.moves) != tt.moves || w.done != tt.done {
				t.Errorf("wave: %d moves, done %v (%s); want %d, %v", len(w.moves), w.done, w.why, tt.moves, tt.done)
			}
		})
	}
}

func TestEligibleNodes(t *testing.T) {
	svc := newService("web", 1)
	svc.Spec.Task.Placement = &api.Placement{Constraints: []string{"node.labels.zone==east"}}
	east := readyNode("east")
	east.Spec.Annotations.Labels = map[string]string{"zone": "east"}
	drained := readyNode("drained")
	drained.Spec.Annotations.Labels = map[string]string{"zone": "east"}
	drained.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN
	got := eligibleNodes(svc, []*api.Node{east, drained, readyNode("west")})
	if len(got) != 1 || got[0] != "east" {
		t.Errorf("eligible %v, want [east]", got)
	}
}
