package orchestrator

import (
	"fmt"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

// Placer assigns nodes to tasks an orchestrator is about to create, so
// that a task is stored ASSIGNED by the write that creates it, instead of
// PENDING by that write and ASSIGNED by a second one. The leader's
// scheduler is the Placer; a task it does not place is created PENDING
// and scheduled like any other.
type Placer interface {
	// Place assigns those of tasks (new, not yet written, PENDING) it
	// can place now: it sets their NodeId and Status (ASSIGNED), never
	// modifying a message they point to, and counts them on their nodes
	// as if they were stored. The caller writes the tasks as they are
	// and calls settle exactly once, when the write that carries them
	// has ended: with nil if every task was created, else with the
	// write's error (settle then forgets the placements of tasks the
	// store does not hold).
	Place(tasks []*api.Task) (settle func(error))
}

// noPlacer places nothing: every new task is created PENDING.
type noPlacer struct{}

func (noPlacer) Place([]*api.Task) func(error) { return func(error) {} }

// CreatePlaced has p place tasks, then creates them in tx as placed. It
// returns the placement's settle, for the caller to call once the write
// carrying tx has ended; if a creation fails, CreatePlaced settles with
// that error itself and returns it.
func CreatePlaced(tx store.Tx, p Placer, tasks []*api.Task) (settle func(error), err error) {
	settle = p.Place(tasks)
	for _, t := range tasks {
		if err := tx.CreateOwned(t); err != nil {
			err = fmt.Errorf("create task %s (slot %d, node %q): %w", t.GetId(), t.GetSlot(), t.GetNodeId(), err)
			settle(err)
			return nil, err
		}
	}
	return settle, nil
}

// Settles holds the placement settles (see CreatePlaced) of the
// transactions of one store.Batch until the batch has ended.
type Settles []func(error)

// Add takes the settle of one transaction of the batch (nil: it placed
// nothing) and updateErr, what Batch.Update returned for it: if it
// failed, its writes were dropped, and its placement is settled at once.
func (s *Settles) Add(settle func(error), updateErr error) {
	switch {
	case settle == nil:
	case updateErr != nil:
		settle(updateErr)
	default:
		*s = append(*s, settle)
	}
}

// Done settles the placements kept with err, what the batch returned.
func (s Settles) Done(err error) {
	for _, settle := range s {
		settle(err)
	}
}
