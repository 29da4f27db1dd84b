package update

import (
	"slices"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
)

func TestPlanSlot(t *testing.T) {
	const (
		stop  = api.UpdateConfig_STOP_FIRST
		start = api.UpdateConfig_START_FIRST
	)
	type want struct {
		target   string // "new" for a task the plan creates
		desired  api.TaskState
		start    bool
		shutdown []string
		finished bool
		running  bool
	}
	tests := []struct {
		name   string
		order  api.UpdateConfig_UpdateOrder
		tasks  []*api.Task
		target string
		down   []string
		want   want
	}{
		{
			name:  "stop-first: new task waits at READY, old one shut down",
			order: stop,
			tasks: []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stRunning)},
			want:  want{target: "new", desired: stReady, shutdown: []string{"old"}},
		},
		{
			name:  "stop-first: old task never started, new one starts at once",
			order: stop,
			tasks: []*api.Task{mkTask("old", 1, "v1", "", stRunning, stPending)},
			want:  want{target: "new", desired: stRunning, shutdown: []string{"old"}},
		},
		{
			name:  "stop-first: old task on a down node, new one starts at once",
			order: stop,
			tasks: []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stRunning)},
			down:  []string{"n1"},
			want:  want{target: "new", desired: stRunning, shutdown: []string{"old"}},
		},
		{
			name:  "stop-first: old task already stopped",
			order: stop,
			tasks: []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stFailed)},
			want:  want{target: "new", desired: stRunning, shutdown: []string{"old"}},
		},
		{
			name:   "stop-first: waits while the old task still runs",
			order:  stop,
			tasks:  []*api.Task{mkTask("old", 1, "v1", "n1", stShutdown, stRunning), mkTask("new1", 1, "v2", "n2", stReady, stReady)},
			target: "new1",
			want:   want{target: "new1"},
		},
		{
			name:   "stop-first: starts once the old task stopped",
			order:  stop,
			tasks:  []*api.Task{mkTask("old", 1, "v1", "n1", stShutdown, stShutdown), mkTask("new1", 1, "v2", "n2", stReady, stReady)},
			target: "new1",
			want:   want{target: "new1", start: true},
		},
		{
			name:   "stop-first: starts when the old task's node goes down",
			order:  stop,
			tasks:  []*api.Task{mkTask("old", 1, "v1", "n1", stShutdown, stRunning), mkTask("new1", 1, "v2", "n2", stReady, stAssigned)},
			target: "new1",
			down:   []string{"n1"},
			want:   want{target: "new1", start: true},
		},
		{
			name:   "started, not running yet",
			order:  stop,
			tasks:  []*api.Task{mkTask("old", 1, "v1", "n1", stShutdown, stShutdown), mkTask("new1", 1, "v2", "n2", stRunning, stStarting)},
			target: "new1",
			want:   want{target: "new1"},
		},
		{
			name:   "finished when the new task runs",
			order:  stop,
			tasks:  []*api.Task{mkTask("old", 1, "v1", "n1", stShutdown, stShutdown), mkTask("new1", 1, "v2", "n2", stRunning, stRunning)},
			target: "new1",
			want:   want{target: "new1", finished: true, running: true},
		},
		{
			name:   "finished when the new task failed",
			order:  stop,
			tasks:  []*api.Task{mkTask("new1", 1, "v2", "n2", stReady, stRejected)},
			target: "new1",
			want:   want{target: "new1", finished: true},
		},
		{
			name:   "finished when the new task is gone",
			order:  stop,
			tasks:  []*api.Task{mkTask("old", 1, "v1", "n1", stShutdown, stShutdown)},
			target: "new1",
			want:   want{target: "new1", finished: true},
		},
		{
			name:   "finished when the new task was shut down by someone else",
			order:  start,
			tasks:  []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stRunning), mkTask("new1", 1, "v2", "n2", stShutdown, stAssigned)},
			target: "new1",
			want:   want{target: "new1", shutdown: []string{"old"}, finished: true},
		},
		{
			name:  "start-first: new task runs at once, old one kept",
			order: start,
			tasks: []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stRunning)},
			want:  want{target: "new", desired: stRunning},
		},
		{
			name:  "start-first: old tasks not running are shut down at once",
			order: start,
			tasks: []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stRunning), mkTask("old2", 1, "v1", "", stRunning, stPending)},
			want:  want{target: "new", desired: stRunning, shutdown: []string{"old2"}},
		},
		{
			name:   "start-first: old task shut down once the new one runs",
			order:  start,
			tasks:  []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stRunning), mkTask("new1", 1, "v2", "n2", stRunning, stRunning)},
			target: "new1",
			want:   want{target: "new1", shutdown: []string{"old"}, finished: true, running: true},
		},
		{
			name:   "start-first: old task shut down even if the new one failed",
			order:  start,
			tasks:  []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stRunning), mkTask("new1", 1, "v2", "n2", stRunning, stFailed)},
			target: "new1",
			want:   want{target: "new1", shutdown: []string{"old"}, finished: true},
		},
		{
			name:  "reuses a new task left waiting by a previous leader",
			order: stop,
			tasks: []*api.Task{mkTask("old", 1, "v1", "n1", stShutdown, stShutdown), mkTask("new1", 1, "v2", "", stReady, stPending)},
			want:  want{target: "new1", start: true},
		},
		{
			name:  "start-first: raises a waiting new task",
			order: start,
			tasks: []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stRunning), mkTask("new1", 1, "v2", "", stReady, stPending)},
			want:  want{target: "new1", start: true},
		},
		{
			name:  "a running new task finishes the slot at once",
			order: stop,
			tasks: []*api.Task{mkTask("old", 1, "v1", "n1", stRunning, stRunning), mkTask("new1", 1, "v2", "n2", stRunning, stRunning)},
			want:  want{target: "new1", shutdown: []string{"old"}, finished: true, running: true},
		},
		{
			name:  "a task of a replaced update is old too; the one before it still occupies the slot",
			order: stop,
			tasks: []*api.Task{mkTask("v1", 1, "v1", "n1", stShutdown, stRunning), mkTask("v2", 1, "vx", "", stReady, stPending)},
			want:  want{target: "new", desired: stReady, shutdown: []string{"v2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService("v2", 1, nil)
			down := make(map[string]bool)
			for _, n := range tt.down {
				down[n] = true
			}
			p := planSlot(slotInput{
				service: svc,
				order:   tt.order,
				key:     slotKey{slot: 1},
				tasks:   tt.tasks,
				target:  tt.target,
				nodeUp:  func(id string) bool { return id != "" && !down[id] },
				now:     t0,
			})
			w := tt.want
			if w.target == "new" {
				if p.create == nil {
					t.Fatalf("no task created: %+v", p)
				}
				c := p.create
				if c.GetId() != p.target || c.GetSlot() != 1 || c.GetSpec().GetContainer().GetImage() != "v2" {
					t.Errorf("created task %v, target %s", c, p.target)
				}
				if c.GetDesiredState() != w.desired {
					t.Errorf("created task desired %v, want %v", c.GetDesiredState(), w.desired)
				}
			} else {
				if p.create != nil {
					t.Errorf("created %v, want target %s", p.create, w.target)
				}
				if p.target != w.target {
					t.Errorf("target = %q, want %q", p.target, w.target)
				}
			}
			if p.start != w.start || p.finished != w.finished || p.running != w.running {
				t.Errorf("start %v finished %v running %v, want %v %v %v", p.start, p.finished, p.running, w.start, w.finished, w.running)
			}
			if !slices.Equal(p.shutdown, w.shutdown) {
				t.Errorf("shutdown = %v, want %v", p.shutdown, w.shutdown)
			}
		})
	}
}

func TestPlanSlotGlobal(t *testing.T) {
	svc := globalService("v2")
	old := mkTask("old", 0, "v1", "n1", stRunning, stRunning)
	p := planSlot(slotInput{service: svc, key: slotKey{node: "n1"}, tasks: []*api.Task{old},
		nodeUp: func(string) bool { return true }, now: t0})
	c := p.create
	if c == nil || c.GetNodeId() != "n1" || c.GetSlot() != 0 || c.GetAnnotations().GetName() != "web.n1" {
		t.Fatalf("created %v, want a task on n1", c)
	}
	if c.GetDesiredState() != stReady || !slices.Equal(p.shutdown, []string{"old"}) {
		t.Errorf("desired %v, shutdown %v", c.GetDesiredState(), p.shutdown)
	}
}

func TestNeedsUpdate(t *testing.T) {
	svc := newService("v2", 1, nil)
	tests := []struct {
		name       string
		tasks      []*api.Task
		handedOver bool
		want       bool
	}{
		{"empty slot", nil, false, false},
		{"only stopped tasks", []*api.Task{mkTask("a", 1, "v1", "n1", stShutdown, stShutdown)}, false, false},
		{"dirty", []*api.Task{mkTask("a", 1, "v1", "n1", stRunning, stRunning)}, false, true},
		{"clean", []*api.Task{mkTask("a", 1, "v2", "n1", stRunning, stRunning), mkTask("b", 1, "v1", "n1", stShutdown, stRunning)}, false, false},
		{"two runnable tasks", []*api.Task{mkTask("a", 1, "v2", "n1", stRunning, stRunning), mkTask("b", 1, "v2", "n1", stRunning, stRunning)}, false, true},
		{"clean, waiting to start", []*api.Task{mkTask("a", 1, "v2", "", stReady, stPending)}, false, false},
		{"handed over, waiting to start", []*api.Task{mkTask("a", 1, "v2", "", stReady, stPending)}, true, true},
		{"handed over, running", []*api.Task{mkTask("a", 1, "v2", "n1", stRunning, stRunning)}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := needsUpdate(svc, tt.tasks, tt.handedOver); got != tt.want {
				t.Errorf("needsUpdate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNextBatch(t *testing.T) {
	keys := func(ns ...uint64) []slotKey {
		var out []slotKey
		for _, n := range ns {
			out = append(out, slotKey{slot: n})
		}
		return out
	}
	clean := map[slotKey]bool{{slot: 2}: true}
	needs := func(k slotKey) bool { return !clean[k] }
	tests := []struct {
		name        string
		pending     []slotKey
		n           int
		batch, rest []slotKey
	}{
		{"parallelism 2", keys(1, 3, 4), 2, keys(1, 3), keys(4)},
		{"clean slots are skipped", keys(1, 2, 3, 4), 2, keys(1, 3), keys(4)},
		{"all at once", keys(1, 2, 3, 4), 0, keys(1, 3, 4), keys()},
		{"last one clean", keys(2), 1, nil, keys()},
		{"more than left", keys(3), 5, keys(3), keys()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			batch, rest := nextBatch(tt.pending, tt.n, needs)
			if !slices.Equal(batch, tt.batch) || !slices.Equal(rest, tt.rest) {
				t.Errorf("nextBatch = %v, %v; want %v, %v", batch, rest, tt.batch, tt.rest)
			}
		})
	}
}

func TestSlotKeys(t *testing.T) {
	slots := []orchestrator.Slot{
		{mkTask("c", 3, "v1", "n2", stRunning, stRunning)},
		{mkTask("a", 1, "v1", "n1", stRunning, stRunning), mkTask("b", 1, "v2", "n1", stRunning, stRunning)},
		{},
		{mkTask("d", 3, "v1", "n1", stRunning, stRunning)},
	}
	if got, want := slotKeys(false, slots), []slotKey{{slot: 1}, {slot: 3}}; !slices.Equal(got, want) {
		t.Errorf("replicated keys = %v, want %v", got, want)
	}
	if got, want := slotKeys(true, slots), []slotKey{{node: "n1"}, {node: "n2"}}; !slices.Equal(got, want) {
		t.Errorf("global keys = %v, want %v", got, want)
	}
}
