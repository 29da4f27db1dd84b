package update

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// sim drives a rollout over a fakeView the way the updater drives it over
// the store: plan, write, commit, until nothing is left to do.
type sim struct {
	t     *testing.T
	v     *fakeView
	r     *rollout
	svc   *api.Service
	now   time.Time
	plans []plan
}

// newSim returns a rollout of svc (image v2) over n slots running v1.
func newSim(t *testing.T, svc *api.Service, n int) *sim {
	v := &fakeView{down: map[string]bool{}}
	var keys []slotKey
	for i := 1; i <= n; i++ {
		v.tasks = append(v.tasks, mkTask(fmt.Sprintf("old%d", i), uint64(i), "v1", "n1", stRunning, stRunning))
		keys = append(keys, slotKey{slot: uint64(i)})
	}
	return &sim{t: t, v: v, svc: svc, now: t0, r: newRollout(svc, keys, nil, v)}
}

// settle plans, writes into the view and commits until a plan is empty,
// and returns the last, empty, plan (its wake time).
func (s *sim) settle() plan {
	for range 100 {
		p := s.r.plan(s.v, s.now)
		if p.empty() {
			return p
		}
		s.plans = append(s.plans, p)
		for _, sp := range p.slots {
			s.write(sp)
		}
		s.r.commit(p)
	}
	s.t.Fatal("rollout does not settle")
	return plan{}
}

func (s *sim) write(sp slotPlan) {
	if sp.create != nil {
		c := proto.CloneOf(sp.create)
		c.Meta = &api.Meta{Version: &api.Version{Index: 1}, CreatedAt: timestamppb.New(s.now)}
		s.v.set(c)
	}
	for _, id := range sp.shutdown {
		s.update(id, func(t *api.Task) { t.DesiredState = max(t.DesiredState, stShutdown) })
	}
	if sp.start {
		s.update(sp.target, func(t *api.Task) { t.DesiredState = stRunning })
	}
}

// update changes the task with that ID as the store would, and shows the
// rollout the result as an event.
func (s *sim) update(id string, fn func(*api.Task)) {
	t := proto.CloneOf(s.v.get(id))
	fn(t)
	t.Meta.Version.Index++
	s.v.set(t)
	s.r.observe(t, s.now)
}

// agent plays every node once: tasks asked to stop stop, tasks asked to run
// run (unless fail says they fail instead).
func (s *sim) agent(fail func(*api.Task) bool) {
	for _, t := range slices.Clone(s.v.tasks) {
		st, desired := t.GetStatus().GetState(), t.GetDesiredState()
		switch {
		case desired >= stShutdown && st <= stRunning:
			s.update(t.Id, func(t *api.Task) { t.Status.State = stShutdown })
		case desired == stRunning && st < stRunning && fail != nil && fail(t):
			s.update(t.Id, func(t *api.Task) { t.Status.State = stFailed })
		case desired == stRunning && st < stRunning:
			s.update(t.Id, func(t *api.Task) { t.Status.State = stRunning })
		}
	}
}

// newTasks returns the IDs of the tasks running image v2, by slot.
func (s *sim) newTasks() []string {
	var ids []string
	for _, t := range s.v.tasks {
		if t.GetSpec().GetContainer().GetImage() == "v2" {
			ids = append(ids, fmt.Sprintf("%d:%s", t.Slot, t.DesiredState))
		}
	}
	slices.Sort(ids)
	return ids
}

func (s *sim) lastStatus() []statusOp {
	for i := len(s.plans) - 1; i >= 0; i-- {
		if len(s.plans[i].status) > 0 {
			return s.plans[i].status
		}
	}
	return nil
}

func TestRolloutBatches(t *testing.T) {
	svc := newService("v2", 4, updateConfig(2, 10*time.Second, 5*time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST))
	s := newSim(t, svc, 4)

	s.settle()
	if got := s.lastStatus(); !slices.Equal(got, []statusOp{statusStart}) {
		t.Fatalf("status = %v, want start", got)
	}
	if got, want := s.newTasks(), []string{"1:TASK_STATE_READY", "2:TASK_STATE_READY"}; !slices.Equal(got, want) {
		t.Fatalf("first batch = %v, want %v", got, want)
	}
	s.agent(nil) // the old tasks stop
	s.settle()
	if got, want := s.newTasks(), []string{"1:TASK_STATE_RUNNING", "2:TASK_STATE_RUNNING"}; !slices.Equal(got, want) {
		t.Fatalf("after the old tasks stopped = %v, want %v", got, want)
	}
	s.agent(nil) // the new tasks run
	p := s.settle()
	if want := t0.Add(10 * time.Second); !p.wake.Equal(want) {
		t.Fatalf("wake = %v, want the delay's end %v", p.wake, want)
	}

	s.now = t0.Add(9 * time.Second)
	if p := s.settle(); len(s.newTasks()) != 2 || !p.wake.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("second batch before the delay: %v", s.newTasks())
	}
	s.now = t0.Add(10 * time.Second)
	s.settle()
	if got := s.newTasks(); len(got) != 4 {
		t.Fatalf("second batch = %v", got)
	}
	s.agent(nil)
	s.settle()
	s.agent(nil)
	p = s.settle()
	if want := s.now.Add(5 * time.Second); !p.wake.Equal(want) || s.r.done {
		t.Fatalf("wake = %v, done %v; want the monitor's end %v", p.wake, s.r.done, want)
	}
	s.now = p.wake
	s.settle()
	if !s.r.done || !slices.Equal(s.lastStatus(), []statusOp{statusComplete}) {
		t.Fatalf("done %v, status %v; want complete", s.r.done, s.lastStatus())
	}
	for _, tk := range s.v.tasks {
		if img := tk.GetSpec().GetContainer().GetImage(); (img == "v1") != (tk.DesiredState == stShutdown) {
			t.Errorf("task %s (%s) desired %v", tk.Id, img, tk.DesiredState)
		}
	}
}

func TestRolloutStartFirst(t *testing.T) {
	svc := newService("v2", 1, updateConfig(1, 0, 5*time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_START_FIRST))
	s := newSim(t, svc, 1)
	s.settle()
	if got := s.newTasks(); !slices.Equal(got, []string{"1:TASK_STATE_RUNNING"}) {
		t.Fatalf("new tasks = %v", got)
	}
	if d := s.v.get("old1").DesiredState; d != stRunning {
		t.Fatalf("old task desired %v before the new one runs", d)
	}
	s.agent(nil)
	s.settle()
	if d := s.v.get("old1").DesiredState; d != stShutdown {
		t.Fatalf("old task desired %v after the new one runs", d)
	}
}

func TestRolloutFailures(t *testing.T) {
	const monitor = 5 * time.Second
	tests := []struct {
		name        string
		action      api.UpdateConfig_FailureAction
		ratio       float32
		rollingBack bool
		fail        int           // how many new tasks fail
		after       time.Duration // after they ran; 0: they fail starting
		want        haltKind
		status      []statusOp // last status written
	}{
		{name: "pause", action: api.UpdateConfig_PAUSE, fail: 1, want: haltPause, status: []statusOp{statusPause}},
		{name: "pause within monitor", action: api.UpdateConfig_PAUSE, fail: 1, after: 3 * time.Second, want: haltPause, status: []statusOp{statusPause}},
		{name: "failure after monitor does not count", action: api.UpdateConfig_PAUSE, fail: 1, after: 6 * time.Second, want: haltNone, status: []statusOp{statusComplete}},
		{name: "ratio 0.5 tolerates 1 of 4", action: api.UpdateConfig_PAUSE, ratio: 0.5, fail: 1, want: haltNone, status: []statusOp{statusComplete}},
		{name: "ratio 0.5 tolerates 2 of 4", action: api.UpdateConfig_PAUSE, ratio: 0.5, fail: 2, want: haltNone, status: []statusOp{statusComplete}},
		{name: "ratio 0.5, 3 of 4 fail", action: api.UpdateConfig_PAUSE, ratio: 0.5, fail: 3, want: haltPause, status: []statusOp{statusPause}},
		{name: "continue", action: api.UpdateConfig_CONTINUE, fail: 4, want: haltNone, status: []statusOp{statusComplete}},
		{name: "rollback", action: api.UpdateConfig_ROLLBACK, fail: 1, want: haltRollback, status: []statusOp{statusRollback}},
		{name: "failing rollback pauses", action: api.UpdateConfig_ROLLBACK, rollingBack: true, fail: 1, want: haltPause, status: []statusOp{statusPause}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uc := updateConfig(0, 0, monitor, tt.action, tt.ratio, api.UpdateConfig_STOP_FIRST)
			svc := newService("v2", 4, uc)
			if tt.rollingBack {
				svc.Spec.Rollback = uc
				svc.UpdateStatus = &api.UpdateStatus{State: api.UpdateStatus_ROLLBACK_STARTED}
			}
			s := newSim(t, svc, 4)
			s.settle()
			s.agent(nil) // old tasks stop
			s.settle()
			failing := func(tk *api.Task) bool { return tk.Slot <= uint64(tt.fail) }
			if tt.after == 0 {
				s.agent(failing)
			} else {
				s.agent(nil)
				s.settle()
				s.now = s.now.Add(tt.after)
				for _, tk := range slices.Clone(s.v.tasks) {
					if tk.DesiredState == stRunning && failing(tk) {
						s.update(tk.Id, func(tk *api.Task) { tk.Status.State = stFailed })
					}
				}
			}
			for range 3 {
				p := s.settle()
				if s.r.done {
					break
				}
				s.now = p.wake
			}
			if !s.r.done {
				t.Fatal("rollout not done")
			}
			if s.r.halt != tt.want {
				t.Errorf("halt = %v, want %v", s.r.halt, tt.want)
			}
			if got := s.lastStatus(); !slices.Equal(got, tt.status) {
				t.Errorf("last status = %v, want %v", got, tt.status)
			}
			if tt.want != haltNone {
				i := slices.IndexFunc(s.plans, func(p plan) bool { return p.haltTask != "" })
				if i < 0 || s.v.get(s.plans[i].haltTask).GetStatus().GetState() != stFailed {
					t.Errorf("the halt does not name a failed task")
				}
			}
		})
	}
}

// A halted update starts no batch, but finishes the slots in flight.
func TestRolloutHaltFinishesInFlight(t *testing.T) {
	svc := newService("v2", 4, updateConfig(2, 0, 5*time.Second, api.UpdateConfig_PAUSE, 0, api.UpdateConfig_STOP_FIRST))
	s := newSim(t, svc, 4)
	s.settle()
	// Slot 1's new task is rejected before the old one even stopped.
	var rejected string
	for _, tk := range s.v.tasks {
		if tk.Slot == 1 && tk.GetSpec().GetContainer().GetImage() == "v2" {
			rejected = tk.Id
		}
	}
	s.update(rejected, func(tk *api.Task) { tk.Status.State = stRejected })
	s.settle()
	if got := s.lastStatus(); !slices.Equal(got, []statusOp{statusPause}) || s.r.done {
		t.Fatalf("status %v, done %v: want paused, slot 2 still in flight", got, s.r.done)
	}
	s.agent(nil) // old tasks stop; slot 2's new task is started, then runs
	s.settle()
	s.agent(nil)
	s.settle()
	if !s.r.done {
		t.Fatal("not done once the slot in flight finished")
	}
	if got, want := s.newTasks(), []string{"1:TASK_STATE_READY", "2:TASK_STATE_RUNNING"}; !slices.Equal(got, want) {
		t.Errorf("new tasks = %v, want %v (no batch after the pause)", got, want)
	}
}

func TestRolloutNothingToDo(t *testing.T) {
	tests := []struct {
		name   string
		status *api.UpdateStatus
	}{
		{"no status", nil},
		{"left updating by a previous leader", &api.UpdateStatus{State: api.UpdateStatus_UPDATING}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newService("v2", 1, nil)
			svc.UpdateStatus = tt.status
			v := &fakeView{tasks: []*api.Task{mkTask("a", 1, "v2", "n1", stRunning, stRunning)}}
			r := newRollout(svc, []slotKey{{slot: 1}}, nil, v)
			p := r.plan(v, t0)
			if !p.finish || len(p.slots) > 0 || !slices.Equal(p.status, []statusOp{statusComplete}) {
				t.Errorf("plan = %+v, want complete at once", p)
			}
		})
	}
}

func TestRolloutHandOver(t *testing.T) {
	// A replaced update left slot 1 with a new task waiting at READY for
	// an old task that has stopped since; the spec replacing it has the
	// same task spec, so the slot is not dirty.
	svc := newService("v2", 2, nil)
	v := &fakeView{tasks: []*api.Task{
		mkTask("old1", 1, "v1", "n1", stShutdown, stShutdown),
		mkTask("new1", 1, "v2", "", stReady, stPending),
		mkTask("old2", 2, "v1", "n1", stRunning, stRunning),
	}}
	r := newRollout(svc, []slotKey{{slot: 2}}, []slotKey{{slot: 1}}, v)
	if !slices.Equal(r.pending, []slotKey{{slot: 1}, {slot: 2}}) {
		t.Fatalf("pending = %v", r.pending)
	}
	p := r.plan(v, t0)
	if len(p.slots) != 1 || p.slots[0].target != "new1" || !p.slots[0].start {
		t.Fatalf("plan = %+v, want new1 started", p.slots)
	}
	r.commit(p)
	if got := r.leftover(); !slices.Equal(got, []slotKey{{slot: 1}}) {
		t.Errorf("leftover = %v", got)
	}
}
