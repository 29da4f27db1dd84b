package restart

import (
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func stamps(ds ...time.Duration) []*timestamppb.Timestamp {
	out := make([]*timestamppb.Timestamp, len(ds))
	for i, d := range ds {
		out[i] = timestamppb.New(at(d))
	}
	return out
}

func durations(h []*timestamppb.Timestamp) []time.Duration {
	out := make([]time.Duration, len(h))
	for i, ts := range h {
		out[i] = ts.AsTime().Sub(t0)
	}
	return out
}

func policy(cond api.RestartPolicy_Condition, delay time.Duration, maxAttempts uint64, window time.Duration) *api.RestartPolicy {
	return &api.RestartPolicy{Condition: cond, Delay: durationpb.New(delay), MaxAttempts: maxAttempts, Window: durationpb.New(window)}
}

// stopped returns a task with policy rp that reached state at stop, with
// that restart history.
func stopped(rp *api.RestartPolicy, state api.TaskState, stop time.Duration, history ...time.Duration) *api.Task {
	return &api.Task{
		Id:             "t",
		Spec:           &api.TaskSpec{Restart: rp},
		DesiredState:   api.TaskState_TASK_STATE_RUNNING,
		Status:         &api.TaskStatus{State: state, Timestamp: timestamppb.New(at(stop))},
		RestartHistory: stamps(history...),
	}
}

func TestPolicyOf(t *testing.T) {
	job := &api.Version{Index: 1}
	tests := []struct {
		name string
		rp   *api.RestartPolicy
		job  *api.Version
		want Policy
	}{
		{"service without policy", nil, nil, Policy{Condition: api.RestartPolicy_ANY, Delay: DefaultDelay}},
		{"job without policy", nil, job, Policy{Condition: api.RestartPolicy_ON_FAILURE, Delay: DefaultDelay}},
		{"job with any", &api.RestartPolicy{Condition: api.RestartPolicy_ANY}, job, Policy{Condition: api.RestartPolicy_ON_FAILURE, Delay: DefaultDelay}},
		{"condition none kept", &api.RestartPolicy{Condition: api.RestartPolicy_NONE}, nil, Policy{Condition: api.RestartPolicy_NONE, Delay: DefaultDelay}},
		{"explicit zero delay", policy(api.RestartPolicy_ANY, 0, 0, 0), nil, Policy{Condition: api.RestartPolicy_ANY}},
		{"all fields", policy(api.RestartPolicy_ON_FAILURE, time.Second, 3, time.Minute), nil,
			Policy{Condition: api.RestartPolicy_ON_FAILURE, Delay: time.Second, MaxAttempts: 3, Window: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PolicyOf(&api.Task{Spec: &api.TaskSpec{Restart: tt.rp}, JobIteration: tt.job})
			if got != tt.want {
				t.Errorf("PolicyOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAllows(t *testing.T) {
	const (
		complete = api.TaskState_TASK_STATE_COMPLETE
		failed   = api.TaskState_TASK_STATE_FAILED
		rejected = api.TaskState_TASK_STATE_REJECTED
	)
	anyPolicy := policy(api.RestartPolicy_ANY, time.Second, 0, 0)
	onFailure := policy(api.RestartPolicy_ON_FAILURE, time.Second, 0, 0)
	tests := []struct {
		name string
		task *api.Task
		want bool
	}{
		{"none never", stopped(policy(api.RestartPolicy_NONE, time.Second, 0, 0), failed, 0), false},
		{"on-failure after failure", stopped(onFailure, failed, 0), true},
		{"on-failure after rejection", stopped(onFailure, rejected, 0), true},
		{"on-failure after completion", stopped(onFailure, complete, 0), false},
		{"any after completion", stopped(anyPolicy, complete, 0), true},
		{"any after failure", stopped(anyPolicy, failed, 0), true},
		{"unlimited attempts", stopped(anyPolicy, failed, time.Hour, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), true},
		{"attempts left, no window", stopped(policy(api.RestartPolicy_ANY, 0, 3, 0), failed, time.Hour, 0, time.Minute), true},
		{"attempts used up, no window", stopped(policy(api.RestartPolicy_ANY, 0, 2, 0), failed, time.Hour, 0, time.Minute), false},
		{"attempts used up in window", stopped(policy(api.RestartPolicy_ANY, 0, 2, time.Minute), failed, 50*time.Second, 0, 30*time.Second), false},
		{"older attempts left the window", stopped(policy(api.RestartPolicy_ANY, 0, 2, time.Minute), failed, 70*time.Second, 0, 30*time.Second), true},
		{"an entry at the window's start is out", stopped(policy(api.RestartPolicy_ANY, 0, 2, time.Minute), failed, 90*time.Second, 30*time.Second, 40*time.Second), true},
		{"an entry at the stop is in", stopped(policy(api.RestartPolicy_ANY, 0, 2, time.Minute), failed, 90*time.Second, 40*time.Second, 90*time.Second), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := allows(PolicyOf(tt.task), tt.task)
			if got != tt.want {
				t.Errorf("allows = %v (%q), want %v", got, why, tt.want)
			}
			if !got && why == "" {
				t.Errorf("a refusal without a reason")
			}
		})
	}
}

func TestDelayGrowsAndIsBounded(t *testing.T) {
	tests := []struct {
		delay time.Duration
		want  []time.Duration // for 1, 2, 3... restarts in a row
	}{
		{5 * time.Second, []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 40 * time.Second}},
		{time.Minute, []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, MaxBackoff, MaxBackoff}},
		{10 * time.Minute, []time.Duration{10 * time.Minute, 10 * time.Minute, 10 * time.Minute}},
		{0, []time.Duration{0, 0, 0}},
	}
	for _, tt := range tests {
		p := Policy{Condition: api.RestartPolicy_ANY, Delay: tt.delay}
		for i, want := range tt.want {
			if got := p.delay(i + 1); got != want {
				t.Errorf("delay %v, restart %d in a row: %v, want %v", tt.delay, i+1, got, want)
			}
		}
	}
}

func TestInARow(t *testing.T) {
	p := Policy{Delay: 5 * time.Second} // longest delay 40s: a gap over 1m40s ends a run
	tests := []struct {
		name    string
		history []time.Duration
		want    int
	}{
		{"empty", nil, 0},
		{"one", []time.Duration{0}, 1},
		{"close together", []time.Duration{0, 10 * time.Second, 30 * time.Second}, 3},
		{"capped", []time.Duration{0, 1, 2, 3, 4, 5, 6}, backoffEntries},
		{"a long run resets", []time.Duration{0, 10 * time.Second, time.Hour, time.Hour + 10*time.Second}, 2},
		{"the gap limit", []time.Duration{0, 100 * time.Second}, 2},
		{"just past it", []time.Duration{0, 100*time.Second + 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := inARow(p, stamps(tt.history...)); got != tt.want {
				t.Errorf("inARow = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestTrim(t *testing.T) {
	long := []time.Duration{0, 1, 2, 3, 4, 5, 6, 7}
	tests := []struct {
		name    string
		p       Policy
		history []time.Duration
		now     time.Duration
		want    []time.Duration
	}{
		{"short history kept", Policy{}, []time.Duration{0, 1}, 10, []time.Duration{0, 1}},
		{"unlimited attempts keep what the backoff needs", Policy{}, long, 10, long[4:]},
		{"max attempts without window", Policy{MaxAttempts: 6}, long, 10, long[2:]},
		{"max attempts below the backoff's need", Policy{MaxAttempts: 2}, long, 10, long[4:]},
		{"the window keeps what it counts", Policy{MaxAttempts: 6, Window: time.Minute},
			[]time.Duration{0, time.Minute, 2 * time.Minute, 125 * time.Second, 130 * time.Second, 140 * time.Second, 150 * time.Second, 170 * time.Second},
			3 * time.Minute, []time.Duration{125 * time.Second, 130 * time.Second, 140 * time.Second, 150 * time.Second, 170 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := durations(trim(tt.p, stamps(tt.history...), at(tt.now)))
			if !equalDurations(got, tt.want) {
				t.Errorf("trim = %v, want %v", got, tt.want)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStartAt(t *testing.T) {
	rp := policy(api.RestartPolicy_ANY, 5*time.Second, 0, 0)
	tests := []struct {
		name    string
		history []time.Duration
		want    time.Duration
		ok      bool
	}{
		{"no history: no wait", nil, 0, false},
		{"first restart", []time.Duration{time.Minute}, time.Minute + 5*time.Second, true},
		{"third in a row", []time.Duration{0, 5 * time.Second, 15 * time.Second}, 35 * time.Second, true},
		{"after a long run", []time.Duration{0, time.Hour}, time.Hour + 5*time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := StartAt(&api.Task{Spec: &api.TaskSpec{Restart: rp}, RestartHistory: stamps(tt.history...)})
			if ok != tt.ok || (ok && !got.Equal(at(tt.want))) {
				t.Errorf("StartAt = %v, %v; want %v, %v", got.Sub(t0), ok, tt.want, tt.ok)
			}
		})
	}
}

func TestGaveUp(t *testing.T) {
	svc := &api.Service{Id: "s", SpecVersion: &api.Version{Index: 3}}
	none := policy(api.RestartPolicy_NONE, 0, 0, 0)
	shut := func(task *api.Task, version uint64) *api.Task {
		task.DesiredState = api.TaskState_TASK_STATE_SHUTDOWN
		task.SpecVersion = &api.Version{Index: version}
		return task
	}
	tests := []struct {
		name string
		task *api.Task
		want bool
	}{
		{"condition none", shut(stopped(none, api.TaskState_TASK_STATE_FAILED, 0), 3), true},
		{"attempts used up", shut(stopped(policy(api.RestartPolicy_ANY, 0, 1, 0), api.TaskState_TASK_STATE_FAILED, time.Minute, 0), 3), true},
		{"replaced", shut(stopped(policy(api.RestartPolicy_ANY, 0, 0, 0), api.TaskState_TASK_STATE_FAILED, 0), 3), false},
		{"older spec version", shut(stopped(none, api.TaskState_TASK_STATE_FAILED, 0), 2), false},
		{"still meant to run", func() *api.Task {
			tk := shut(stopped(none, api.TaskState_TASK_STATE_FAILED, 0), 3)
			tk.DesiredState = api.TaskState_TASK_STATE_RUNNING
			return tk
		}(), false},
		{"removed", func() *api.Task {
			tk := shut(stopped(none, api.TaskState_TASK_STATE_FAILED, 0), 3)
			tk.DesiredState = api.TaskState_TASK_STATE_REMOVE
			return tk
		}(), false},
		{"stopped by a manager", shut(stopped(none, api.TaskState_TASK_STATE_SHUTDOWN, 0), 3), false},
		{"lost with its node", shut(stopped(none, api.TaskState_TASK_STATE_RUNNING, 0), 3), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := GaveUp(svc, tt.task); got != tt.want {
				t.Errorf("GaveUp = %v, want %v", got, tt.want)
			}
		})
	}
	if GaveUp(nil, shut(stopped(none, api.TaskState_TASK_STATE_FAILED, 0), 3)) {
		t.Errorf("GaveUp without a service")
	}
	running := &api.Task{DesiredState: api.TaskState_TASK_STATE_RUNNING}
	gaveUp := shut(stopped(none, api.TaskState_TASK_STATE_FAILED, 0), 3)
	if !SlotGaveUp(svc, []*api.Task{gaveUp}) || SlotGaveUp(svc, []*api.Task{gaveUp, running}) || SlotGaveUp(svc, nil) {
		t.Errorf("SlotGaveUp wrong")
	}
}
