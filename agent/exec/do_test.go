package exec

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeController records the calls made to it and answers with the errors
// it is given.
type fakeController struct {
	prepare, start, wait, shutdown, terminate error
	calls                                     []string
}

func (f *fakeController) Update(context.Context, *api.Task) error {
	f.calls = append(f.calls, "update")
	return nil
}

func (f *fakeController) Prepare(context.Context) error {
	f.calls = append(f.calls, "prepare")
	return f.prepare
}

func (f *fakeController) Start(context.Context) error {
	f.calls = append(f.calls, "start")
	return f.start
}

func (f *fakeController) Wait(ctx context.Context) error {
	f.calls = append(f.calls, "wait")
	if errors.Is(f.wait, context.Canceled) {
		return ctx.Err()
	}
	return f.wait
}

func (f *fakeController) Shutdown(context.Context) error {
	f.calls = append(f.calls, "shutdown")
	return f.shutdown
}

func (f *fakeController) Terminate(context.Context) error {
	f.calls = append(f.calls, "terminate")
	return f.terminate
}

func (f *fakeController) Remove(context.Context) error {
	f.calls = append(f.calls, "remove")
	return nil
}

func (f *fakeController) Close() error { return nil }

// inspectingController is a fakeController that can tell its container.
type inspectingController struct {
	fakeController
	rs RuntimeState
}

func (c *inspectingController) Inspect(context.Context) (RuntimeState, error) { return c.rs, nil }

const (
	stNew       = api.TaskState_TASK_STATE_NEW
	stAssigned  = api.TaskState_TASK_STATE_ASSIGNED
	stAccepted  = api.TaskState_TASK_STATE_ACCEPTED
	stPreparing = api.TaskState_TASK_STATE_PREPARING
	stReady     = api.TaskState_TASK_STATE_READY
	stStarting  = api.TaskState_TASK_STATE_STARTING
	stRunning   = api.TaskState_TASK_STATE_RUNNING
	stComplete  = api.TaskState_TASK_STATE_COMPLETE
	stShutdown  = api.TaskState_TASK_STATE_SHUTDOWN
	stFailed    = api.TaskState_TASK_STATE_FAILED
	stRejected  = api.TaskState_TASK_STATE_REJECTED
	stRemove    = api.TaskState_TASK_STATE_REMOVE
)

func TestDo(t *testing.T) {
	imageMissing := errors.New("no such image: busybox:nope")
	pullTimeout := Temporary(errors.New("pull: i/o timeout"))
	tests := []struct {
		name       string
		state      api.TaskState
		desired    api.TaskState
		ctlr       fakeController
		cancelled  bool // ctx ends before Do runs
		wantState  api.TaskState
		wantMsg    string
		wantErrMsg string
		wantErr    error // nil, ErrTaskNoop, ErrTaskRetry or context.Canceled
		wantCalls  []string
		wantExit   *int32
	}{
		{name: "assigned is accepted", state: stAssigned, desired: stRunning,
			wantState: stAccepted, wantMsg: "accepted"},
		{name: "no status is accepted", state: stNew, desired: stRunning,
			wantState: stAccepted, wantMsg: "accepted"},
		{name: "accepted starts preparing", state: stAccepted, desired: stRunning,
			wantState: stPreparing, wantMsg: "preparing"},
		{name: "preparing prepares", state: stPreparing, desired: stRunning,
			wantState: stReady, wantMsg: "prepared", wantCalls: []string{"prepare"}},
		{name: "already prepared", state: stPreparing, desired: stRunning, ctlr: fakeController{prepare: ErrTaskPrepared},
			wantState: stReady, wantMsg: "prepared", wantCalls: []string{"prepare"}},
		{name: "prepare fails: rejected", state: stPreparing, desired: stRunning, ctlr: fakeController{prepare: imageMissing},
			wantState: stRejected, wantMsg: "preparing", wantErrMsg: imageMissing.Error(), wantCalls: []string{"prepare"}},
		{name: "prepare fails for now: retry", state: stPreparing, desired: stRunning, ctlr: fakeController{prepare: pullTimeout},
			wantState: stPreparing, wantMsg: "preparing", wantErr: ErrTaskRetry, wantCalls: []string{"prepare"}},
		{name: "prepare interrupted", state: stPreparing, desired: stRunning, ctlr: fakeController{prepare: context.Canceled}, cancelled: true,
			wantState: stPreparing, wantMsg: "preparing", wantErr: context.Canceled, wantCalls: []string{"prepare"}},
		{name: "ready stays while desired ready", state: stReady, desired: stReady,
			wantState: stReady, wantMsg: "prepared", wantErr: ErrTaskNoop},
		{name: "preparing goes on while desired ready", state: stPreparing, desired: stReady,
			wantState: stReady, wantMsg: "prepared", wantCalls: []string{"prepare"}},
		{name: "ready starts when desired running", state: stReady, desired: stRunning,
			wantState: stStarting, wantMsg: "starting"},
		{name: "ready starts for a job", state: stReady, desired: stComplete,
			wantState: stStarting, wantMsg: "starting"},
		{name: "starting starts", state: stStarting, desired: stRunning,
			wantState: stRunning, wantMsg: "started", wantCalls: []string{"start"}},
		{name: "already started is not started again", state: stStarting, desired: stRunning, ctlr: fakeController{start: ErrTaskStarted},
			wantState: stRunning, wantMsg: "started", wantCalls: []string{"start"}},
		{name: "start fails", state: stStarting, desired: stRunning, ctlr: fakeController{start: errors.New("oci runtime error")},
			wantState: stFailed, wantMsg: "starting", wantErrMsg: "oci runtime error", wantCalls: []string{"start"}},
		{name: "running waits: exit 0", state: stRunning, desired: stRunning,
			wantState: stComplete, wantMsg: "finished", wantCalls: []string{"wait"}, wantExit: ptr(int32(0))},
		{name: "running waits: exit 1", state: stRunning, desired: stRunning, ctlr: fakeController{wait: &ExitError{Code: 1}},
			wantState: stFailed, wantMsg: "started", wantErrMsg: "task: non-zero exit (1)", wantCalls: []string{"wait"}, wantExit: ptr(int32(1))},
		{name: "job exits 137", state: stRunning, desired: stComplete, ctlr: fakeController{wait: &ExitError{Code: 137}},
			wantState: stFailed, wantMsg: "started", wantErrMsg: "task: non-zero exit (137)", wantCalls: []string{"wait"}, wantExit: ptr(int32(137))},
		{name: "wait fails", state: stRunning, desired: stRunning, ctlr: fakeController{wait: errors.New("no such container")},
			wantState: stFailed, wantMsg: "started", wantErrMsg: "no such container", wantCalls: []string{"wait"}},
		{name: "wait interrupted", state: stRunning, desired: stRunning, ctlr: fakeController{wait: context.Canceled}, cancelled: true,
			wantState: stRunning, wantMsg: "started", wantErr: context.Canceled, wantCalls: []string{"wait"}},
		{name: "desired shutdown stops a running task", state: stRunning, desired: stShutdown,
			wantState: stShutdown, wantMsg: "shutdown", wantCalls: []string{"shutdown"}},
		{name: "desired remove stops a running task", state: stRunning, desired: stRemove,
			wantState: stShutdown, wantMsg: "shutdown", wantCalls: []string{"shutdown"}},
		{name: "desired shutdown before start", state: stReady, desired: stShutdown,
			wantState: stShutdown, wantMsg: "shutdown", wantCalls: []string{"shutdown"}},
		{name: "desired shutdown before accepting", state: stAssigned, desired: stShutdown,
			wantState: stShutdown, wantMsg: "shutdown", wantCalls: []string{"shutdown"}},
		{name: "failed graceful stop kills", state: stRunning, desired: stShutdown, ctlr: fakeController{shutdown: errors.New("timeout")},
			wantState: stShutdown, wantMsg: "shutdown", wantCalls: []string{"shutdown", "terminate"}},
		{name: "unstoppable task is retried", state: stRunning, desired: stShutdown,
			ctlr:      fakeController{shutdown: errors.New("timeout"), terminate: errors.New("daemon down")},
			wantState: stRunning, wantMsg: "started", wantErr: ErrTaskRetry, wantCalls: []string{"shutdown", "terminate"}},
		{name: "complete stays complete when shut down", state: stComplete, desired: stShutdown,
			wantState: stComplete, wantMsg: "finished", wantErr: ErrTaskNoop},
		{name: "failed stays failed", state: stFailed, desired: stRunning,
			wantState: stFailed, wantMsg: "started", wantErr: ErrTaskNoop},
		{name: "rejected stays rejected", state: stRejected, desired: stShutdown,
			wantState: stRejected, wantMsg: "preparing", wantErr: ErrTaskNoop},
		{name: "shutdown stays shutdown", state: stShutdown, desired: stRemove,
			wantState: stShutdown, wantMsg: "shutdown", wantErr: ErrTaskNoop},
	}
	msgOf := map[api.TaskState]string{
		stAssigned: "scheduler assigned task to node", stAccepted: "accepted", stPreparing: "preparing",
		stReady: "prepared", stStarting: "starting", stRunning: "started", stComplete: "finished",
		stShutdown: "shutdown", stFailed: "started", stRejected: "preparing",
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := &api.Task{Id: "t1", DesiredState: tc.desired}
			stamp := timestamppb.New(timestamppb.Now().AsTime())
			if tc.state != stNew {
				task.Status = &api.TaskStatus{State: tc.state, Message: msgOf[tc.state], Timestamp: stamp}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancelled {
				cancel()
			}
			ctlr := tc.ctlr
			got, err := Do(ctx, task, &ctlr)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Do error = %v, want %v", err, tc.wantErr)
			}
			if got.GetState() != tc.wantState || got.GetMessage() != tc.wantMsg || got.GetErr() != tc.wantErrMsg {
				t.Fatalf("Do status = %v %q err %q, want %v %q err %q",
					got.GetState(), got.GetMessage(), got.GetErr(), tc.wantState, tc.wantMsg, tc.wantErrMsg)
			}
			if !slices.Equal(ctlr.calls, tc.wantCalls) {
				t.Fatalf("controller calls %v, want %v", ctlr.calls, tc.wantCalls)
			}
			moved := err == nil
			if moved && got.GetTimestamp() != nil {
				t.Fatal("a new status keeps the old timestamp")
			}
			if !moved && tc.state != stNew && got.GetTimestamp() == nil {
				t.Fatal("an unchanged status lost its timestamp")
			}
			if tc.wantExit != nil && got.GetContainer().GetExitCode() != *tc.wantExit {
				t.Fatalf("exit code %d, want %d", got.GetContainer().GetExitCode(), *tc.wantExit)
			}
			if task.GetStatus().GetState() != tc.state && tc.state != stNew {
				t.Fatal("Do modified the task")
			}
		})
	}
}

func TestDoFillsContainerStatus(t *testing.T) {
	ctlr := &inspectingController{rs: RuntimeState{Phase: PhaseRunning, Container: &api.ContainerStatus{ContainerId: "c1", Pid: 42}}}
	task := &api.Task{DesiredState: stRunning, Status: &api.TaskStatus{State: stStarting}}
	got, err := Do(context.Background(), task, ctlr)
	if err != nil || got.GetState() != stRunning {
		t.Fatalf("Do = %v, %v", got, err)
	}
	if got.GetContainer().GetContainerId() != "c1" || got.GetContainer().GetPid() != 42 {
		t.Fatalf("container status %v", got.GetContainer())
	}
	ctlr.wait = &ExitError{Code: 3}
	ctlr.rs = RuntimeState{Phase: PhaseExited, ExitCode: 3, Container: &api.ContainerStatus{ContainerId: "c1"}}
	task.Status = got
	got, err = Do(context.Background(), task, ctlr)
	if err != nil || got.GetState() != stFailed || got.GetContainer().GetContainerId() != "c1" || got.GetContainer().GetExitCode() != 3 {
		t.Fatalf("Do = %v, %v", got, err)
	}
}

// TestDoWalksToComplete runs Do in a loop as the worker does: a task goes
// through every state up to COMPLETE, once each, calling each controller
// step once, and then stays.
func TestDoWalksToComplete(t *testing.T) {
	ctlr := &fakeController{}
	task := &api.Task{DesiredState: stRunning, Status: &api.TaskStatus{State: stAssigned}}
	var states []api.TaskState
	for range 10 {
		st, err := Do(context.Background(), task, ctlr)
		if errors.Is(err, ErrTaskNoop) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, st.GetState())
		task.Status = st
	}
	want := []api.TaskState{stAccepted, stPreparing, stReady, stStarting, stRunning, stComplete}
	if !slices.Equal(states, want) {
		t.Fatalf("states %v, want %v", states, want)
	}
	if want := []string{"prepare", "start", "wait"}; !slices.Equal(ctlr.calls, want) {
		t.Fatalf("calls %v, want %v", ctlr.calls, want)
	}
}

func TestExitError(t *testing.T) {
	cause := errors.New("OOMKilled")
	tests := []struct {
		err  *ExitError
		want string
	}{
		{&ExitError{Code: 1}, "task: non-zero exit (1)"},
		{&ExitError{Code: 137, Cause: cause}, "task: non-zero exit (137): OOMKilled"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if tc.err.ExitCode() != tc.err.Code {
			t.Errorf("ExitCode() = %d", tc.err.ExitCode())
		}
	}
	if !errors.Is(&ExitError{Code: 1, Cause: cause}, cause) {
		t.Error("ExitError does not unwrap to its cause")
	}
}

func TestTemporary(t *testing.T) {
	cause := errors.New("i/o timeout")
	err := Temporary(cause)
	if !errors.Is(err, ErrTaskRetry) || !errors.Is(err, cause) || err.Error() != cause.Error() {
		t.Fatalf("Temporary(%v) = %v", cause, err)
	}
	if Temporary(nil) != nil {
		t.Fatal("Temporary(nil) is not nil")
	}
}

func ptr[T any](v T) *T { return &v }
