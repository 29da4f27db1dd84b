package allocator

import (
	"context"
	"maps"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

// maxGather bounds the events noted before a round, so that a steady
// stream of changes does not put rounds off indefinitely.
const maxGather = 4096

type idSet map[string]struct{}

func (s idSet) add(id string) { s[id] = struct{}{} }

// work is the objects a round looks at, by kind.
type work struct {
	networks, services, tasks idSet
}

func newWork() work { return work{idSet{}, idSet{}, idSet{}} }

func (w work) empty() bool {
	return len(w.networks) == 0 && len(w.services) == 0 && len(w.tasks) == 0
}

func (w work) add(k store.Kind, id string) {
	switch k {
	case store.KindNetwork:
		w.networks.add(id)
	case store.KindService:
		w.services.add(id)
	case store.KindTask:
		w.tasks.add(id)
	}
}

func (w work) remove(k store.Kind, id string) {
	switch k {
	case store.KindNetwork:
		delete(w.networks, id)
	case store.KindService:
		delete(w.services, id)
	case store.KindTask:
		delete(w.tasks, id)
	}
}

func (w work) merge(o work) {
	maps.Copy(w.networks, o.networks)
	maps.Copy(w.services, o.services)
	maps.Copy(w.tasks, o.tasks)
}

// run is the state of one watch of the store: the ledger and the objects
// still to look at.
type run struct {
	a      *Allocator
	l      *ledger
	events <-chan []store.Event

	dirty   work // changed since the last round
	requeue work // written but not taken by the store: retried after a delay
	failed  work // could not be allocated: tried again once something changed
	// waiting holds, by service ID, the NEW tasks waiting for their
	// service's endpoint.
	waiting map[string]idSet
	// retry makes the next round try failed again: resources were freed
	// or networks changed.
	retry bool
	// errs holds the allocation errors of networks and services, by
	// owner key, to log each once and to give tasks the reason.
	errs map[string]string

	delay time.Duration
	timer clockwork.Timer // armed while requeued writes wait
}

func newRun(a *Allocator) *run {
	return &run{
		a:       a,
		l:       newLedger(a.portLo, a.portHi),
		dirty:   newWork(),
		requeue: newWork(),
		failed:  newWork(),
		waiting: make(map[string]idSet),
		errs:    make(map[string]string),
		delay:   minRetryDelay,
	}
}

// load rebuilds the ledger from what tx holds and marks every network and
// service, and every NEW task, for the first round.
func (r *run) load(tx store.ReadTx) error {
	networks, err := store.FindNetworks(tx, store.All)
	if err != nil {
		return err
	}
	services, err := store.FindServices(tx, store.All)
	if err != nil {
		return err
	}
	tasks, err := store.FindTasks(tx, store.All)
	if err != nil {
		return err
	}
	for _, n := range networks {
		r.dirty.networks.add(n.GetId())
	}
	for _, s := range services {
		r.dirty.services.add(s.GetId())
	}
	for _, t := range tasks {
		if t.GetStatus().GetState() == api.TaskState_TASK_STATE_NEW {
			r.dirty.tasks.add(t.GetId())
		}
	}
	for _, p := range r.l.rebuild(networks, services, tasks) {
		r.a.log.Warn("allocator: recorded allocation conflicts with an older one; left out", "error", p)
	}
	r.a.log.Info("allocator: started", "networks", len(r.l.networks), "services", len(r.l.services), "tasks", len(r.l.tasks))
	return nil
}

// loop runs rounds whenever there is something to do, until ctx ends, the
// watch closes or the store is restored.
func (r *run) loop(ctx context.Context) error {
	defer r.stopTimer()
	for {
		// A round that frees or commits something sets retry: the
		// next one tries what failed before; this ends once a round
		// changes nothing.
		for ctx.Err() == nil && (r.retry || !r.dirty.empty()) {
			r.round(ctx)
		}
		var timerC <-chan time.Time
		if r.timer != nil {
			timerC = r.timer.Chan()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timerC:
			r.timer = nil
			r.dirty.merge(r.requeue)
			r.requeue = newWork()
		case evs, ok := <-r.events:
			if !ok {
				return errWatchClosed
			}
			if err := r.gather(ctx, evs); err != nil {
				return err
			}
		}
	}
}

// gather notes evs and the batches after them, until the last event
// noted ends a commit and no other batch is waiting (or maxGather events
// were noted). Batches are never empty.
func (r *run) gather(ctx context.Context, evs []store.Event) error {
	n := 0
	for {
		for _, ev := range evs {
			if ev.Action == store.EventRestore {
				return errRestore
			}
			r.note(ev)
		}
		n += len(evs)
		ok := true
		if evs[len(evs)-1].Action == store.EventCommit {
			if n >= maxGather {
				return nil
			}
			select {
			case evs, ok = <-r.events:
			default:
				return nil
			}
		} else {
			select {
			case evs, ok = <-r.events:
			case <-ctx.Done():
				return nil
			}
		}
		if !ok {
			return errWatchClosed
		}
	}
}

// note marks what an event changed. Task updates matter only for NEW tasks
// (to allocate) and tasks holding addresses (to release when they die).
func (r *run) note(ev store.Event) {
	switch o := ev.Object.(type) {
	case *api.Network:
		r.dirty.networks.add(o.GetId())
	case *api.Service:
		r.dirty.services.add(o.GetId())
	case *api.Task:
		_, held := r.l.tasks[o.GetId()]
		if ev.Action == store.EventRemove || held || o.GetStatus().GetState() == api.TaskState_TASK_STATE_NEW {
			r.dirty.tasks.add(o.GetId())
		}
	case *api.Cluster:
		r.retry = true // the default address pool may have changed
	}
}

// take returns the objects the next round looks at.
func (r *run) take() work {
	w := r.dirty
	r.dirty = newWork()
	if r.retry {
		w.merge(r.failed)
		r.failed = newWork()
		r.retry = false
	}
	return w
}

// round reconciles the objects to look at, networks first, then services,
// then tasks: each phase writes, and commits in the ledger, what the next
// one relies on.
func (r *run) round(ctx context.Context) {
	w := r.take()
	requeued := len(r.requeue.networks) + len(r.requeue.services) + len(r.requeue.tasks)
	if r.networks(ctx, w) {
		r.retry = true
	}
	if r.services(ctx, w) {
		r.retry = true
	}
	if r.tasks(ctx, w) {
		r.retry = true
	}
	if len(r.requeue.networks)+len(r.requeue.services)+len(r.requeue.tasks) > requeued {
		r.armTimer()
	} else if r.timer == nil {
		r.delay = minRetryDelay
	}
}

// armTimer schedules the retry of requeued writes, backing off while they
// keep failing.
func (r *run) armTimer() {
	if r.timer != nil {
		return
	}
	r.timer = r.a.clock.NewTimer(r.delay)
	r.delay = min(2*r.delay, maxRetryDelay)
}

func (r *run) stopTimer() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}
