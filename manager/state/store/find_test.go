package store

import (
	"errors"
	"slices"
	"sort"
	"testing"

	"github.com/openswarm/swarmd/api"
)

func TestFind(t *testing.T) {
	s := NewMemoryStore(nil)
	defer s.Close()
	running, shutdown := api.TaskState_TASK_STATE_RUNNING, api.TaskState_TASK_STATE_SHUTDOWN
	create(t, s,
		&api.Node{Id: "n1abc", Role: api.NodeRole_NODE_ROLE_MANAGER, Spec: &api.NodeSpec{Membership: api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED}, Description: &api.NodeDescription{Hostname: "Alpha"}},
		&api.Node{Id: "n2abd", Spec: &api.NodeSpec{Annotations: &api.Annotations{Name: "beta"}}},
		&api.Service{Id: "s1", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "web"}}},
		&api.Service{Id: "s2", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "Web-API"}}},
		&api.Service{Id: "s3", Spec: &api.ServiceSpec{Annotations: &api.Annotations{Name: "db"}}},
		&api.Task{Id: "t1", ServiceId: "s1", Slot: 1, NodeId: "n1abc", DesiredState: running, Status: &api.TaskStatus{State: running}, ServiceAnnotations: &api.Annotations{Name: "web"}},
		&api.Task{Id: "t2", ServiceId: "s1", Slot: 1, NodeId: "n2abd", DesiredState: shutdown, Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_COMPLETE}, ServiceAnnotations: &api.Annotations{Name: "web"}},
		&api.Task{Id: "t3", ServiceId: "s1", Slot: 2, DesiredState: running, ServiceAnnotations: &api.Annotations{Name: "web"}},
		&api.Task{Id: "t4", ServiceId: "s2", NodeId: "n1abc", DesiredState: running, Annotations: &api.Annotations{Name: "custom"}},
	)
	tests := []struct {
		name string
		kind Kind
		by   By
		want []string
		err  error
	}{
		{"all services", KindService, All, []string{"s1", "s2", "s3"}, nil},
		{"name exact, case-insensitive", KindService, ByName("WEB"), []string{"s1"}, nil},
		{"name prefix", KindService, ByNamePrefix("we"), []string{"s1", "s2"}, nil},
		{"name prefix upper", KindService, ByNamePrefix("WEB-"), []string{"s2"}, nil},
		{"id prefix", KindNode, ByIDPrefix("n1"), []string{"n1abc"}, nil},
		{"id prefix many", KindNode, ByIDPrefix("n"), []string{"n1abc", "n2abd"}, nil},
		{"node by hostname", KindNode, ByName("alpha"), []string{"n1abc"}, nil},
		{"node by spec name", KindNode, ByName("beta"), []string{"n2abd"}, nil},
		{"role", KindNode, ByRole(api.NodeRole_NODE_ROLE_MANAGER), []string{"n1abc"}, nil},
		{"role worker (zero)", KindNode, ByRole(api.NodeRole_NODE_ROLE_WORKER), []string{"n2abd"}, nil},
		{"membership", KindNode, ByMembership(api.NodeMembership_NODE_MEMBERSHIP_PENDING), []string{"n2abd"}, nil},
		{"service id", KindTask, ByServiceID("s1"), []string{"t1", "t2", "t3"}, nil},
		{"node id", KindTask, ByNodeID("n1abc"), []string{"t1", "t4"}, nil},
		{"slot", KindTask, BySlot("s1", 1), []string{"t1", "t2"}, nil},
		{"slot 2", KindTask, BySlot("s1", 2), []string{"t3"}, nil},
		{"desired state", KindTask, ByDesiredState(running), []string{"t1", "t3", "t4"}, nil},
		{"task state", KindTask, ByTaskState(running), []string{"t1"}, nil},
		{"task state new (zero)", KindTask, ByTaskState(api.TaskState_TASK_STATE_NEW), []string{"t3", "t4"}, nil},
		{"task generated name", KindTask, ByName("web.1.t1"), []string{"t1"}, nil},
		{"task name prefix", KindTask, ByNamePrefix("web.1."), []string{"t1", "t2"}, nil},
		{"task custom name", KindTask, ByName("Custom"), []string{"t4"}, nil},
		{"or", KindTask, Or(BySlot("s1", 2), ByNodeID("n2abd"), ByServiceID("s1")), []string{"t3", "t2", "t1"}, nil},
		{"or empty", KindTask, Or(), nil, nil},
		{"no match", KindService, ByName("nope"), nil, nil},
		{"invalid for kind", KindService, ByServiceID("s1"), nil, ErrInvalidFindBy},
		{"invalid inside or", KindNode, Or(ByName("alpha"), BySlot("s", 1)), nil, ErrInvalidFindBy},
		{"task state for nodes", KindNode, ByTaskState(running), nil, ErrInvalidFindBy},
		{"task state in or", KindTask, Or(ByTaskState(running), ByNodeID("n1abc")), []string{"t1", "t4"}, nil},
		{"nil selector", KindTask, nil, nil, ErrInvalidFindBy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.View(func(tx ReadTx) {
				objs, err := tx.Find(tt.kind, tt.by)
				if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				var ids []string
				for _, o := range objs {
					ids = append(ids, o.GetId())
				}
				if len(ids) != len(tt.want) {
					t.Fatalf("got %v, want %v", ids, tt.want)
				}
				for i := range ids {
					if ids[i] != tt.want[i] {
						t.Fatalf("got %v, want %v", ids, tt.want)
					}
				}
				if tt.err == nil {
					n, _ := Count(tx, tt.kind, tt.by)
					if n != len(tt.want) {
						t.Fatalf("Count %d, want %d", n, len(tt.want))
					}
				}
			})
		})
	}

	// Typed finders return the right types and agree with Find.
	s.View(func(tx ReadTx) {
		tasks, err := FindTasks(tx, ByServiceID("s1"))
		if err != nil || len(tasks) != 3 {
			t.Fatalf("FindTasks: %v %v", tasks, err)
		}
		nodes, _ := FindNodes(tx, All)
		services, _ := FindServices(tx, All)
		var names []string
		for _, n := range nodes {
			names = append(names, n.Id)
		}
		for _, sv := range services {
			names = append(names, sv.Spec.Annotations.Name)
		}
		sort.Strings(names)
		if len(names) != 5 {
			t.Fatalf("names %v", names)
		}
		for _, f := range []func() (int, error){
			func() (int, error) { x, err := FindNetworks(tx, All); return len(x), err },
			func() (int, error) { x, err := FindClusters(tx, All); return len(x), err },
			func() (int, error) { x, err := FindSecrets(tx, All); return len(x), err },
			func() (int, error) { x, err := FindConfigs(tx, All); return len(x), err },
		} {
			if n, err := f(); n != 0 || err != nil {
				t.Fatalf("empty kinds: %d %v", n, err)
			}
		}
	})
}

func TestTaskName(t *testing.T) {
	tests := []struct {
		task *api.Task
		want string
	}{
		{&api.Task{Id: "x", Annotations: &api.Annotations{Name: "mine"}}, "mine"},
		{&api.Task{Id: "x", Slot: 3, ServiceAnnotations: &api.Annotations{Name: "web"}}, "web.3.x"},
		{&api.Task{Id: "x", NodeId: "n", ServiceAnnotations: &api.Annotations{Name: "web"}}, "web.n.x"},
		{&api.Task{Id: "x", ServiceId: "sid", Slot: 1}, "sid.1.x"},
		{&api.Task{Id: "x"}, ""},
	}
	for _, tt := range tests {
		if got := TaskName(tt.task); got != tt.want {
			t.Errorf("TaskName(%v) = %q, want %q", tt.task, got, tt.want)
		}
	}
}

// TestIndexesInIDOrder: the task indexes by node, desired and observed
// state select exactly the objects with the value and return them in ID
// order, whatever the IDs' lengths and shared prefixes; the census counts
// the observed states.
func TestIndexesInIDOrder(t *testing.T) {
	ids := []string{"a", "ab", "abc", "abcd", "abcde", "abcdefgh", "abcdefghi", "abcdefgh0", "abcdX", "b", "\xff\xff\xff\xff\xff", "z"}
	s := NewMemoryStore(nil)
	defer s.Close()
	var want = map[string][]string{}
	var objs []api.StoreObject
	for i, id := range ids {
		node := []string{"n1", "n2"}[i%2]
		state := []api.TaskState{api.TaskState_TASK_STATE_PENDING, api.TaskState_TASK_STATE_RUNNING, api.TaskState_TASK_STATE_FAILED}[i%3]
		objs = append(objs, &api.Task{Id: id, ServiceId: "svc", Slot: uint64(i + 1), NodeId: node,
			DesiredState: api.TaskState_TASK_STATE_RUNNING, Status: &api.TaskStatus{State: state}})
		want["node "+node] = append(want["node "+node], id)
		want["state "+state.String()] = append(want["state "+state.String()], id)
		want["desired RUNNING"] = append(want["desired RUNNING"], id)
	}
	create(t, s, objs...)
	for _, w := range want {
		slices.Sort(w)
	}
	for _, tc := range []struct {
		name string
		by   By
	}{
		{"node n1", ByNodeID("n1")},
		{"node n2", ByNodeID("n2")},
		{"node n3", ByNodeID("n3")},
		{"state TASK_STATE_PENDING", ByTaskState(api.TaskState_TASK_STATE_PENDING)},
		{"state TASK_STATE_RUNNING", ByTaskState(api.TaskState_TASK_STATE_RUNNING)},
		{"state TASK_STATE_FAILED", ByTaskState(api.TaskState_TASK_STATE_FAILED)},
		{"state TASK_STATE_NEW", ByTaskState(api.TaskState_TASK_STATE_NEW)},
		{"desired RUNNING", ByDesiredState(api.TaskState_TASK_STATE_RUNNING)},
		{"desired SHUTDOWN", ByDesiredState(api.TaskState_TASK_STATE_SHUTDOWN)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			s.View(func(tx ReadTx) {
				_ = Each(tx, tc.by, func(task *api.Task) bool {
					got = append(got, task.GetId())
					return true
				})
			})
			if !slices.Equal(got, want[tc.name]) {
				t.Fatalf("%v selects %q, want %q", tc.by, got, want[tc.name])
			}
		})
	}
	c := s.Census()
	if c.Tasks[api.TaskState_TASK_STATE_PENDING] != 4 || c.Tasks[api.TaskState_TASK_STATE_RUNNING] != 4 || c.Tasks[api.TaskState_TASK_STATE_FAILED] != 4 {
		t.Fatalf("census %v", c.Tasks)
	}
}
