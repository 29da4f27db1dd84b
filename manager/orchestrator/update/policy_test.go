package update

import (
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestConfigFor(t *testing.T) {
	upd := updateConfig(3, time.Second, 7*time.Second, api.UpdateConfig_CONTINUE, 0.2, api.UpdateConfig_START_FIRST)
	rb := updateConfig(0, 0, time.Second, api.UpdateConfig_ROLLBACK, 0, api.UpdateConfig_STOP_FIRST)
	noMonitor := &api.UpdateConfig{Parallelism: 2}
	defaults := config{parallelism: 1, monitor: DefaultMonitor}
	tests := []struct {
		name           string
		update, rollbk *api.UpdateConfig
		state          api.UpdateStatus_UpdateState
		want           config
	}{
		{name: "no config", want: defaults},
		{name: "update config", update: upd, rollbk: rb, state: api.UpdateStatus_UPDATING,
			want: config{parallelism: 3, delay: time.Second, monitor: 7 * time.Second, failureAction: api.UpdateConfig_CONTINUE, maxFailures: 0.2, order: api.UpdateConfig_START_FIRST}},
		{name: "rollback config while rolling back", update: upd, rollbk: rb, state: api.UpdateStatus_ROLLBACK_STARTED,
			want: config{parallelism: 0, monitor: time.Second, failureAction: api.UpdateConfig_ROLLBACK, rollingBack: true}},
		{name: "rollback without config", update: upd, state: api.UpdateStatus_ROLLBACK_STARTED,
			want: config{parallelism: 1, monitor: DefaultMonitor, rollingBack: true}},
		{name: "monitor defaults to 5s", update: noMonitor, want: config{parallelism: 2, monitor: DefaultMonitor}},
		{name: "negative durations are zero", update: &api.UpdateConfig{Delay: durationpb.New(-time.Second), Monitor: durationpb.New(-time.Second)},
			want: config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService("img:2", 1, tt.update)
			s.Spec.Rollback = tt.rollbk
			if tt.state != api.UpdateStatus_UNKNOWN {
				s.UpdateStatus = &api.UpdateStatus{State: tt.state}
			}
			if got := configFor(s); got != tt.want {
				t.Errorf("configFor = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestIsFailure(t *testing.T) {
	run, done := api.TaskState_TASK_STATE_RUNNING, api.TaskState_TASK_STATE_COMPLETE
	tests := []struct {
		name              string
		desired, observed api.TaskState
		runState          api.TaskState
		want              bool
	}{
		{"running", stRunning, stRunning, run, false},
		{"starting", stRunning, stStarting, run, false},
		{"waiting at ready", stReady, stReady, run, false},
		{"failed", stRunning, stFailed, run, true},
		{"rejected", stReady, stRejected, run, true},
		{"service task exited 0", stRunning, stComplete, run, true},
		{"shut down unexpectedly", stRunning, stShutdown, run, true},
		{"orphaned", stRunning, stOrphaned, run, true},
		{"asked to stop", stShutdown, stShutdown, run, false},
		{"asked to stop, failed stopping", stShutdown, stFailed, run, false},
		{"removed", stRemove, stFailed, run, false},
		{"job task completed", stComplete, stComplete, done, false},
		{"job task failed", stComplete, stFailed, done, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := mkTask("t1", 1, "img", "n1", tt.desired, tt.observed)
			if got := isFailure(task, tt.runState); got != tt.want {
				t.Errorf("isFailure = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestInMonitor(t *testing.T) {
	tests := []struct {
		name    string
		since   time.Time
		now     time.Time
		monitor time.Duration
		want    bool
	}{
		{"never ran", time.Time{}, t0.Add(time.Hour), 5 * time.Second, true},
		{"within", t0, t0.Add(3 * time.Second), 5 * time.Second, true},
		{"at the end", t0, t0.Add(5 * time.Second), 5 * time.Second, true},
		{"after", t0, t0.Add(6 * time.Second), 5 * time.Second, false},
		{"no monitor", t0, t0.Add(time.Nanosecond), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inMonitor(tt.since, tt.now, tt.monitor); got != tt.want {
				t.Errorf("inMonitor = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRatioExceeded(t *testing.T) {
	tests := []struct {
		failures, total int
		ratio           float32
		want            bool
	}{
		{0, 4, 0, false},
		{1, 4, 0, true},
		{1, 4, 0.5, false},
		{2, 4, 0.5, false},
		{3, 4, 0.5, true},
		{1, 10, 0.1, false},
		{3, 10, 0.3, false},
		{4, 10, 0.3, true},
		{1, 0, 0.5, true},
		{5, 4, 1, true},
	}
	for _, tt := range tests {
		if got := ratioExceeded(tt.failures, tt.total, tt.ratio); got != tt.want {
			t.Errorf("ratioExceeded(%d, %d, %v) = %v, want %v", tt.failures, tt.total, tt.ratio, got, tt.want)
		}
	}
}

func TestOnFailure(t *testing.T) {
	tests := []struct {
		action      api.UpdateConfig_FailureAction
		rollingBack bool
		want        haltKind
	}{
		{api.UpdateConfig_PAUSE, false, haltPause},
		{api.UpdateConfig_PAUSE, true, haltPause},
		{api.UpdateConfig_CONTINUE, false, haltNone},
		{api.UpdateConfig_CONTINUE, true, haltNone},
		{api.UpdateConfig_ROLLBACK, false, haltRollback},
		{api.UpdateConfig_ROLLBACK, true, haltPause}, // a rollback is not rolled back
	}
	for _, tt := range tests {
		if got := onFailure(config{failureAction: tt.action, rollingBack: tt.rollingBack}); got != tt.want {
			t.Errorf("onFailure(%v, rolling back %v) = %v, want %v", tt.action, tt.rollingBack, got, tt.want)
		}
	}
}

func TestStatusTransitions(t *testing.T) {
	started := timestamppb.New(t0.Add(-time.Minute))
	now := t0
	status := func(st api.UpdateStatus_UpdateState, msg string) *api.UpdateStatus {
		return &api.UpdateStatus{State: st, StartedAt: started, Message: msg}
	}
	done := func(st api.UpdateStatus_UpdateState, msg string) *api.UpdateStatus {
		return &api.UpdateStatus{State: st, StartedAt: started, CompletedAt: timestamppb.New(now), Message: msg}
	}
	tests := []struct {
		name    string
		op      statusOp
		cur     *api.UpdateStatus
		want    *api.UpdateStatus
		changed bool
	}{
		{"start", statusStart, nil,
			&api.UpdateStatus{State: api.UpdateStatus_UPDATING, StartedAt: timestamppb.New(now), Message: "update in progress"}, true},
		{"start keeps a running update", statusStart, status(api.UpdateStatus_UPDATING, "update in progress"),
			status(api.UpdateStatus_UPDATING, "update in progress"), false},
		{"start keeps a rollback", statusStart, status(api.UpdateStatus_ROLLBACK_STARTED, "manually requested rollback"),
			status(api.UpdateStatus_ROLLBACK_STARTED, "manually requested rollback"), false},
		{"complete update", statusComplete, status(api.UpdateStatus_UPDATING, "update in progress"),
			done(api.UpdateStatus_COMPLETED, "update completed"), true},
		{"complete rollback", statusComplete, status(api.UpdateStatus_ROLLBACK_STARTED, "manually requested rollback"),
			done(api.UpdateStatus_ROLLBACK_COMPLETED, "rollback completed"), true},
		{"complete nothing", statusComplete, nil, nil, false},
		{"complete twice", statusComplete, done(api.UpdateStatus_COMPLETED, "update completed"),
			done(api.UpdateStatus_COMPLETED, "update completed"), false},
		{"pause update", statusPause, status(api.UpdateStatus_UPDATING, "update in progress"),
			status(api.UpdateStatus_PAUSED, "update paused due to failure or early termination of task t9"), true},
		{"pause rollback", statusPause, status(api.UpdateStatus_ROLLBACK_STARTED, "rollback started"),
			status(api.UpdateStatus_ROLLBACK_PAUSED, "rollback paused due to failure or early termination of task t9"), true},
		{"pause paused", statusPause, status(api.UpdateStatus_PAUSED, "x"), status(api.UpdateStatus_PAUSED, "x"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService("img:2", 1, nil)
			s.UpdateStatus = proto.CloneOf(tt.cur)
			changed := tt.op.apply(s, "t9", now)
			if changed != tt.changed {
				t.Errorf("changed = %v, want %v", changed, tt.changed)
			}
			if !proto.Equal(s.GetUpdateStatus(), tt.want) {
				t.Errorf("status = %v, want %v", s.GetUpdateStatus(), tt.want)
			}
		})
	}
}

func TestMarkRolledBack(t *testing.T) {
	started := timestamppb.New(t0.Add(-time.Minute))
	s := newService("img:2", 1, nil)
	s.Meta = &api.Meta{Version: &api.Version{Index: 42}}
	s.PreviousSpec = proto.CloneOf(s.Spec)
	s.PreviousSpec.Task.Container.Image = "img:1"
	s.UpdateStatus = &api.UpdateStatus{State: api.UpdateStatus_UPDATING, StartedAt: started, Message: "update in progress"}
	cur, prev := proto.CloneOf(s.Spec), proto.CloneOf(s.PreviousSpec)

	if !statusRollback.apply(s, "t9", t0) {
		t.Fatal("rollback changed nothing")
	}
	if !proto.Equal(s.Spec, prev) || !proto.Equal(s.PreviousSpec, cur) {
		t.Errorf("specs not swapped: spec %v, previous %v", s.Spec, s.PreviousSpec)
	}
	if got := s.GetSpecVersion().GetIndex(); got != 42 {
		t.Errorf("spec version = %d, want 42 (the version read)", got)
	}
	want := &api.UpdateStatus{State: api.UpdateStatus_ROLLBACK_STARTED, StartedAt: started,
		Message: "update rolled back due to failure or early termination of task t9"}
	if !proto.Equal(s.UpdateStatus, want) {
		t.Errorf("status = %v, want %v", s.UpdateStatus, want)
	}

	// Without a previous spec there is nothing to roll back to: pause.
	s = newService("img:2", 1, nil)
	s.UpdateStatus = &api.UpdateStatus{State: api.UpdateStatus_UPDATING, StartedAt: started}
	if !statusRollback.apply(s, "t9", t0) {
		t.Fatal("rollback without previous spec changed nothing")
	}
	if s.UpdateStatus.State != api.UpdateStatus_PAUSED || s.Spec.Task.Container.Image != "img:2" {
		t.Errorf("rollback without previous spec: status %v, image %s", s.UpdateStatus, s.Spec.Task.Container.Image)
	}
}
