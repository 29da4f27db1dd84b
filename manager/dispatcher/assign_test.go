package dispatcher

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

const (
	stNew      = api.TaskState_TASK_STATE_NEW
	stPending  = api.TaskState_TASK_STATE_PENDING
	stAssigned = api.TaskState_TASK_STATE_ASSIGNED
	stAccepted = api.TaskState_TASK_STATE_ACCEPTED
	stRunning  = api.TaskState_TASK_STATE_RUNNING
	stComplete = api.TaskState_TASK_STATE_COMPLETE
	stShutdown = api.TaskState_TASK_STATE_SHUTDOWN
	stFailed   = api.TaskState_TASK_STATE_FAILED
	stRemove   = api.TaskState_TASK_STATE_REMOVE
)

func mkTask(id, node string, desired, observed api.TaskState, version uint64) *api.Task {
	return &api.Task{
		Id: id, NodeId: node, DesiredState: desired,
		Status: &api.TaskStatus{State: observed},
		Meta:   &api.Meta{Version: &api.Version{Index: version}},
		Spec:   &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox"}},
	}
}

func withRefs(t *api.Task, secrets, configs []string) *api.Task {
	for _, s := range secrets {
		t.Spec.Container.Secrets = append(t.Spec.Container.Secrets, &api.SecretReference{SecretId: s, SecretName: s})
	}
	for _, c := range configs {
		t.Spec.Container.Configs = append(t.Spec.Container.Configs, &api.ConfigReference{ConfigId: c, ConfigName: c})
	}
	return t
}

func TestNeedsTask(t *testing.T) {
	tests := []struct {
		name              string
		node              string
		desired, observed api.TaskState
		want              bool
	}{
		{"assigned, to run", "n1", stRunning, stAssigned, true},
		{"running, to run", "n1", stRunning, stRunning, true},
		{"other node", "n2", stRunning, stRunning, false},
		{"not scheduled yet", "n1", stRunning, stPending, false},
		{"new", "n1", stRunning, stNew, false},
		{"to shut down, still running", "n1", stShutdown, stRunning, true},
		{"to shut down, never started", "n1", stShutdown, stAssigned, true},
		{"to remove, still running", "n1", stRemove, stRunning, true},
		{"shut down as asked", "n1", stShutdown, stShutdown, false},
		{"to remove, completed", "n1", stRemove, stComplete, false},
		{"failed, still desired running", "n1", stRunning, stFailed, true},
		{"completed, to shut down", "n1", stShutdown, stComplete, false},
		{"job task, to complete", "n1", api.TaskState_TASK_STATE_COMPLETE, stAssigned, true},
		{"job task, completed", "n1", api.TaskState_TASK_STATE_COMPLETE, stComplete, true},
		{"delayed start, to prepare", "n1", api.TaskState_TASK_STATE_READY, stAssigned, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			task := mkTask("t", "n1", tc.desired, tc.observed, 1)
			if got := needsTask(tc.node, task); got != tc.want {
				t.Fatalf("needsTask = %v, want %v", got, tc.want)
			}
		})
	}
	if needsTask("n1", nil) {
		t.Fatal("needsTask(nil) = true")
	}
}

// mapSource is a source from maps.
type mapSource struct {
	tasks   map[string]*api.Task
	secrets map[string]*api.Secret
	configs map[string]*api.Config
}

func newMapSource() *mapSource {
	return &mapSource{tasks: map[string]*api.Task{}, secrets: map[string]*api.Secret{}, configs: map[string]*api.Config{}}
}

func (m *mapSource) Task(id string) *api.Task { return m.tasks[id] }

func (m *mapSource) NodeTasks(node string) []*api.Task {
	var out []*api.Task
	for _, t := range m.tasks {
		if t.GetNodeId() == node {
			out = append(out, t)
		}
	}
	return out
}

func (m *mapSource) Secret(id string) *api.Secret { return m.secrets[id] }

func (m *mapSource) Config(id string) *api.Config { return m.configs[id] }

func mkSecret(id string, v uint64) *api.Secret {
	return &api.Secret{Id: id, Meta: &api.Meta{Version: &api.Version{Index: v}}, Spec: &api.SecretSpec{Data: []byte("s3cr3t-" + id)}}
}

func mkConfig(id string, v uint64) *api.Config {
	return &api.Config{Id: id, Meta: &api.Meta{Version: &api.Version{Index: v}}, Spec: &api.ConfigSpec{Data: []byte("cfg-" + id)}}
}

// describe renders changes as "update task t1@3", "remove secret s1", ...
func describe(changes []*api.AssignmentChange) []string {
	var out []string
	for _, c := range changes {
		verb := "update"
		if c.GetAction() == api.AssignmentChange_REMOVE {
			verb = "remove"
		}
		var kind string
		var o api.StoreObject
		switch it := c.GetAssignment().GetItem().(type) {
		case *api.Assignment_Task:
			kind, o = "task", it.Task
		case *api.Assignment_Secret:
			kind, o = "secret", it.Secret
		case *api.Assignment_Config:
			kind, o = "config", it.Config
		}
		s := fmt.Sprintf("%s %s %s", verb, kind, o.GetId())
		if verb == "update" {
			s += fmt.Sprintf("@%d", versionOf(o))
		}
		out = append(out, s)
	}
	return out
}

func ids(s ...string) map[string]struct{} {
	m := map[string]struct{}{}
	for _, id := range s {
		m[id] = struct{}{}
	}
	return m
}

func TestAssignStateChanges(t *testing.T) {
	type step struct {
		name   string
		change func(src *mapSource)
		dirty  dirty
		want   []string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "complete set then increments",
			steps: []step{
				{
					name: "complete",
					change: func(src *mapSource) {
						src.tasks["t1"] = mkTask("t1", "n1", stRunning, stRunning, 3)
						src.tasks["t2"] = mkTask("t2", "n1", stRunning, stAssigned, 4)
						src.tasks["t3"] = mkTask("t3", "n1", stShutdown, stShutdown, 5) // done
						src.tasks["t4"] = mkTask("t4", "n2", stRunning, stRunning, 6)   // other node
						src.tasks["t5"] = mkTask("t5", "n1", stRunning, stPending, 7)   // not scheduled
					},
					dirty: dirty{all: true},
					want:  []string{"update task t1@3", "update task t2@4"},
				},
				{
					name:   "stale mark changes nothing",
					change: func(*mapSource) {},
					dirty:  dirty{tasks: ids("t1", "t3", "t4")},
				},
				{
					name: "new task, task the agent reported running, shut down task",
					change: func(src *mapSource) {
						src.tasks["t6"] = mkTask("t6", "n1", stRunning, stAssigned, 8)
						src.tasks["t2"] = mkTask("t2", "n1", stRunning, stRunning, 9)
						src.tasks["t1"] = mkTask("t1", "n1", stShutdown, stShutdown, 10)
					},
					dirty: dirty{tasks: ids("t6", "t2", "t1")},
					want:  []string{"update task t6@8", "remove task t1"},
				},
				{
					name: "a task's spec changes",
					change: func(src *mapSource) {
						t2 := mkTask("t2", "n1", stRunning, stRunning, 11)
						t2.Spec.Container.Image = "busybox:2"
						src.tasks["t2"] = t2
					},
					dirty: dirty{tasks: ids("t2")},
					want:  []string{"update task t2@11"},
				},
				{
					name: "a task's desired state changes",
					change: func(src *mapSource) {
						t2 := mkTask("t2", "n1", stShutdown, stRunning, 12)
						t2.Spec.Container.Image = "busybox:2"
						src.tasks["t2"] = t2
					},
					dirty: dirty{tasks: ids("t2")},
					want:  []string{"update task t2@12"},
				},
				{
					name: "a manager's state change is sent",
					change: func(src *mapSource) {
						src.tasks["t6"] = mkTask("t6", "n1", stRunning, stAssigned, 13)
					},
					dirty: dirty{tasks: ids("t6")},
					want:  []string{"update task t6@13"},
				},
				{
					name:   "deleted task",
					change: func(src *mapSource) { delete(src.tasks, "t6") },
					dirty:  dirty{tasks: ids("t6")},
					want:   []string{"remove task t6"},
				},
				{
					name: "full resync finds what was missed",
					change: func(src *mapSource) {
						delete(src.tasks, "t2")
						src.tasks["t7"] = mkTask("t7", "n1", stRunning, stAssigned, 11)
					},
					dirty: dirty{all: true},
					want:  []string{"update task t7@11", "remove task t2"},
				},
			},
		},
		{
			name: "secrets and configs follow the tasks that use them",
			steps: []step{
				{
					name: "complete: referenced ones present are sent first",
					change: func(src *mapSource) {
						src.secrets["s1"] = mkSecret("s1", 1)
						src.secrets["s2"] = mkSecret("s2", 2)
						src.secrets["unused"] = mkSecret("unused", 2)
						src.configs["c1"] = mkConfig("c1", 3)
						src.tasks["t1"] = withRefs(mkTask("t1", "n1", stRunning, stRunning, 5), []string{"s1", "missing"}, []string{"c1"})
						src.tasks["t2"] = withRefs(mkTask("t2", "n1", stRunning, stRunning, 6), []string{"s1", "s2"}, nil)
					},
					dirty: dirty{all: true},
					want:  []string{"update secret s1@1", "update secret s2@2", "update config c1@3", "update task t1@5", "update task t2@6"},
				},
				{
					name:   "unreferenced secret change is ignored",
					change: func(src *mapSource) { src.secrets["unused"] = mkSecret("unused", 7) },
					dirty:  dirty{secrets: ids("unused")},
				},
				{
					name:   "referenced secret updated",
					change: func(src *mapSource) { src.secrets["s2"] = mkSecret("s2", 8) },
					dirty:  dirty{secrets: ids("s2")},
					want:   []string{"update secret s2@8"},
				},
				{
					name:   "missing secret appears",
					change: func(src *mapSource) { src.secrets["missing"] = mkSecret("missing", 9) },
					dirty:  dirty{secrets: ids("missing")},
					want:   []string{"update secret missing@9"},
				},
				{
					name: "task gone: its only references leave after it",
					change: func(src *mapSource) {
						src.tasks["t1"] = withRefs(mkTask("t1", "n1", stShutdown, stComplete, 10), []string{"s1", "missing"}, []string{"c1"})
					},
					dirty: dirty{tasks: ids("t1")},
					want:  []string{"remove task t1", "remove secret missing", "remove config c1"},
				},
				{
					name:   "secret deleted while used",
					change: func(src *mapSource) { delete(src.secrets, "s2") },
					dirty:  dirty{secrets: ids("s2")},
					want:   []string{"remove secret s2"},
				},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newMapSource()
			st := newAssignState("n1")
			for _, s := range tc.steps {
				s.change(src)
				got := describe(st.changes(src, s.dirty))
				if !slices.Equal(got, s.want) {
					t.Fatalf("%s: changes\n  %q\nwant\n  %q", s.name, got, s.want)
				}
				// Whatever was sent, a full resync now sends nothing: the
				// state is what the source says.
				if again := describe(st.changes(src, dirty{all: true})); len(again) != 0 {
					t.Fatalf("%s: full resync after the step sends %q", s.name, again)
				}
			}
		})
	}
}

func TestRemovalsCarryNoData(t *testing.T) {
	src := newMapSource()
	src.secrets["s1"] = mkSecret("s1", 1)
	src.tasks["t1"] = withRefs(mkTask("t1", "n1", stRunning, stRunning, 2), []string{"s1"}, nil)
	st := newAssignState("n1")
	st.changes(src, dirty{all: true})
	delete(src.tasks, "t1")
	for _, c := range st.changes(src, dirty{tasks: ids("t1")}) {
		if c.GetAction() != api.AssignmentChange_REMOVE {
			t.Fatalf("unexpected %v", c)
		}
		if s := c.GetAssignment().GetSecret(); s != nil && (s.GetSpec() != nil || s.GetId() != "s1") {
			t.Fatalf("secret removal carries %v", s)
		}
	}
}

func TestPaginate(t *testing.T) {
	change := func(n int) *api.AssignmentChange {
		task := mkTask(fmt.Sprintf("t%d", n), "n1", stRunning, stRunning, 1)
		task.Spec.Container.Env = []string{strings.Repeat("x", n)}
		return taskChange(api.AssignmentChange_UPDATE, task)
	}
	sized := func(sizes ...int) []*api.AssignmentChange {
		var out []*api.AssignmentChange
		for _, s := range sizes {
			out = append(out, change(s))
		}
		return out
	}
	tests := []struct {
		name    string
		changes []*api.AssignmentChange
		budget  int
		pages   int
	}{
		{"nothing", nil, 1000, 0},
		{"one small", sized(10), 1000, 1},
		{"all fit", sized(10, 10, 10), 1000, 1},
		{"split in two", sized(300, 300, 300), 800, 2},
		{"one each", sized(300, 300, 300), 450, 3},
		{"oversized alone", sized(10, 5000, 10), 1000, 3},
		{"many", sized(slices.Repeat([]int{100}, 100)...), 1 << 10, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pages := paginate(tc.changes, tc.budget)
			if tc.pages >= 0 && len(pages) != tc.pages {
				t.Fatalf("%d pages, want %d", len(pages), tc.pages)
			}
			var all []*api.AssignmentChange
			for i, p := range pages {
				// Pages are full: the next change would not have fitted.
				if i+1 < len(pages) {
					more := &api.AssignmentsMessage{Changes: append(slices.Clip(p), pages[i+1][0])}
					if proto.Size(more)+messageOverhead <= tc.budget {
						t.Fatalf("page %d could have taken one more change", i)
					}
				}
				if len(p) == 0 {
					t.Fatal("empty page")
				}
				msg := &api.AssignmentsMessage{Type: api.AssignmentsMessage_INCREMENTAL, AppliesTo: "123456", ResultsIn: "123457", Changes: p, More: true}
				if n := proto.Size(msg); n > tc.budget && len(p) > 1 {
					t.Fatalf("page of %d changes is %d bytes, budget %d", len(p), n, tc.budget)
				}
				all = append(all, p...)
			}
			if len(all) != len(tc.changes) {
				t.Fatalf("pages hold %d changes, want %d", len(all), len(tc.changes))
			}
			for i := range all {
				if all[i] != tc.changes[i] {
					t.Fatalf("change %d out of order", i)
				}
			}
		})
	}
}

// TestReportedOnly: a later version of a task differing only in its
// status (past ASSIGNED) and Meta is the agent's own report; a change of
// any other field, or a state the managers set, is not.
func TestReportedOnly(t *testing.T) {
	base := withRefs(mkTask("t1", "n1", stRunning, stAssigned, 3), []string{"s1"}, nil)
	base.Annotations = &api.Annotations{Name: "web.1"}
	running := func(t *api.Task) *api.Task {
		c := proto.CloneOf(t)
		c.Status = &api.TaskStatus{State: stRunning, Message: "started"}
		c.Meta = &api.Meta{Version: &api.Version{Index: versionOf(t) + 1}}
		return c
	}
	if !reportedOnly(base, running(base)) {
		t.Fatal("a status report past ASSIGNED must count as reported only")
	}
	if reportedOnly(base, base) != false || reportedOnly(nil, running(base)) {
		t.Fatal("a task at ASSIGNED, or one never sent, must be sent")
	}
	// Every other field, changed, makes the task one to send.
	fields := base.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if name := fd.Name(); name == "meta" || name == "status" {
			continue
		}
		t.Run(string(fd.Name()), func(t *testing.T) {
			changed := running(base)
			m := changed.ProtoReflect()
			switch {
			case fd.IsList():
				l := m.Mutable(fd).List()
				l.Append(l.NewElement())
			case fd.Message() != nil:
				// A field base's message does not have makes it differ.
				msg := m.Mutable(fd).Message()
				msg.SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 1))
			case fd.Kind() == protoreflect.StringKind:
				m.Set(fd, protoreflect.ValueOfString("changed"))
			case fd.Kind() == protoreflect.Uint64Kind:
				m.Set(fd, protoreflect.ValueOfUint64(99))
			case fd.Kind() == protoreflect.EnumKind:
				m.Set(fd, protoreflect.ValueOfEnum(protoreflect.EnumNumber(api.TaskState_TASK_STATE_REMOVE)))
			default:
				t.Fatalf("no way to change field %s (%s)", fd.Name(), fd.Kind())
			}
			if reportedOnly(base, changed) {
				t.Fatalf("a change of %s counted as reported only", fd.Name())
			}
		})
	}
}
