// Package scheduler places tasks on nodes: it takes the PENDING tasks
// whose desired state is at most COMPLETE, picks a node for each (or
// checks the node a global task names) and writes the task back ASSIGNED
// to that node. A task no node fits stays PENDING with Status.Err saying
// why, in docker's words: "no suitable node (insufficient resources on 2
// nodes)".
//
// # Pure core
//
// The decisions are made by a pure core, without the store and without
// goroutines, tested through a table-driven harness:
//
//   - nodeInfo is a node plus what occupies it: the tasks meant to run
//     there that have not stopped (desired state at most COMPLETE,
//     observed state ASSIGNED to RUNNING), their count per service, the
//     sum of their resource reservations, and the host-mode published
//     ports they hold.
//   - A pipeline checks a node against the filters one task spec enables,
//     in order: ready and active, resources, constraints, platform,
//     host-mode ports, max replicas per node. It counts, for each filter,
//     the nodes it was the first to reject; those counts make the
//     explanation ("insufficient resources on 3 nodes; scheduling
//     constraints not satisfied on 1 node").
//   - A spread tree orders the nodes that passed: one level per placement
//     preference (nodes grouped by the value of a label, nodes without it
//     in a group of their own), then the nodes of a leaf. Each level is a
//     heap: a branch with fewer tasks of the service first, then a node
//     with fewer tasks of the service, fewer tasks in all, lower ID.
//   - view holds the nodeInfos, every task that matters (pending or
//     occupying a node) and the pending tasks grouped by service and spec
//     version. view.schedule places every group that needs it.
//
// # Batches
//
// The pending tasks of one group share their spec, so the filters run
// once per group over all nodes, and the tree is built once. Each task
// then takes the first node of the tree; the node's counts and those of
// its branches grow, and the heaps are fixed in O(log n). After each
// placement only the filters a placement can change (resources, host
// ports, max replicas) are checked again on that node, which leaves the
// tree when it no longer fits. Placing 5 tasks on 3 empty nodes therefore
// gives 2/2/1, and 100,000 tasks of 100 services on 1,000 nodes take
// O(groups × nodes + tasks × log nodes).
//
// Spread counts the tasks of the service on every node of a branch,
// including nodes that cannot take more, so that a label value whose
// nodes are full is not picked again as if it were empty.
//
// # Runner
//
// Scheduler.Run (on the leader) loads nodes and tasks with
// store.ViewAndWatch and keeps its view up to date from the events. After
// a commit that left something to do (a new pending task, a node change, a
// task leaving a node) it waits the batching delay, then schedules at the
// next commit boundary and writes every decision in one store.Batch. The
// view takes its own decisions at once (optimistically), so the next pass
// does not place the same task twice or count a node's resources as free
// before the events of the write arrive. Every write re-reads the task and
// writes only if its version is still the one decided on; a task changed
// meanwhile is taken back into the view as the store has it and scheduled
// again in the next pass. If a batch fails (a concurrent write at apply
// time fails a whole proposal), every task it carried is re-read, and the
// pass is retried after a delay that grows with consecutive failures.
//
// # Placement at creation
//
// Scheduler.Place is the orchestrators' Placer: the tasks an orchestrator
// is about to create are placed at once, as a pass would place them, and
// the orchestrator writes them ASSIGNED, so that a new task costs one raft
// write instead of two (PENDING, then ASSIGNED). The view counts them on
// their nodes at once, as copies at version 0 that their stored versions
// replace when the creation events come. If the write fails, the
// placements of the tasks the store does not hold are taken back. A task
// that fits no node is created PENDING and scheduled like any other.
//
// Status.Err is rewritten only when its text changes. Unschedulable groups
// are not looked at again until a node changes (created, removed, or its
// status, role, spec or description changed) or a task leaves a node.
// An EventRestore restarts the watch from a fresh snapshot.
package scheduler
