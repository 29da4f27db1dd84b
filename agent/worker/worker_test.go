package worker

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/openswarm/swarmd/agent/exec"
	"github.com/openswarm/swarmd/agent/exec/testexec"
	"github.com/openswarm/swarmd/api"
)

func TestTaskLifecycle(t *testing.T) {
	tests := []struct {
		name    string
		task    *api.Task
		hooks   testexec.Hooks
		act     func(n *node) // after the task got to its first resting state
		rest    api.TaskState // the first resting state
		want    api.TaskState
		wantErr string
		starts  int
	}{
		{name: "exit 0 completes", task: newTask("t1", stRunning),
			rest: stRunning, act: func(n *node) { _ = n.eng.Exit("t1", 0) }, want: stComplete, starts: 1},
		{name: "exit 1 fails", task: newTask("t1", stRunning),
			rest: stRunning, act: func(n *node) { _ = n.eng.Exit("t1", 1) }, want: stFailed, wantErr: "task: non-zero exit (1)", starts: 1},
		{name: "job exits at once", task: newTask("t1", stComplete),
			hooks: testexec.Hooks{Exit: func(*api.Task) (int, bool) { return 0, true }}, rest: stComplete, want: stComplete, starts: 1},
		{name: "missing image is rejected", task: withImage(newTask("t1", stRunning), "nope:1"),
			hooks: testexec.Hooks{Prepare: testexec.RejectImages("nope:1")}, rest: stRejected, want: stRejected, wantErr: "No such image: nope:1"},
		{name: "start failure fails", task: newTask("t1", stRunning),
			hooks: testexec.Hooks{Start: func(context.Context, *api.Task) error { return errors.New("port already allocated") }},
			rest:  stFailed, want: stFailed, wantErr: "port already allocated"},
		{name: "desired shutdown stops a running task", task: newTask("t1", stRunning),
			rest: stRunning, act: func(n *node) { n.update(upd(withDesired(newTask("t1", 0), stShutdown))) }, want: stShutdown, starts: 1},
		{name: "desired remove stops a running task", task: newTask("t1", stRunning),
			rest: stRunning, act: func(n *node) { n.update(upd(withDesired(newTask("t1", 0), stRemove))) }, want: stShutdown, starts: 1},
		{name: "ready waits for desired running", task: newTask("t1", stReady),
			rest: stReady, act: func(n *node) {
				if n.eng.Starts("t1") != 0 {
					n.t.Fatal("a task desired READY was started")
				}
				n.update(upd(withDesired(newTask("t1", 0), stRunning)))
			}, want: stRunning, starts: 1},
		{name: "ready task shut down is never started", task: newTask("t1", stReady),
			rest: stReady, act: func(n *node) { n.update(upd(withDesired(newTask("t1", 0), stShutdown))) }, want: stShutdown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, nil, "")
			n.eng.SetHooks(tc.hooks)
			n.assign(upd(tc.task))
			n.rec.waitState(t, "t1", tc.rest)
			if tc.act != nil {
				tc.act(n)
			}
			st := n.rec.waitState(t, "t1", tc.want)
			if st.GetErr() != tc.wantErr {
				t.Fatalf("err %q, want %q", st.GetErr(), tc.wantErr)
			}
			if st.GetTimestamp() == nil {
				t.Fatal("reported status has no timestamp")
			}
			if got := n.eng.Starts("t1"); got != tc.starts {
				t.Fatalf("started %d times, want %d", got, tc.starts)
			}
			states := n.rec.states("t1")
			if !slices.IsSorted(states) || len(slices.Compact(slices.Clone(states))) != len(states) {
				t.Fatalf("reported states do not only move forward: %v", states)
			}
			if got, _ := n.w.TaskStatus("t1"); got.GetState() != tc.want {
				t.Fatalf("worker holds %v", got.GetState())
			}
		})
	}
}

func TestReportsEveryStateInOrder(t *testing.T) {
	n := startNode(t, nil, "")
	n.assign(upd(newTask("t1", stRunning)))
	n.rec.waitState(t, "t1", stRunning)
	if got := n.rec.states("t1"); !slices.Equal(got, toRunning) {
		t.Fatalf("reported %v, want %v", got, toRunning)
	}
	if got := n.eng.Running(); !slices.Equal(got, []string{"t1"}) {
		t.Fatalf("running %v", got)
	}
	msgs := map[api.TaskState]string{stAccepted: "accepted", stPreparing: "preparing", stReady: "prepared", stStarting: "starting", stRunning: "started"}
	n.rec.mu.Lock()
	defer n.rec.mu.Unlock()
	for _, st := range n.rec.reports["t1"] {
		if st.GetMessage() != msgs[st.GetState()] {
			t.Errorf("state %v message %q, want %q", st.GetState(), st.GetMessage(), msgs[st.GetState()])
		}
	}
}

func TestShutdownInterruptsPrepare(t *testing.T) {
	n := startNode(t, nil, "")
	never := make(chan struct{})
	n.eng.SetHooks(testexec.Hooks{Prepare: testexec.Block(never)})
	n.assign(upd(newTask("t1", stRunning)))
	n.rec.waitState(t, "t1", stPreparing)
	n.update(upd(withDesired(newTask("t1", 0), stShutdown)))
	n.rec.waitState(t, "t1", stShutdown)
	if c := n.eng.Containers(); len(c) != 0 {
		t.Fatalf("containers %v", c)
	}
}

func TestTemporaryPrepareFailureIsRetried(t *testing.T) {
	n := startNode(t, nil, "")
	fails := 2
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	n.eng.SetHooks(testexec.Hooks{Prepare: func(context.Context, *api.Task) error {
		<-mu
		defer func() { mu <- struct{}{} }()
		if fails > 0 {
			fails--
			return exec.Temporary(errors.New("registry: i/o timeout"))
		}
		return nil
	}})
	n.assign(upd(newTask("t1", stRunning)))
	n.rec.waitState(t, "t1", stPreparing)
	for range 2 {
		// The task manager waits for its backoff on the fake clock.
		if err := n.clock.BlockUntilContext(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		n.clock.Advance(n.w.cfg.MaxRetry)
	}
	n.rec.waitState(t, "t1", stRunning)
	if got := n.rec.states("t1"); !slices.Equal(got, toRunning) {
		t.Fatalf("reported %v, want %v", got, toRunning)
	}
}

func TestRemoveRunningTask(t *testing.T) {
	n := startNode(t, nil, "")
	n.assign(upd(newTask("t1", stRunning)), upd(newTask("t2", stRunning)))
	n.rec.waitState(t, "t1", stRunning)
	n.rec.waitState(t, "t2", stRunning)

	n.update(rmv(&api.Task{Id: "t1"}))
	eventually(t, "t1 removed", func() bool { return !contains(n.w.Tasks(), "t1") })
	if c := n.eng.Containers(); !slices.Equal(c, []string{"t2"}) {
		t.Fatalf("containers %v, want [t2]", c)
	}
	if got := n.rec.states("t1"); got[len(got)-1] != stRunning {
		t.Fatalf("a removed task was reported: %v", got)
	}
	n.stop()
	stored := loadDB(t, n.dbPath)
	if len(stored) != 1 || stored[0].task.GetId() != "t2" {
		t.Fatalf("task db holds %v", stored)
	}
}

func TestCompleteSetReplacesEverything(t *testing.T) {
	n := startNode(t, nil, "")
	n.assign(upd(newTask("t1", stRunning)), upd(newTask("t2", stRunning)))
	n.rec.waitState(t, "t1", stRunning)
	n.rec.waitState(t, "t2", stRunning)
	// A new session: the manager sends everything again, t2 as it now
	// stands (status echoed, new version), t1 gone, t3 new.
	t2 := newTask("t2", stRunning)
	t2.Meta.Version.Index = 7
	t2.Status = n.rec.last("t2")
	n.assign(upd(t2), upd(newTask("t3", stRunning)))
	n.rec.waitState(t, "t3", stRunning)
	eventually(t, "t1 removed", func() bool { return slices.Equal(n.w.Tasks(), []string{"t2", "t3"}) })
	if c := n.eng.Containers(); !slices.Equal(c, []string{"t2", "t3"}) {
		t.Fatalf("containers %v", c)
	}
	if s := n.eng.Starts("t2"); s != 1 {
		t.Fatalf("t2 started %d times", s)
	}
}

func TestRemovedTerminalTaskIsCleanedUp(t *testing.T) {
	n := startNode(t, nil, "")
	n.assign(upd(newTask("t1", stRunning)))
	n.rec.waitState(t, "t1", stRunning)
	_ = n.eng.Exit("t1", 2)
	n.rec.waitState(t, "t1", stFailed)
	if c := n.eng.Containers(); len(c) != 1 {
		t.Fatalf("an exited task's container was removed before the manager let it go: %v", c)
	}
	n.update(rmv(&api.Task{Id: "t1"}))
	eventually(t, "t1 removed", func() bool { return len(n.w.Tasks()) == 0 && len(n.eng.Containers()) == 0 })
}

func TestSecretsStayInMemory(t *testing.T) {
	n := startNode(t, nil, "")
	secret := &api.Secret{Id: "s1", Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}, Data: []byte("hunter2-very-secret")}}
	config := &api.Config{Id: "c1", Spec: &api.ConfigSpec{Data: []byte("cfg")}}
	task := newTask("t1", stRunning)
	task.Spec.Container.Secrets = []*api.SecretReference{{SecretId: "s1", SecretName: "pw"}}
	n.assign(upd(secret), upd(config), upd(task))
	n.rec.waitState(t, "t1", stRunning)
	if s, ok := n.w.Secret("s1"); !ok || string(s.GetSpec().GetData()) != "hunter2-very-secret" {
		t.Fatalf("secret %v %v", s, ok)
	}
	if _, ok := n.w.Config("c1"); !ok {
		t.Fatal("config missing")
	}
	n.update(rmv(&api.Config{Id: "c1"}))
	if _, ok := n.w.Config("c1"); ok {
		t.Fatal("removed config still held")
	}
	n.assign(upd(task))
	if _, ok := n.w.Secret("s1"); ok {
		t.Fatal("a complete set without the secret kept it")
	}
	n.stop()
	raw, err := os.ReadFile(n.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("hunter2-very-secret")) {
		t.Fatal("secret data written to the task db")
	}
}

func TestUnconfirmedRestoredTaskIsNotStarted(t *testing.T) {
	// The first run gets t1 to STARTING and stops while starting it.
	eng := testexec.NewEngine()
	n := startNode(t, eng, "")
	never := make(chan struct{})
	eng.SetHooks(testexec.Hooks{Start: testexec.Block(never)})
	n.assign(upd(newTask("t1", stRunning)))
	n.rec.waitState(t, "t1", stStarting)
	n.stop()
	eng.SetHooks(testexec.Hooks{})

	n2 := startNode(t, eng, n.dbPath)
	n2.rec.waitState(t, "t1", stStarting) // re-reported
	if s := eng.Starts("t1"); s != 0 {
		t.Fatalf("started %d times before the manager confirmed the task", s)
	}
	n2.assign(upd(newTask("t1", stRunning)))
	n2.rec.waitState(t, "t1", stRunning)
	if s := eng.Starts("t1"); s != 1 {
		t.Fatalf("started %d times", s)
	}
}

func TestRestartReadoptsTasks(t *testing.T) {
	eng := testexec.NewEngine()
	n := startNode(t, eng, "")
	n.assign(upd(newTask("keeps", stRunning)), upd(newTask("exits", stRunning)),
		upd(newTask("gone", stRunning)), upd(newTask("waits", stReady)))
	for _, id := range []string{"keeps", "exits", "gone"} {
		n.rec.waitState(t, id, stRunning)
	}
	n.rec.waitState(t, "waits", stReady)
	n.stop()
	if got := eng.Running(); !slices.Equal(got, []string{"exits", "gone", "keeps"}) {
		t.Fatalf("stopping the worker stopped tasks: running %v", got)
	}

	// While the worker is down, one task exits.
	if err := eng.Exit("exits", 3); err != nil {
		t.Fatal(err)
	}

	n2 := startNode(t, eng, n.dbPath)
	st := n2.rec.waitState(t, "exits", stFailed)
	if st.GetErr() != "task: non-zero exit (3)" || st.GetContainer().GetExitCode() != 3 {
		t.Fatalf("exited task reported %v", st)
	}
	n2.rec.waitState(t, "keeps", stRunning)
	n2.rec.waitState(t, "waits", stReady)

	// The manager's complete set: "gone" is no longer assigned.
	n2.assign(upd(newTask("keeps", stRunning)), upd(newTask("exits", stRunning)), upd(newTask("waits", stReady)))
	eventually(t, "gone removed", func() bool { return !contains(eng.Containers(), "gone") })
	if err := eng.Exit("keeps", 0); err != nil {
		t.Fatal(err)
	}
	n2.rec.waitState(t, "keeps", stComplete)
	for _, id := range []string{"keeps", "exits"} {
		if s := eng.Starts(id); s != 1 {
			t.Fatalf("%s started %d times", id, s)
		}
	}
	if s := eng.Starts("waits"); s != 0 {
		t.Fatalf("waits started %d times", s)
	}
}

func TestRestoredTaskDesiredShutdownIsStopped(t *testing.T) {
	eng := testexec.NewEngine()
	n := startNode(t, eng, "")
	n.assign(upd(newTask("t1", stRunning)))
	n.rec.waitState(t, "t1", stRunning)
	n.stop()

	// The manager raised the desired state to SHUTDOWN and the DB got it
	// just before the worker went down: the next run stops the task
	// without waiting for the manager to confirm it.
	n.storeTask(t, withDesired(newTask("t1", 0), stShutdown))
	n2 := startNode(t, eng, n.dbPath)
	n2.rec.waitState(t, "t1", stShutdown)
	if got := eng.Running(); len(got) != 0 {
		t.Fatalf("running %v", got)
	}
}

// storeTask writes task into the (closed) task DB, as an earlier run would
// have.
func (n *node) storeTask(t *testing.T, task *api.Task) {
	t.Helper()
	db, err := openBoltDB(n.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.close()
	if err := db.putTasks([]*api.Task{task}); err != nil {
		t.Fatal(err)
	}
}

func TestAssignAfterStop(t *testing.T) {
	n := startNode(t, nil, "")
	n.stop()
	if err := n.w.Assign(context.Background(), nil); !errors.Is(err, ErrStopped) {
		t.Fatalf("Assign after stop: %v", err)
	}
}

func loadDB(t *testing.T, path string) []storedTask {
	t.Helper()
	db, err := openBoltDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.close()
	s, err := db.load()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
