// Package dispatcher is the leader's side of agent sessions: it registers
// nodes, watches their heartbeats (a node silent for its grace period goes
// DOWN), streams each node its assignments, and records the task states
// agents report, batched into few raft proposals.
//
// # Lifecycle
//
// A Dispatcher is created once per manager and registered on its gRPC
// server; it answers only while Run runs, which the manager does while it
// leads. Each Run starts from fresh state. Outside Run every call fails
// with Unavailable and, when LeaderAddr knows one, names the leader in the
// LeaderTrailer trailer. Stopping writes nothing about nodes.
//
// Callers are identified only by Config.NodeIdentity (the manager reads the
// verified TLS certificate); session IDs are checked against that identity,
// so a node cannot use another's session.
//
// # Liveness (swarmkit#2293)
//
// Each watched node has a deadline, pushed back by the grace period
// (HeartbeatPeriod × GracePeriodMultiplier) on every heartbeat; a sweeper
// marks the nodes past their deadline DOWN ("heartbeat failure") and ends
// their sessions. When Run starts (a new leader), every node the store
// does not call DOWN gets a full grace period from then: statuses are not
// touched at start, so nodes that reconnect in time never leave READY, and
// only those that stay silent go DOWN. A node whose session stream breaks
// keeps its deadline: it goes DOWN only if it does not come back in time.
// Registering a node that is already READY at the same address with the
// same description writes nothing, so a failover with thousands of nodes
// costs no writes beyond the nodes that changed.
//
// # Writes
//
// Node registrations, DOWN marks and task states go through one writer
// (group commit): everything queued while a flush runs (or during
// StatusBatchDelay) is written by the next flush in one store.Batch, and
// writes to one object coalesce. UpdateTaskStatus and Session return only
// once the flush holding their writes has been applied, so an agent that
// got no answer must retry. A task's observed state never moves backwards;
// reports for tasks no longer on the reporting node are dropped.
//
// # Assignments
//
// One store watch feeds a hub that marks, in the mailbox of each
// Assignments stream of the node concerned, the IDs of the tasks (and
// secrets and configs) that changed. The stream waits AssignmentBatchDelay
// after the first mark, re-reads the marked objects from the store and
// sends the difference from what the agent holds (assignState, pure): a
// COMPLETE change set first, then INCREMENTAL ones, each cut into pages of
// at most MaxMessageBytes. Because marks only say "look again", seeing a
// change twice or after the snapshot that already held it is harmless, and
// because a stream registers with the hub before reading its snapshot, no
// change is lost between the two.
package dispatcher
