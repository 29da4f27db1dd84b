package update

import (
	"slices"
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

func TestMirror(t *testing.T) {
	at := func(tk *api.Task, version uint64, st api.TaskState) *api.Task {
		c := proto.CloneOf(tk)
		c.Meta.Version.Index = version
		c.Status.State = st
		return c
	}
	a := mkTask("a", 1, "v1", "n1", stRunning, stAssigned)
	b := mkTask("b", 1, "v2", "n2", stRunning, stNew)
	c := mkTask("c", 2, "v1", "n1", stRunning, stRunning)
	tests := []struct {
		name string
		ops  func(m *mirror)
		want map[slotKey][]string // task ID and state, by slot
	}{
		{
			name: "by slot",
			ops:  func(m *mirror) {},
			want: map[slotKey][]string{{slot: 1}: {"a:TASK_STATE_ASSIGNED", "b:TASK_STATE_NEW"}, {slot: 2}: {"c:TASK_STATE_RUNNING"}},
		},
		{
			name: "newer version replaces",
			ops:  func(m *mirror) { m.put(at(a, 5, stRunning)) },
			want: map[slotKey][]string{{slot: 1}: {"a:TASK_STATE_RUNNING", "b:TASK_STATE_NEW"}, {slot: 2}: {"c:TASK_STATE_RUNNING"}},
		},
		{
			name: "older version ignored",
			ops: func(m *mirror) {
				m.put(at(a, 5, stRunning))
				m.put(at(a, 4, stStarting))
			},
			want: map[slotKey][]string{{slot: 1}: {"a:TASK_STATE_RUNNING", "b:TASK_STATE_NEW"}, {slot: 2}: {"c:TASK_STATE_RUNNING"}},
		},
		{
			name: "remove",
			ops: func(m *mirror) {
				m.remove("c")
				m.remove("nope")
			},
			want: map[slotKey][]string{{slot: 1}: {"a:TASK_STATE_ASSIGNED", "b:TASK_STATE_NEW"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMirror(false, []*api.Task{a, b, c})
			tt.ops(m)
			got := make(map[slotKey][]string)
			for k := range m.slots {
				for _, tk := range m.slotTasks(k) {
					got[k] = append(got[k], tk.Id+":"+tk.Status.State.String())
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("slots = %v, want %v", got, tt.want)
			}
			for k, w := range tt.want {
				if !slices.Equal(got[k], w) {
					t.Errorf("%v = %v, want %v", k, got[k], w)
				}
			}
		})
	}
}

func TestMirrorGlobal(t *testing.T) {
	m := newMirror(true, []*api.Task{
		mkTask("a", 0, "v1", "n1", stRunning, stRunning),
		mkTask("b", 0, "v1", "n2", stRunning, stRunning),
	})
	if got := m.slotTasks(slotKey{node: "n2"}); len(got) != 1 || got[0].Id != "b" {
		t.Errorf("node n2 holds %v", got)
	}
}
