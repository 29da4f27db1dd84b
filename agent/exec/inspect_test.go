package exec

import (
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestReconcile(t *testing.T) {
	tests := []struct {
		name       string
		recorded   api.TaskState
		rs         RuntimeState
		wantState  api.TaskState
		wantErrMsg string
		changed    bool
	}{
		{name: "running while recorded starting", recorded: stStarting, rs: RuntimeState{Phase: PhaseRunning},
			wantState: stRunning, changed: true},
		{name: "running as recorded", recorded: stRunning, rs: RuntimeState{Phase: PhaseRunning},
			wantState: stRunning},
		{name: "exited 0 while down", recorded: stRunning, rs: RuntimeState{Phase: PhaseExited},
			wantState: stComplete, changed: true},
		{name: "exited 2 while down", recorded: stRunning, rs: RuntimeState{Phase: PhaseExited, ExitCode: 2},
			wantState: stFailed, wantErrMsg: "task: non-zero exit (2)", changed: true},
		{name: "exited after start was recorded as starting", recorded: stStarting, rs: RuntimeState{Phase: PhaseExited, ExitCode: 1},
			wantState: stFailed, wantErrMsg: "task: non-zero exit (1)", changed: true},
		{name: "created while recorded preparing", recorded: stPreparing, rs: RuntimeState{Phase: PhaseCreated},
			wantState: stReady, changed: true},
		{name: "created, start still to do", recorded: stStarting, rs: RuntimeState{Phase: PhaseCreated},
			wantState: stStarting},
		{name: "nothing yet while preparing", recorded: stPreparing, rs: RuntimeState{Phase: PhaseAbsent},
			wantState: stPreparing},
		{name: "vanished while running", recorded: stRunning, rs: RuntimeState{Phase: PhaseAbsent},
			wantState: stFailed, wantErrMsg: ErrVanished, changed: true},
		{name: "terminal stays", recorded: stComplete, rs: RuntimeState{Phase: PhaseAbsent},
			wantState: stComplete},
		{name: "shutdown stays even if running", recorded: stShutdown, rs: RuntimeState{Phase: PhaseRunning},
			wantState: stShutdown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &api.TaskStatus{State: tc.recorded, Message: "m"}
			got, changed := Reconcile(rec, tc.rs)
			if changed != tc.changed || got.GetState() != tc.wantState || got.GetErr() != tc.wantErrMsg {
				t.Fatalf("Reconcile = %v %q changed=%v, want %v %q changed=%v",
					got.GetState(), got.GetErr(), changed, tc.wantState, tc.wantErrMsg, tc.changed)
			}
			if rec.GetState() != tc.recorded {
				t.Fatal("Reconcile modified the recorded status")
			}
			if tc.rs.Phase == PhaseExited && changed && got.GetContainer().GetExitCode() != int32(tc.rs.ExitCode) {
				t.Fatalf("exit code %d, want %d", got.GetContainer().GetExitCode(), tc.rs.ExitCode)
			}
		})
	}
}
