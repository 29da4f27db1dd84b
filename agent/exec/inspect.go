package exec

import (
	"context"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// Phase is where a task's runtime resources are.
type Phase int

// Phases, in the order a task goes through them.
const (
	// PhaseAbsent: nothing exists for the task (never prepared, or
	// removed).
	PhaseAbsent Phase = iota
	// PhaseCreated: prepared, never started.
	PhaseCreated
	// PhaseRunning: started and still running.
	PhaseRunning
	// PhaseExited: started and exited (with RuntimeState.ExitCode).
	PhaseExited
)

func (p Phase) String() string {
	switch p {
	case PhaseAbsent:
		return "absent"
	case PhaseCreated:
		return "created"
	case PhaseRunning:
		return "running"
	case PhaseExited:
		return "exited"
	}
	return "unknown"
}

// RuntimeState is what the runtime knows of a task.
type RuntimeState struct {
	Phase Phase
	// ExitCode is the exit code of an exited task.
	ExitCode int
	// Container describes the container, if there is one.
	Container *api.ContainerStatus
	// Ports are the ports the runtime publishes on the node for the task
	// (host mode), as docker service ps shows them.
	Ports []*api.PortConfig
}

// Inspector is implemented by controllers that can tell the state of an
// existing task. The worker uses it to re-adopt a task after it restarted:
// a task that kept running is waited for, one that exited meanwhile is
// reported with its final state (see Reconcile).
type Inspector interface {
	Inspect(ctx context.Context) (RuntimeState, error)
}

// Status messages of the task states the agent reaches.
const (
	MsgAccepted  = "accepted"
	MsgPreparing = "preparing"
	MsgPrepared  = "prepared"
	MsgStarting  = "starting"
	MsgStarted   = "started"
	MsgFinished  = "finished"
	MsgShutdown  = "shutdown"
)

// ErrVanished is the error of a task whose resources disappeared while the
// agent was not watching them.
const ErrVanished = "task: container removed while the agent was not running"

// Reconcile returns the status a task is in, given the status last recorded
// for it and what the runtime says now, and whether that differs from the
// recorded one. It only moves forward: a task recorded as starting or
// earlier that runs is RUNNING; one that exited is COMPLETE (exit code 0)
// or FAILED; one that was prepared but whose resources are gone is FAILED
// (ErrVanished). A terminal status never changes. The timestamp of a
// changed status is cleared for the caller to set.
func Reconcile(recorded *api.TaskStatus, rs RuntimeState) (*api.TaskStatus, bool) {
	cur := recorded.GetState()
	st := cloneStatus(recorded)
	if cur >= api.TaskState_TASK_STATE_COMPLETE {
		return st, false
	}
	switch rs.Phase {
	case PhaseCreated:
		if cur >= api.TaskState_TASK_STATE_READY {
			return st, false
		}
		setState(st, api.TaskState_TASK_STATE_READY, MsgPrepared, "")
	case PhaseRunning:
		if cur >= api.TaskState_TASK_STATE_RUNNING {
			return st, false
		}
		setState(st, api.TaskState_TASK_STATE_RUNNING, MsgStarted, "")
	case PhaseExited:
		if rs.ExitCode == 0 {
			setState(st, api.TaskState_TASK_STATE_COMPLETE, MsgFinished, "")
		} else {
			setState(st, api.TaskState_TASK_STATE_FAILED, st.GetMessage(), (&ExitError{Code: rs.ExitCode}).Error())
		}
	default: // absent
		if cur < api.TaskState_TASK_STATE_READY {
			return st, false
		}
		setState(st, api.TaskState_TASK_STATE_FAILED, st.GetMessage(), ErrVanished)
	}
	if rs.Container != nil {
		st.Container = proto.Clone(rs.Container).(*api.ContainerStatus)
	}
	if rs.Phase == PhaseExited {
		if st.Container == nil {
			st.Container = &api.ContainerStatus{}
		}
		st.Container.ExitCode = int32(rs.ExitCode)
	}
	return st, true
}

func cloneStatus(st *api.TaskStatus) *api.TaskStatus {
	if st == nil {
		return &api.TaskStatus{}
	}
	return proto.Clone(st).(*api.TaskStatus)
}

// setState moves st to state, with msg and errMsg, and clears the
// timestamp (the caller stamps the new status).
func setState(st *api.TaskStatus, state api.TaskState, msg, errMsg string) {
	st.State = state
	st.Message = msg
	st.Err = errMsg
	st.Timestamp = nil
}
