// Package orchestrator holds what the orchestrators (replicated, global,
// jobs), the restart and update supervisors, the task reaper and the
// constraint enforcer share: how a task is made from a service, when a
// task is out of date, and how tasks group into slots (task.go); the
// store loop the leader's reconcilers run, with its retry backoff
// (Loop, loop.go); and the record of the services a service
// orchestrator has to reconcile (ServiceWork, servicework.go).
//
// The functions of task.go are pure: they read the objects they are
// given and return new ones. Each reconciler keeps its decisions in its
// own sub-package and hands Loop three callbacks: what an event
// concerns, whether work waits, and one pass.
package orchestrator

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultTaskHistoryRetentionLimit is how many stopped tasks a slot keeps
// when the cluster does not say.
const DefaultTaskHistoryRetentionLimit = 5

// IsReplicated reports whether s is a replicated service.
func IsReplicated(s *api.Service) bool { return s.GetSpec().GetReplicated() != nil }

// IsGlobal reports whether s is a global service.
func IsGlobal(s *api.Service) bool { return s.GetSpec().GetGlobal() != nil }

// IsReplicatedJob reports whether s is a replicated job.
func IsReplicatedJob(s *api.Service) bool { return s.GetSpec().GetReplicatedJob() != nil }

// IsGlobalJob reports whether s is a global job.
func IsGlobalJob(s *api.Service) bool { return s.GetSpec().GetGlobalJob() != nil }

// IsJob reports whether s runs to completion rather than forever.
func IsJob(s *api.Service) bool { return IsReplicatedJob(s) || IsGlobalJob(s) }

// RunState is the desired state of a new task of s: RUNNING for services,
// COMPLETE for jobs.
func RunState(s *api.Service) api.TaskState {
	if IsJob(s) {
		return api.TaskState_TASK_STATE_COMPLETE
	}
	return api.TaskState_TASK_STATE_RUNNING
}

// NewTask returns a new task of s at now: for slot (replicated services
// and jobs; slot 0 otherwise) or for nodeID (global services and jobs; ""
// otherwise). Its desired state is RunState(s); its status is NEW, or
// PENDING (ready for the scheduler) when it needs nothing of the
// allocator (NeedsAllocation). The task owns all it points to.
func NewTask(s *api.Service, slot uint64, nodeID string, now time.Time) *api.Task {
	t := NewSharedTask(s, slot, nodeID, now)
	t.Spec = proto.CloneOf(t.Spec)
	t.SpecVersion = proto.CloneOf(t.SpecVersion)
	t.ServiceAnnotations = proto.CloneOf(t.ServiceAnnotations)
	t.Endpoint = proto.CloneOf(t.Endpoint)
	t.JobIteration = proto.CloneOf(t.JobIteration)
	return t
}

// NewSharedTask is NewTask without the copies: the task's Spec,
// SpecVersion, ServiceAnnotations, Endpoint and JobIteration are s's own
// messages (s may be a stored object). Set the task's fields as needed,
// never modify those messages; hand it to Tx.CreateOwned, which takes it
// as it is, when nothing else is to change.
func NewSharedTask(s *api.Service, slot uint64, nodeID string, now time.Time) *api.Task {
	name := s.GetSpec().GetAnnotations().GetName()
	t := &api.Task{
		Id:                 ca.NewID(),
		ServiceId:          s.GetId(),
		Slot:               slot,
		NodeId:             nodeID,
		Spec:               s.GetSpec().GetTask(),
		SpecVersion:        s.GetSpecVersion(),
		ServiceAnnotations: s.GetSpec().GetAnnotations(),
		Endpoint:           s.GetEndpoint(),
		DesiredState:       RunState(s),
		Status: &api.TaskStatus{
			State:     api.TaskState_TASK_STATE_NEW,
			Message:   "created",
			Timestamp: timestamppb.New(now),
		},
	}
	if !NeedsAllocation(s) {
		t.Status.State, t.Status.Message = api.TaskState_TASK_STATE_PENDING, PendingMessage
	}
	if nodeID != "" {
		t.Annotations = &api.Annotations{Name: fmt.Sprintf("%s.%s", name, nodeID)}
	} else {
		t.Annotations = &api.Annotations{Name: name + "." + strconv.FormatUint(slot, 10)}
	}
	if js := s.GetJobStatus(); js != nil {
		t.JobIteration = js.GetJobIteration()
	}
	return t
}

// PendingMessage is the status message of a task waiting for the
// scheduler (the allocator writes it when it moves a task to PENDING).
const PendingMessage = "pending task scheduling"

// NeedsAllocation reports whether a new task of s must wait for the
// allocator (stay NEW until the allocator moves it to PENDING): s
// publishes ports, its tasks attach to networks, or its recorded endpoint
// is not yet the one its spec asks for. A task that needs nothing of the
// allocator is created PENDING, which saves a raft write per task.
func NeedsAllocation(s *api.Service) bool {
	spec := s.GetSpec()
	if len(spec.GetEndpoint().GetPorts()) > 0 || len(spec.GetTask().GetNetworks()) > 0 {
		return true
	}
	return s.GetEndpoint() != nil && !proto.Equal(s.GetEndpoint().GetSpec(), spec.GetEndpoint())
}

// IsTaskDirty reports whether t no longer matches its service: its task
// spec differs from s's, or, once the allocator gave t its endpoint, the
// endpoint s asks for changed. A dirty task is replaced by the update
// supervisor.
func IsTaskDirty(s *api.Service, t *api.Task) bool {
	if !proto.Equal(s.GetSpec().GetTask(), t.GetSpec()) {
		return true
	}
	return t.GetEndpoint() != nil && !proto.Equal(s.GetSpec().GetEndpoint(), t.GetEndpoint().GetSpec())
}

// DirtyCheck returns IsTaskDirty for s as a function that remembers its
// answer for each task spec and endpoint it has seen, by identity: the
// tasks of a service share those messages in the store, so one
// comparison serves them all. The messages it sees must not change while
// it is in use (stored objects never do).
func DirtyCheck(s *api.Service) func(t *api.Task) bool {
	type key struct {
		spec     *api.TaskSpec
		endpoint *api.Endpoint
	}
	seen := make(map[key]bool)
	return func(t *api.Task) bool {
		k := key{t.GetSpec(), t.GetEndpoint()}
		dirty, ok := seen[k]
		if !ok {
			dirty = IsTaskDirty(s, t)
			seen[k] = dirty
		}
		return dirty
	}
}

// IsRunnable reports whether t is still meant to run: its desired state
// is not past COMPLETE.
func IsRunnable(t *api.Task) bool {
	return t.GetDesiredState() <= api.TaskState_TASK_STATE_COMPLETE
}

// HasStopped reports whether t's observed state is past RUNNING.
func HasStopped(t *api.Task) bool {
	return t.GetStatus().GetState() > api.TaskState_TASK_STATE_RUNNING
}

// IsDead reports whether t neither should run nor runs: it only remains as
// history (or awaits deletion).
func IsDead(t *api.Task) bool { return !IsRunnable(t) && HasStopped(t) }

// Slot is the tasks of one replicated slot, or of one node of a global
// service, that are still meant to run.
type Slot []*api.Task

// SlotsByNumber groups the runnable tasks of a replicated service by slot.
func SlotsByNumber(tasks []*api.Task) map[uint64]Slot {
	slots := make(map[uint64]Slot)
	for _, t := range tasks {
		if IsRunnable(t) {
			slots[t.GetSlot()] = append(slots[t.GetSlot()], t)
		}
	}
	return slots
}

// SlotsByNode groups the runnable tasks of a global service by node.
func SlotsByNode(tasks []*api.Task) map[string]Slot {
	slots := make(map[string]Slot)
	for _, t := range tasks {
		if IsRunnable(t) {
			slots[t.GetNodeId()] = append(slots[t.GetNodeId()], t)
		}
	}
	return slots
}

// NodeAcceptsTasks reports whether new tasks may go to n: it is not DOWN
// and its availability is ACTIVE.
func NodeAcceptsTasks(n *api.Node) bool {
	return n != nil && n.GetStatus().GetState() != api.NodeStatus_DOWN &&
		n.GetSpec().GetAvailability() == api.NodeAvailability_NODE_AVAILABILITY_ACTIVE
}

// NodeKeepsTasks reports whether the tasks already on n may stay there: n
// exists, is not DOWN and is not drained (a paused node keeps its tasks).
func NodeKeepsTasks(n *api.Node) bool {
	return n != nil && n.GetStatus().GetState() != api.NodeStatus_DOWN &&
		n.GetSpec().GetAvailability() != api.NodeAvailability_NODE_AVAILABILITY_DRAIN
}

// Updater rolls the tasks of a service to its current spec. The update
// supervisor implements it; the orchestrators call it with the slots that
// hold dirty tasks.
type Updater interface {
	// Update starts the rolling update of s's slots, or lets the one
	// already running for s's spec version go on. An update of an older
	// spec version of s is replaced.
	Update(ctx context.Context, cluster *api.Cluster, s *api.Service, slots []Slot)
	// Cancel stops any update of the service with that ID.
	Cancel(serviceID string)
}

// Restarter replaces the tasks that stop on their own, as their restart
// policy says. The restart supervisor implements it; the orchestrators
// and the update supervisor call it.
type Restarter interface {
	// Restart shuts t down (desired SHUTDOWN) within the caller's write
	// and, if t's restart policy allows, creates its replacement in the
	// same slot (or on the same node) with a delayed start.
	Restart(ctx context.Context, tx TaskWriter, cluster *api.Cluster, s *api.Service, t *api.Task) error
}

// TaskWriter is the part of a store transaction the restart supervisor
// needs; store.Tx implements it.
type TaskWriter interface {
	Create(obj api.StoreObject) error
	Update(obj api.StoreObject) error
}

// HistoryLimit is the cluster's task history retention limit.
func HistoryLimit(c *api.Cluster) int64 {
	if c == nil || c.GetSpec().GetOrchestration() == nil {
		return DefaultTaskHistoryRetentionLimit
	}
	return c.GetSpec().GetOrchestration().GetTaskHistoryRetentionLimit()
}
