// Package store is the manager's indexed in-memory database of cluster
// objects (nodes, services, tasks, networks, clusters, secrets, configs).
//
// # Propose, then apply
//
// A write becomes visible only once it has been agreed on by the raft group.
// MemoryStore.Update runs the caller's callback against a private snapshot
// of the store (snapshots are O(1)) plus an overlay of the
// callback's own writes, which its reads see. Every write is checked at once
// (fast fail: missing object, stale version, name conflict) and recorded as
// an *api.StoreAction. Nothing is visible yet: the actions go to the
// Proposer, which replicates them and blocks until they have been applied,
// returning the result of that application. Preparing a transaction takes
// no lock, so transactions are prepared concurrently with each other and
// with Apply.
//
// Every member calls MemoryStore.Apply(index, actions) for every committed
// request, in log order, or MemoryStore.ApplyBatch for many at once (same
// results, one commit). Apply re-checks every precondition against the state
// at that point of the log — the object must (not) exist, an update must
// carry the version it was read at, names must stay unique — and applies all
// actions of the request atomically, or none of them and returns the error
// (ErrSequenceConflict, ErrExist, ...). Apply reads nothing but the store and
// its arguments: timestamps are chosen by the proposer and travel inside the
// actions, and the new version of every created or updated object is the
// raft index, so every member ends in the same state.
//
// Because the check that matters happens at apply time, many transactions can
// be in flight at once (and batched into one raft entry): if two of them were
// computed from the same version of an object, the first applied wins and the
// second fails with ErrSequenceConflict.
//
// A store created with a nil Proposer is local (tests, tools): Update applies
// its actions directly, serialised by a mutex, with a counter as the index.
//
// # Versions
//
// An object's Meta.Version.Index is the raft index of the request that last
// created or updated it (requests sharing a log entry share its index).
// Objects written inside a transaction keep, until the
// transaction is applied, the version they were read at (zero for objects the
// transaction created); after Update returns, re-read an object to learn its
// new version.
//
// # Storage
//
// Each kind is a table: a persistent (copy-on-write) B-tree of the objects by
// ID, and one per secondary index (name, and for tasks and nodes the fields
// the By selectors name) mapping index values to IDs. A published state is
// immutable, so readers and transactions being prepared use it without
// locks; Apply and ApplyBatch write a private copy that shares all unchanged
// nodes, and publish it with one atomic store. A write copies only the nodes
// on its path, once per batch: nodes the batch already copied are modified
// in place. Secondary indexes hold IDs, not objects, so an update touches
// only the indexes whose value it changes (a task status update: the ID
// tree and the task state index).
//
// ApplyBatch applies each request against the batch's private state; a
// request that fails part way is undone (its changes reverted newest first,
// restoring the very objects that were there) before the next request runs,
// so every request sees exactly the state Apply would have shown it.
//
// # Copies and ownership
//
// Stored objects are never modified in place. Get and Find results and Save
// output are copies the receiver may modify; Create and Update store copies
// of their arguments. CreateOwned and UpdateOwned take their argument
// itself, for callers that build a fresh object only to store it (the
// orchestrators' new tasks, the scheduler's assignments): such an object
// may share messages with stored objects (Shallow derives one from a
// stored object) as long as nobody modifies them. Apply, ApplyBatch and Restore take ownership of the
// objects in their arguments (raft decodes a fresh copy for each call),
// including their Meta and Version, which Apply sets in place: callers must
// not use them afterwards.
//
// Stored objects are never modified once stored (each write stores a new
// object), so they are shared without copying where that matters: watch
// events carry the stored objects themselves (Event.Object, Event.Old),
// and Lookup and Each return them. Those are read-only for everyone:
// clone one before modifying it. A store made WithMutationCheck proves it
// in tests: CheckUnmodified fails if any object it ever stored was
// modified.
//
// # Sizes
//
// A single transaction whose encoded actions exceed the store's maximum
// proposal size (MaxProposalBytes by default) fails with ErrTxTooLarge and
// nothing is proposed. Batch spreads many small transactions over as many
// proposals as needed.
package store
