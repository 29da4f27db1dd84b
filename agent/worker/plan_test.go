package worker

import (
	"slices"
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestPlanChanges(t *testing.T) {
	t1, t2, t3 := newTask("t1", stRunning), newTask("t2", stRunning), newTask("t3", stRunning)
	t1echo := newTask("t1", stRunning) // the manager echoing a reported status
	t1echo.Status = &api.TaskStatus{State: stRunning, Message: "started"}
	t1echo.Meta.Version.Index = 9
	t1down := withDesired(t1, stShutdown)
	held := map[string]*api.Task{"t1": t1, "t2": t2}
	s1 := &api.Secret{Id: "s1"}
	c1 := &api.Config{Id: "c1"}
	ids := func(ts []*api.Task) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.GetId())
		}
		return out
	}
	tests := []struct {
		name                string
		complete            bool
		held                map[string]*api.Task
		changes             []*api.AssignmentChange
		tasks, store        []string
		confirm, remove     []string
		secrets, rmSecrets  []string
		configs, rmConfigs  []string
		replaceDependencies bool
	}{
		{name: "complete set from nothing", complete: true, changes: []*api.AssignmentChange{upd(t2), upd(t1), upd(s1), upd(c1)},
			tasks: []string{"t1", "t2"}, store: []string{"t1", "t2"}, secrets: []string{"s1"}, configs: []string{"c1"}, replaceDependencies: true},
		{name: "complete set drops what it lacks", complete: true, held: held, changes: []*api.AssignmentChange{upd(t2), upd(t3)},
			tasks: []string{"t3"}, store: []string{"t3"}, confirm: []string{"t2"}, remove: []string{"t1"}, replaceDependencies: true},
		{name: "empty complete set drops everything", complete: true, held: held,
			remove: []string{"t1", "t2"}, replaceDependencies: true},
		{name: "incremental update", held: held, changes: []*api.AssignmentChange{upd(t1down), upd(t3)},
			tasks: []string{"t1", "t3"}, store: []string{"t1", "t3"}},
		{name: "status echo is not stored", held: held, changes: []*api.AssignmentChange{upd(t1echo)},
			tasks: []string{"t1"}},
		{name: "incremental remove", held: held, changes: []*api.AssignmentChange{rmv(&api.Task{Id: "t2"}), rmv(&api.Secret{Id: "s1"}), rmv(&api.Config{Id: "c1"})},
			remove: []string{"t2"}, rmSecrets: []string{"s1"}, rmConfigs: []string{"c1"}},
		{name: "removing what is not held", held: held, changes: []*api.AssignmentChange{rmv(&api.Task{Id: "t9"})}},
		{name: "last change of an object counts", held: held, changes: []*api.AssignmentChange{upd(t3), rmv(&api.Task{Id: "t3"}), rmv(&api.Task{Id: "t1"}), upd(t1down)},
			tasks: []string{"t1"}, store: []string{"t1"}},
		{name: "items without ID are ignored", held: held, changes: []*api.AssignmentChange{upd(&api.Task{}), {Assignment: &api.Assignment{}}, {}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := planChanges(tc.complete, tc.held, tc.changes)
			check := func(what string, got, want []string) {
				t.Helper()
				if !slices.Equal(got, want) {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			check("tasks", ids(p.tasks), tc.tasks)
			check("store", ids(p.store), tc.store)
			check("confirm", p.confirm, tc.confirm)
			check("removeTasks", p.removeTasks, tc.remove)
			var sec, cfg []string
			for _, s := range p.secrets {
				sec = append(sec, s.GetId())
			}
			for _, c := range p.configs {
				cfg = append(cfg, c.GetId())
			}
			check("secrets", sec, tc.secrets)
			check("configs", cfg, tc.configs)
			check("removeSecrets", p.removeSecrets, tc.rmSecrets)
			check("removeConfigs", p.removeConfigs, tc.rmConfigs)
			if p.replaceDeps != tc.replaceDependencies {
				t.Errorf("replaceDeps = %v", p.replaceDeps)
			}
		})
	}
}

func TestLatestStatus(t *testing.T) {
	running := &api.TaskStatus{State: stRunning}
	assigned := &api.TaskStatus{State: stAssigned}
	orphaned := &api.TaskStatus{State: api.TaskState_TASK_STATE_ORPHANED}
	tests := []struct {
		name              string
		manager, recorded *api.TaskStatus
		want              *api.TaskStatus
	}{
		{"nothing recorded", assigned, nil, assigned},
		{"recorded ahead of the manager", assigned, running, running},
		{"manager ahead", orphaned, running, orphaned},
		{"same state: ours", &api.TaskStatus{State: stRunning}, running, running},
	}
	for _, tc := range tests {
		if got := latestStatus(tc.manager, tc.recorded); got != tc.want {
			t.Errorf("%s: latestStatus = %v, want %v", tc.name, got, tc.want)
		}
	}
}
