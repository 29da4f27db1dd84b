package replicated

import (
	"cmp"
	"maps"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/constraint"
	"github.com/openswarm/swarmd/manager/orchestrator"
)

// Rebalancing (cluster Spec.Orchestration.Rebalance) moves the tasks of
// a service onto nodes that joined or became available, in waves: a
// wave moves at most the service's update parallelism (0: all that
// need to), and the next wave starts once every task of the service
// runs again. Rebalancing a service stops when its tasks are evenly
// spread (the most and least loaded eligible nodes differ by at most one
// task) or when a wave did not make the spread better (the tasks went
// back where they were: constraints or resources keep them there).

// wave is the next step of a service's rebalancing.
type wave struct {
	moves     []*api.Task // tasks to move now
	imbalance int         // the spread before the moves
	done      bool        // rebalancing this service is over
	why       string      // why it is over
}

// nextWave decides the next wave of moves for s, whose tasks are given,
// over the eligible nodes; last is the imbalance when the previous wave
// started (0: none did).
func nextWave(s *api.Service, tasks []*api.Task, eligible []string, last int) wave {
	running := runnable(tasks)
	for _, t := range running {
		if t.GetStatus().GetState() != api.TaskState_TASK_STATE_RUNNING {
			return wave{} // the previous wave has not settled
		}
	}
	load := loadOf(running, eligible)
	imb := imbalance(load)
	switch {
	case imb <= 1:
		return wave{done: true, why: "tasks evenly spread", imbalance: imb}
	case last > 0 && imb >= last:
		return wave{done: true, why: "moves did not even the spread", imbalance: imb}
	}
	moves := planMoves(running, load, int(s.GetSpec().GetUpdate().GetParallelism()))
	return wave{moves: moves, imbalance: imb, done: len(moves) == 0, why: "nothing to move"}
}

// loadOf counts the tasks on each eligible node.
func loadOf(tasks []*api.Task, eligible []string) map[string]int {
	load := make(map[string]int, len(eligible))
	for _, n := range eligible {
		load[n] = 0
	}
	for _, t := range tasks {
		if _, ok := load[t.GetNodeId()]; ok {
			load[t.GetNodeId()]++
		}
	}
	return load
}

// imbalance is the difference between the most and least loaded nodes.
func imbalance(load map[string]int) int {
	if len(load) == 0 {
		return 0
	}
	lo, hi := -1, 0
	for _, n := range load {
		hi = max(hi, n)
		if lo < 0 || n < lo {
			lo = n
		}
	}
	return hi - lo
}

// planMoves picks up to limit (0: no limit) tasks to move from the most
// loaded eligible nodes so that the spread evens out, assuming each goes
// to the least loaded node; highest slot numbers move first.
func planMoves(tasks []*api.Task, load map[string]int, limit int) []*api.Task {
	onNode := make(map[string][]*api.Task)
	for _, t := range tasks {
		if _, ok := load[t.GetNodeId()]; ok {
			onNode[t.GetNodeId()] = append(onNode[t.GetNodeId()], t)
		}
	}
	for _, ts := range onNode {
		slices.SortFunc(ts, func(a, b *api.Task) int { return cmp.Compare(b.GetSlot(), a.GetSlot()) })
	}
	load = maps.Clone(load)
	nodes := slices.Sorted(maps.Keys(load))
	var moves []*api.Task
	for limit == 0 || len(moves) < limit {
		hi, lo := "", ""
		for _, n := range nodes {
			if len(onNode[n]) > 0 && (hi == "" || load[n] > load[hi]) {
				hi = n
			}
			if lo == "" || load[n] < load[lo] {
				lo = n
			}
		}
		if hi == "" || load[hi]-load[lo] <= 1 {
			break
		}
		moves = append(moves, onNode[hi][0])
		onNode[hi] = onNode[hi][1:]
		load[hi]--
		load[lo]++
	}
	return moves
}

// eligibleNodes returns the IDs of the nodes that may take new tasks of
// s: they accept tasks and meet its constraints.
func eligibleNodes(s *api.Service, nodes []*api.Node) []string {
	cs, err := constraint.Parse(s.GetSpec().GetTask().GetPlacement().GetConstraints())
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range nodes {
		if orchestrator.NodeAcceptsTasks(n) && constraint.Match(cs, n) {
			out = append(out, n.GetId())
		}
	}
	return out
}
