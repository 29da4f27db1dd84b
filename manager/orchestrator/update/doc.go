// Package update rolls the tasks of a service to its current spec: the
// rolling update and rollback of `docker service update` and
// `docker service rollback`.
//
// The orchestrators find the slots holding tasks that no longer match their
// service (dirty tasks) and hand them to the Supervisor, which runs one
// updater per service. An updater replaces the slots in batches of the
// UpdateConfig's parallelism (the Rollback config while a rollback runs),
// waits the configured delay between batches, watches every task it
// started for the monitor period, and applies the failure action once the
// failures exceed the max failure ratio: pause, continue, or roll the
// service back to its previous spec. It records its progress in the
// service's UpdateStatus with the messages the docker CLI shows.
//
// # Structure
//
// Every decision is a pure function or a method of rollout, the state of
// one update, fed with what the store says and the time, and answering
// with the writes to make (planSlot, nextBatch, isFailure, ratioExceeded,
// the status transitions). The updater goroutine only watches the service's
// tasks (store.ViewAndWatch), mirrors them, asks the rollout for a plan,
// writes it, and sleeps until an event or the plan's wake-up time.
//
// # Replacement and leader changes
//
// Nothing an update needs lives only in memory: a slot is done once its
// one runnable task matches the spec. An update replaced by a newer spec
// hands the slots it had in flight to its successor, which finishes them
// even if the newer spec leaves them clean (a new task waiting at desired
// READY for its old one to stop is started). A new leader's orchestrators
// hand the remaining dirty slots to a new Supervisor, which goes on from
// there, keeping the UpdateStatus (and its StartedAt) it finds. A slot
// whose old task was still stopping when the leader changed holds a new
// task waiting at desired READY and nothing dirty: the restart
// supervisor's loop, which starts every task waiting at desired READY once
// the stopped tasks of its slot no longer run, starts it.
package update
