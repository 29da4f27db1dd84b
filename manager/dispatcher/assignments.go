package dispatcher

import (
	"context"
	"strconv"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Assignments streams what the calling node must run: first a COMPLETE
// change set (every task the node needs, see needsTask, and the secrets
// and configs they reference), then INCREMENTAL change sets as the store
// changes. Changes arriving within AssignmentBatchDelay of the first go
// into one change set. A change set larger than MaxMessageBytes is sent
// as several messages, all but the last with more=true; every page of a
// change set carries the same applies_to (the results_in of the previous
// change set, empty for COMPLETE) and results_in (a sequence number of the
// stream). The stream ends with the session.
func (d *Dispatcher) Assignments(req *api.AssignmentsRequest, stream api.Dispatcher_AssignmentsServer) error {
	ctx := stream.Context()
	r, s, err := d.session(ctx, req.GetSessionId())
	if err != nil {
		return err
	}
	st := newAssignStream(s.node)
	r.hub.add(st) // before the snapshot: see hub
	defer r.hub.remove(st)

	state := newAssignState(s.node)
	var seq uint64
	var changes []*api.AssignmentChange
	d.store.View(func(tx store.ReadTx) { changes = state.changes(storeSource{tx}, dirty{all: true}) })
	if err := r.sendChangeSet(stream, api.AssignmentsMessage_COMPLETE, changes, &seq); err != nil {
		return err
	}
	delay := d.cfg.AssignmentBatchDelay
	for {
		select {
		case <-s.done:
			return s.err
		case <-r.ctx.Done():
			return errStopped
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-st.signal:
		}
		if delay > 0 {
			t := d.cfg.Clock.NewTimer(delay)
			select {
			case <-s.done:
				t.Stop()
				return s.err
			case <-r.ctx.Done():
				t.Stop()
				return errStopped
			case <-ctx.Done():
				t.Stop()
				return status.FromContextError(ctx.Err()).Err()
			case <-t.Chan():
			}
		}
		dd := st.take()
		if dd.empty() {
			continue
		}
		d.store.View(func(tx store.ReadTx) { changes = state.changes(storeSource{tx}, dd) })
		if len(changes) == 0 {
			continue
		}
		if err := r.sendChangeSet(stream, api.AssignmentsMessage_INCREMENTAL, changes, &seq); err != nil {
			return err
		}
	}
}

// sendChangeSet sends changes as one change set, in pages. A COMPLETE
// change set is sent even if empty.
func (r *run) sendChangeSet(stream api.Dispatcher_AssignmentsServer, typ api.AssignmentsMessage_Type, changes []*api.AssignmentChange, seq *uint64) error {
	pages := paginate(changes, r.d.cfg.MaxMessageBytes)
	if len(pages) == 0 {
		pages = [][]*api.AssignmentChange{nil}
	}
	appliesTo := ""
	if typ == api.AssignmentsMessage_INCREMENTAL {
		appliesTo = strconv.FormatUint(*seq, 10)
	}
	*seq++
	resultsIn := strconv.FormatUint(*seq, 10)
	for i, p := range pages {
		if err := stream.Send(&api.AssignmentsMessage{
			Type: typ, AppliesTo: appliesTo, ResultsIn: resultsIn, Changes: p, More: i < len(pages)-1,
		}); err != nil {
			return err
		}
	}
	return nil
}

// storeSource is a source on a store snapshot. Tasks are the stored
// objects themselves, read-only (a source's objects are not modified):
// assignments only encode them, and a burst assigns tens of thousands.
type storeSource struct{ tx store.ReadTx }

func (s storeSource) Task(id string) *api.Task { return store.Lookup[*api.Task](s.tx, id) }

func (s storeSource) NodeTasks(node string) []*api.Task {
	var ts []*api.Task
	_ = store.Each(s.tx, store.ByNodeID(node), func(t *api.Task) bool {
		ts = append(ts, t)
		return true
	})
	return ts
}

func (s storeSource) Secret(id string) *api.Secret { return store.GetSecret(s.tx, id) }

func (s storeSource) Config(id string) *api.Config { return store.GetConfig(s.tx, id) }

// UpdateTaskStatus records the states the calling node reports for its
// tasks. Every task must be assigned to the caller (else nothing is
// recorded: PermissionDenied); reports for tasks the store no longer has
// are dropped. A report that would move a task's state backwards is
// ignored. The reports are queued and written with others in one batch;
// the call returns once that batch has been applied, so an agent that
// gets an error (or no answer) should report again.
func (d *Dispatcher) UpdateTaskStatus(ctx context.Context, req *api.UpdateTaskStatusRequest) (*api.UpdateTaskStatusResponse, error) {
	r, s, err := d.session(ctx, req.GetSessionId())
	if err != nil {
		return nil, err
	}
	updates := req.GetUpdates()
	if len(updates) == 0 {
		return &api.UpdateTaskStatusResponse{}, nil
	}
	keep := make([]*api.UpdateTaskStatusRequest_TaskStatusUpdate, 0, len(updates))
	var bad error
	d.store.View(func(tx store.ReadTx) {
		for _, u := range updates {
			if u.GetStatus() == nil {
				bad = status.Errorf(codes.InvalidArgument, "dispatcher: no status for task %s", u.GetTaskId())
				return
			}
			t := store.GetTask(tx, u.GetTaskId())
			if t == nil {
				continue
			}
			if t.GetNodeId() != s.node {
				bad = status.Errorf(codes.PermissionDenied, "dispatcher: task %s is not assigned to node %s", u.GetTaskId(), s.node)
				return
			}
			keep = append(keep, u)
		}
	})
	if bad != nil {
		return nil, bad
	}
	if len(keep) == 0 {
		return &api.UpdateTaskStatusResponse{}, nil
	}
	now := timestamppb.New(d.cfg.Clock.Now())
	for _, u := range keep {
		stamp(u.Status, now)
	}
	if err := r.w.wait(ctx, r.w.queueTasks(s.node, keep), ""); err != nil {
		return nil, err
	}
	return &api.UpdateTaskStatusResponse{}, nil
}
