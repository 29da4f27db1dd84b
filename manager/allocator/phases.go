package allocator

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// write is an object to store with the allocation it now carries.
type write struct {
	obj api.StoreObject
	// held reports whether the object as stored holds the allocation
	// written; nil if there is nothing to check (a status message).
	held   func(stored api.StoreObject) bool
	commit func(stored api.StoreObject)
	abort  func()
}

// apply writes ws in one batch, then reads each object back: allocations
// the store holds as written are committed in the ledger, the others
// aborted and their objects requeued. It returns how many were committed.
func (r *run) apply(ctx context.Context, ws []write) int {
	if len(ws) == 0 {
		return 0
	}
	err := r.a.store.Batch(ctx, func(b *store.Batch) error {
		for _, w := range ws {
			err := b.Update(func(tx store.Tx) error { return tx.Update(w.obj) })
			switch {
			case err == nil:
			case errors.Is(err, store.ErrSequenceConflict), errors.Is(err, store.ErrNotExist):
				// Changed or deleted since read: its event will come.
			default:
				return err
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		r.a.log.Warn("allocator: write failed", "error", err, "objects", len(ws))
	}
	committed := 0
	r.a.store.View(func(tx store.ReadTx) {
		for _, w := range ws {
			if w.held == nil {
				continue
			}
			k, id := store.KindOf(w.obj), w.obj.GetId()
			if stored := tx.Get(k, id); stored != nil && w.held(stored) {
				w.commit(stored)
				committed++
				continue
			}
			w.abort()
			r.requeue.add(k, id)
		}
	})
	return committed
}

// fail records that the object of kind k with that ID could not be
// allocated: logged once per distinct error, tried again once something
// changes.
func (r *run) fail(k store.Kind, id string, err error) {
	r.failed.add(k, id)
	key := string(k) + ":" + id
	if msg := err.Error(); r.errs[key] != msg {
		r.errs[key] = msg
		r.a.log.Warn("allocator: cannot allocate", "kind", k, string(k)+".id", id, "error", msg)
	}
}

// succeed forgets the allocation error of an object: allocated, deleted,
// or no longer to allocate.
func (r *run) succeed(k store.Kind, id string) {
	delete(r.errs, string(k)+":"+id)
	r.failed.remove(k, id)
}

// explain returns the text users see for an allocation error: for a
// network that is not allocated, why it is not.
func (r *run) explain(err error) string {
	var nr *notReadyError
	if errors.As(err, &nr) {
		if msg := r.errs[string(store.KindNetwork)+":"+nr.network]; msg != "" {
			return msg
		}
	}
	return err.Error()
}

// ingressIn returns the ID of tx's ingress network, or "".
func ingressIn(tx store.ReadTx) string {
	networks, err := store.FindNetworks(tx, store.All)
	if err != nil {
		return ""
	}
	for _, n := range networks {
		if n.GetSpec().GetIngress() {
			return n.GetId()
		}
	}
	return ""
}

// networks allocates the networks of w and releases those deleted. It
// reports whether the allocated networks changed; a change of the ingress
// network puts every service into w.
func (r *run) networks(ctx context.Context, w work) bool {
	if len(w.networks) == 0 {
		return false
	}
	changed, ingressChanged := false, false
	var ws []write
	r.a.store.View(func(tx store.ReadTx) {
		all, err := store.FindNetworks(tx, store.All)
		if err != nil {
			r.a.log.Error("allocator: read networks", "error", err)
			return
		}
		byAge(all)
		var taken []netip.Prefix
		for _, n := range all {
			for _, c := range slices.Concat(n.GetIpam(), n.GetSpec().GetIpam()) {
				if p, err := netip.ParsePrefix(c.GetSubnet()); err == nil {
					taken = append(taken, p.Masked())
				}
			}
		}
		pool := func() (addressPool, error) {
			clusters, err := store.FindClusters(tx, store.All)
			if err != nil || len(clusters) == 0 {
				return clusterAddressPool(nil)
			}
			return clusterAddressPool(clusters[0])
		}
		for id := range w.networks {
			if store.GetNetwork(tx, id) == nil {
				if rec := r.l.networks[id]; rec != nil {
					ingressChanged = ingressChanged || rec.obj.GetSpec().GetIngress()
					r.l.removeNetwork(id)
					changed = true
				}
				r.succeed(store.KindNetwork, id)
			}
		}
		for _, n := range all {
			if _, ok := w.networks[n.GetId()]; !ok {
				continue
			}
			if r.l.networkAllocated(n) {
				r.l.networks[n.GetId()].obj = n
				r.succeed(store.KindNetwork, n.GetId())
				continue
			}
			out, c, err := r.l.allocateNetwork(n, pool, taken)
			if err != nil {
				r.fail(store.KindNetwork, n.GetId(), fmt.Errorf("network %s: %w", n.GetSpec().GetAnnotations().GetName(), err))
				continue
			}
			ws = append(ws, write{
				obj: out,
				held: func(stored api.StoreObject) bool {
					s := stored.(*api.Network)
					return s.GetVni() == out.GetVni() && ipamEqual(s.GetIpam(), out.GetIpam())
				},
				commit: func(stored api.StoreObject) {
					r.l.commitNetwork(c, stored.(*api.Network))
					r.succeed(store.KindNetwork, out.GetId())
					ingressChanged = ingressChanged || out.GetSpec().GetIngress()
					r.a.log.Info("allocator: network allocated", "network.id", out.GetId(), "subnets", subnetsOf(out), "vni", out.GetVni())
				},
				abort: func() { r.l.abortNetwork(c) },
			})
		}
	})
	if r.apply(ctx, ws) > 0 {
		changed = true
	}
	if ingressChanged {
		r.a.store.View(func(tx store.ReadTx) {
			services, _ := store.FindServices(tx, store.All)
			for _, s := range services {
				w.services.add(s.GetId())
			}
		})
	}
	return changed
}

func subnetsOf(n *api.Network) []string {
	var out []string
	for _, c := range n.GetIpam() {
		out = append(out, c.GetSubnet())
	}
	return out
}

// services allocates the endpoints of the services of w (oldest first:
// when two want the same port, the older keeps it) and releases those of
// deleted services. It reports whether anything was committed or freed.
func (r *run) services(ctx context.Context, w work) bool {
	if len(w.services) == 0 {
		return false
	}
	changed := false
	var ws []write
	r.a.store.View(func(tx store.ReadTx) {
		ingressID := ingressIn(tx)
		var svcs []*api.Service
		for id := range w.services {
			s := store.GetService(tx, id)
			if s != nil {
				svcs = append(svcs, s)
				continue
			}
			if _, held := r.l.services[id]; held {
				r.l.releaseService(id)
				changed = true
			}
			r.succeed(store.KindService, id)
			delete(r.waiting, id) // its tasks are left alone
		}
		byAge(svcs)
		for _, s := range svcs {
			id := s.GetId()
			if r.l.serviceAllocated(s, ingressID) {
				r.succeed(store.KindService, id)
				r.wake(w, id)
				continue
			}
			ep, err := r.l.allocateService(s, ingressID)
			if err != nil {
				r.fail(store.KindService, id, errors.New(r.explain(err)))
				continue
			}
			o := serviceOwner(s)
			s.Endpoint = ep
			ws = append(ws, write{
				obj: s,
				held: func(stored api.StoreObject) bool {
					return proto.Equal(stored.(*api.Service).GetEndpoint(), ep)
				},
				commit: func(api.StoreObject) {
					r.l.commitService(o, ep)
					r.succeed(store.KindService, o.id)
					r.wake(w, o.id)
					r.a.log.Debug("allocator: service allocated", "service.id", o.id, "ports", len(ep.GetPorts()), "vips", len(ep.GetVirtualIps()))
				},
				abort: func() { r.l.abortService(o, ep) },
			})
		}
	})
	if r.apply(ctx, ws) > 0 {
		changed = true
	}
	return changed
}

// wake puts the tasks waiting for service id into w.
func (r *run) wake(w work, id string) {
	for t := range r.waiting[id] {
		w.tasks.add(t)
	}
	delete(r.waiting, id)
}

// tasks allocates the NEW tasks of w whose service is allocated, moving
// them to PENDING, and releases the addresses of tasks deleted or dead. A
// task that cannot be allocated stays NEW with the reason in Status.Err.
// It reports whether anything was committed or freed.
func (r *run) tasks(ctx context.Context, w work) bool {
	if len(w.tasks) == 0 {
		return false
	}
	changed := false
	var ws []write
	r.a.store.View(func(tx store.ReadTx) {
		ingressID := ingressIn(tx)
		var tasks []*api.Task
		for id := range w.tasks {
			t := store.GetTask(tx, id)
			if t == nil || isDead(t) {
				if _, held := r.l.tasks[id]; held {
					r.l.releaseTask(id)
					changed = true
				}
				r.succeed(store.KindTask, id)
				continue
			}
			if t.GetStatus().GetState() == api.TaskState_TASK_STATE_NEW && t.GetDesiredState() <= api.TaskState_TASK_STATE_COMPLETE {
				tasks = append(tasks, t)
			} else {
				r.succeed(store.KindTask, id)
			}
		}
		byAge(tasks)
		services := make(map[string]*api.Service)
		for _, t := range tasks {
			if wr, ok := r.task(tx, t, ingressID, services); ok {
				ws = append(ws, wr)
			}
		}
	})
	if r.apply(ctx, ws) > 0 {
		changed = true
	}
	return changed
}

// task decides what to write for a NEW task: its attachments and PENDING,
// or why it stays NEW.
func (r *run) task(tx store.ReadTx, t *api.Task, ingressID string, services map[string]*api.Service) (write, bool) {
	var ep *api.Endpoint
	if sid := t.GetServiceId(); sid != "" {
		s, ok := services[sid]
		if !ok {
			s = store.GetService(tx, sid)
			services[sid] = s
		}
		if s == nil {
			r.succeed(store.KindTask, t.GetId()) // its service is gone: left alone
			return write{}, false
		}
		if !r.l.serviceAllocated(s, ingressID) {
			if r.waiting[sid] == nil {
				r.waiting[sid] = make(idSet)
			}
			r.waiting[sid].add(t.GetId())
			if msg := r.errs[string(store.KindService)+":"+sid]; msg != "" {
				return r.stayNew(t, msg)
			}
			return write{}, false
		}
		ep = s.GetEndpoint()
	}
	atts, err := r.l.allocateTask(t, ep, ingressID)
	if err != nil {
		r.failed.tasks.add(t.GetId())
		return r.stayNew(t, r.explain(err))
	}
	o := taskOwner(t)
	t.Networks = atts
	t.Endpoint = proto.CloneOf(ep)
	st := proto.CloneOf(t.GetStatus())
	if st == nil {
		st = &api.TaskStatus{}
	}
	st.State = api.TaskState_TASK_STATE_PENDING
	st.Message = PendingMessage
	st.Err = ""
	st.Timestamp = timestamppb.New(r.a.clock.Now())
	t.Status = st
	want := attachmentHoldings(atts)
	return write{
		obj: t,
		held: func(stored api.StoreObject) bool {
			s := stored.(*api.Task)
			return s.GetStatus().GetState() != api.TaskState_TASK_STATE_NEW &&
				slices.Equal(attachmentHoldings(s.GetNetworks()), want)
		},
		commit: func(api.StoreObject) {
			r.l.commitTask(o, atts)
			r.succeed(store.KindTask, o.id)
		},
		abort: func() { r.l.abortTask(o, atts) },
	}, true
}

// stayNew writes why a task stays NEW, unless its status says so already.
func (r *run) stayNew(t *api.Task, msg string) (write, bool) {
	if t.GetStatus().GetErr() == msg {
		return write{}, false
	}
	r.a.log.Debug("allocator: task stays new", "task.id", t.GetId(), "service.id", t.GetServiceId(), "error", msg)
	st := proto.CloneOf(t.GetStatus())
	if st == nil {
		st = &api.TaskStatus{State: api.TaskState_TASK_STATE_NEW}
	}
	st.Err = msg
	t.Status = st
	return write{obj: t}, true
}
