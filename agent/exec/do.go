package exec

import (
	"context"
	"errors"
	"fmt"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// Do advances t one step towards its desired state through ctlr and
// returns the status t reaches. The task lifecycle it follows:
//
//	ASSIGNED -> ACCEPTED -> PREPARING -> READY -> STARTING -> RUNNING -> COMPLETE | FAILED
//
// A task waits at READY while its desired state is READY (a delayed
// restart), and moves on when it is raised. Preparing that fails for good
// rejects the task (REJECTED); a start that fails, a non-zero exit or a
// failed wait fail it (FAILED, with the error in Status.Err, e.g. "task:
// non-zero exit (1)"). Once the desired state is past COMPLETE (SHUTDOWN,
// REMOVE), a task that has not ended is shut down (SHUTDOWN). Terminal
// states never change.
//
// Do returns:
//   - a new status and nil when the task moved (its timestamp cleared for
//     the caller to set); the caller records it and calls Do again with the
//     task in that status;
//   - the unchanged status and ErrTaskNoop when there is nothing to do until
//     the task (its desired state) changes;
//   - the unchanged status and an error wrapping ErrTaskRetry when a step
//     failed temporarily: call Do again later;
//   - the unchanged status and ctx's error when ctx ended mid-step.
//
// Do never reads a clock and calls only ctlr: the same task and controller
// answers give the same result.
func Do(ctx context.Context, t *api.Task, ctlr Controller) (*api.TaskStatus, error) {
	st := cloneStatus(t.GetStatus())
	cur, desired := st.GetState(), t.GetDesiredState()

	if cur >= api.TaskState_TASK_STATE_COMPLETE {
		return st, ErrTaskNoop
	}
	if desired > api.TaskState_TASK_STATE_COMPLETE {
		return shutdown(ctx, st, ctlr)
	}
	// Steps under way go on whatever the desired state (it is READY at
	// least once a task is assigned).
	switch cur {
	case api.TaskState_TASK_STATE_PREPARING:
		return prepare(ctx, st, ctlr)
	case api.TaskState_TASK_STATE_STARTING:
		return start(ctx, st, ctlr)
	case api.TaskState_TASK_STATE_RUNNING:
		return wait(ctx, st, ctlr)
	}
	// The others are resting states: leave them only towards the desired
	// state.
	if cur >= desired {
		return st, ErrTaskNoop
	}
	switch {
	case cur < api.TaskState_TASK_STATE_ACCEPTED:
		setState(st, api.TaskState_TASK_STATE_ACCEPTED, MsgAccepted, "")
	case cur == api.TaskState_TASK_STATE_ACCEPTED:
		setState(st, api.TaskState_TASK_STATE_PREPARING, MsgPreparing, "")
	case cur == api.TaskState_TASK_STATE_READY:
		setState(st, api.TaskState_TASK_STATE_STARTING, MsgStarting, "")
	default:
		return st, ErrTaskNoop
	}
	return st, nil
}

func prepare(ctx context.Context, st *api.TaskStatus, ctlr Controller) (*api.TaskStatus, error) {
	err := ctlr.Prepare(ctx)
	switch {
	case err == nil || errors.Is(err, ErrTaskPrepared):
		setState(st, api.TaskState_TASK_STATE_READY, MsgPrepared, "")
		return st, nil
	case ctx.Err() != nil:
		return st, ctx.Err()
	case errors.Is(err, ErrTaskRetry):
		return st, fmt.Errorf("prepare: %w", err)
	}
	setState(st, api.TaskState_TASK_STATE_REJECTED, st.GetMessage(), err.Error())
	return st, nil
}

func start(ctx context.Context, st *api.TaskStatus, ctlr Controller) (*api.TaskStatus, error) {
	err := ctlr.Start(ctx)
	switch {
	case err == nil || errors.Is(err, ErrTaskStarted):
		setState(st, api.TaskState_TASK_STATE_RUNNING, MsgStarted, "")
		withContainer(ctx, st, ctlr)
		return st, nil
	case ctx.Err() != nil:
		return st, ctx.Err()
	case errors.Is(err, ErrTaskRetry):
		return st, fmt.Errorf("start: %w", err)
	}
	setState(st, api.TaskState_TASK_STATE_FAILED, st.GetMessage(), err.Error())
	withContainer(ctx, st, ctlr)
	return st, nil
}

func wait(ctx context.Context, st *api.TaskStatus, ctlr Controller) (*api.TaskStatus, error) {
	err := ctlr.Wait(ctx)
	var exit *ExitError
	switch {
	case err == nil:
		setState(st, api.TaskState_TASK_STATE_COMPLETE, MsgFinished, "")
		withContainer(ctx, st, ctlr)
		setExitCode(st, 0)
		return st, nil
	case ctx.Err() != nil:
		return st, ctx.Err()
	case errors.As(err, &exit):
		setState(st, api.TaskState_TASK_STATE_FAILED, st.GetMessage(), exit.Error())
		withContainer(ctx, st, ctlr)
		setExitCode(st, exit.Code)
		return st, nil
	case errors.Is(err, ErrTaskRetry):
		return st, fmt.Errorf("wait: %w", err)
	}
	setState(st, api.TaskState_TASK_STATE_FAILED, st.GetMessage(), err.Error())
	return st, nil
}

// shutdown stops a task whose desired state is past COMPLETE. If the
// graceful stop fails the task is killed; if that fails too, the task may
// still run, so the step is retried rather than the task given up.
func shutdown(ctx context.Context, st *api.TaskStatus, ctlr Controller) (*api.TaskStatus, error) {
	if err := ctlr.Shutdown(ctx); err != nil {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		if kerr := ctlr.Terminate(ctx); kerr != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			return st, fmt.Errorf("%w: shutdown: %w; terminate: %w", ErrTaskRetry, err, kerr)
		}
	}
	setState(st, api.TaskState_TASK_STATE_SHUTDOWN, MsgShutdown, "")
	return st, nil
}

// withContainer fills st's container status from ctlr, if it can tell.
func withContainer(ctx context.Context, st *api.TaskStatus, ctlr Controller) {
	in, ok := ctlr.(Inspector)
	if !ok {
		return
	}
	rs, err := in.Inspect(ctx)
	if err != nil || rs.Container == nil {
		return
	}
	st.Container = proto.Clone(rs.Container).(*api.ContainerStatus)
	if len(rs.Ports) > 0 {
		st.PortStatus = &api.PortStatus{}
		for _, p := range rs.Ports {
			st.PortStatus.Ports = append(st.PortStatus.Ports, proto.Clone(p).(*api.PortConfig))
		}
	}
}

func setExitCode(st *api.TaskStatus, code int) {
	if st.Container == nil {
		st.Container = &api.ContainerStatus{}
	}
	st.Container.ExitCode = int32(code)
}
