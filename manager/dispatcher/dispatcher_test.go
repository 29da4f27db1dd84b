package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func seedNode(id string, state api.NodeStatus_State) *api.Node {
	n := newNode(id)
	n.Status = &api.NodeStatus{State: state, Addr: "127.0.0.1"}
	return n
}

func seedNodes(nodes ...*api.Node) func(tx store.Tx) error {
	return func(tx store.Tx) error {
		for _, n := range nodes {
			if err := tx.Create(n); err != nil {
				return err
			}
		}
		return nil
	}
}

const grace = DefaultHeartbeatPeriod * DefaultGracePeriodMultiplier

func TestSessionRegistersNode(t *testing.T) {
	managers := []*api.WeightedPeer{{NodeId: "m1", Addr: "10.0.0.1:4242", Weight: 10}}
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN)), func(c *Config) {
		c.Managers = func() []*api.WeightedPeer { return managers }
	})
	a := h.connect("n1", &api.NodeDescription{Hostname: "host-1"})
	if a.session == "" {
		t.Fatal("no session ID in the first message")
	}
	n := a.first.GetNode()
	if n.GetId() != "n1" || n.GetStatus().GetState() != api.NodeStatus_READY || n.GetStatus().GetAddr() != "127.0.0.1" ||
		n.GetDescription().GetHostname() != "host-1" {
		t.Fatalf("first message node %v", n)
	}
	if len(a.first.GetManagers()) != 1 || a.first.GetManagers()[0].GetAddr() != "10.0.0.1:4242" {
		t.Fatalf("first message managers %v", a.first.GetManagers())
	}
	stored := h.node("n1")
	if stored.GetStatus().GetState() != api.NodeStatus_READY || stored.GetDescription().GetHostname() != "host-1" {
		t.Fatalf("stored node %v", stored)
	}
}

func TestSessionCreatesMissingNode(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.connect("fresh", &api.NodeDescription{Hostname: "h"})
	n := h.node("fresh")
	if n == nil || n.GetStatus().GetState() != api.NodeStatus_READY || n.GetSpec().GetMembership() != api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED {
		t.Fatalf("created node %v", n)
	}
}

func TestSessionRefusesRemovedNode(t *testing.T) {
	h := newHarness(t, func(tx store.Tx) error {
		return tx.Create(&api.Cluster{Id: "c1", Spec: &api.ClusterSpec{Annotations: &api.Annotations{Name: "default"}}, BlacklistedCertificates: []string{"gone"}})
	}, nil)
	_, err := h.tryConnect("gone", nil)
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("removed node's session: %v, want PermissionDenied", err)
	}
	if h.node("gone") != nil {
		t.Fatal("removed node was recreated")
	}
}

func TestSessionRequiresIdentity(t *testing.T) {
	h := newHarness(t, nil, nil)
	stream, err := h.client.Session(h.ctx, &api.SessionRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("session without identity: %v", err)
	}
}

func TestNewSessionReplacesOld(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN)), nil)
	a1 := h.connect("n1", nil)
	as1 := a1.assignments()
	as1.next()
	a2 := h.connect("n1", nil)
	if a2.session == a1.session {
		t.Fatal("same session ID twice")
	}
	if c := a1.waitEnded(); c != codes.Aborted {
		t.Fatalf("old session ended with %v, want Aborted", c)
	}
	if err := as1.waitEnded(); status.Code(err) != codes.Aborted {
		t.Fatalf("old assignments stream ended with %v", err)
	}
	if _, err := a1.heartbeat(); status.Code(err) != codes.NotFound {
		t.Fatalf("heartbeat on the old session: %v, want NotFound", err)
	}
	if _, err := a2.heartbeat(); err != nil {
		t.Fatalf("heartbeat on the new session: %v", err)
	}
}

func TestHeartbeat(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN), seedNode("n2", api.NodeStatus_UNKNOWN)), nil)
	a := h.connect("n1", nil)
	resp, err := a.heartbeat()
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.GetPeriod().AsDuration(); p > DefaultHeartbeatPeriod || p < DefaultHeartbeatPeriod*95/100 {
		t.Fatalf("period %v, want about %v", p, DefaultHeartbeatPeriod)
	}
	if _, err := h.client.Heartbeat(h.as("n1"), &api.HeartbeatRequest{SessionId: "bogus"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown session: %v", err)
	}
	// Another node cannot heartbeat on n1's session.
	if _, err := h.client.Heartbeat(h.as("n2"), &api.HeartbeatRequest{SessionId: a.session}); status.Code(err) != codes.NotFound {
		t.Fatalf("n2 on n1's session: %v", err)
	}
}

func TestHeartbeatPeriodFromCluster(t *testing.T) {
	h := newHarness(t, func(tx store.Tx) error {
		return tx.Create(&api.Cluster{Id: "c1", Spec: &api.ClusterSpec{
			Annotations: &api.Annotations{Name: "default"},
			Dispatcher:  &api.DispatcherConfig{HeartbeatPeriod: durationpb.New(2 * time.Second)},
		}})
	}, nil)
	a := h.connect("n1", nil)
	resp, err := a.heartbeat()
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.GetPeriod().AsDuration(); p > 2*time.Second || p < 1900*time.Millisecond {
		t.Fatalf("period %v, want about 2s", p)
	}
	h.update(func(tx store.Tx) error {
		c := store.GetCluster(tx, "c1")
		c.Spec.Dispatcher.HeartbeatPeriod = durationpb.New(7 * time.Second)
		return tx.Update(c)
	})
	h.eventually("new period", func() bool {
		resp, err := a.heartbeat()
		return err == nil && resp.GetPeriod().AsDuration() > 6*time.Second
	})
}

func TestMissedHeartbeatsMarkNodeDown(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN), seedNode("n2", api.NodeStatus_UNKNOWN)), nil)
	a1 := h.connect("n1", nil)
	a2 := h.connect("n2", nil)
	// n1 heartbeats every period, n2 never does.
	for range 4 {
		h.clock.Advance(DefaultHeartbeatPeriod)
		if _, err := a1.heartbeat(); err != nil {
			t.Fatal(err)
		}
	}
	h.eventually("n2 down", func() bool { return h.nodeState("n2") == api.NodeStatus_DOWN })
	if m := h.node("n2").GetStatus().GetMessage(); m != "heartbeat failure" {
		t.Fatalf("down message %q", m)
	}
	if c := a2.waitEnded(); c != codes.Aborted {
		t.Fatalf("expired session ended with %v", c)
	}
	if _, err := a2.heartbeat(); status.Code(err) != codes.NotFound {
		t.Fatalf("heartbeat after expiry: %v", err)
	}
	if s := h.nodeState("n1"); s != api.NodeStatus_READY {
		t.Fatalf("n1 is %v", s)
	}
	// n2 comes back.
	h.connect("n2", nil)
	if s := h.nodeState("n2"); s != api.NodeStatus_READY {
		t.Fatalf("n2 after reconnecting is %v", s)
	}
}

func TestDisconnectedNodeGoesDownAfterGrace(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN)), nil)
	a := h.connect("n1", nil)
	a.cancel() // the agent goes away without a word
	h.eventually("session gone", func() bool { return h.d.run.reg.session("n1") == nil })
	h.clock.Advance(grace - time.Second)
	if s := h.nodeState("n1"); s != api.NodeStatus_READY {
		t.Fatalf("n1 is %v before the grace period ended", s)
	}
	h.clock.Advance(2 * time.Second)
	h.eventually("n1 down", func() bool { return h.nodeState("n1") == api.NodeStatus_DOWN })
}

// TestLivenessAcrossLeaderChange is swarmkit#2293: a new leader's
// dispatcher must give the nodes the store calls READY a full grace period
// to reconnect, and mark only the silent ones DOWN.
func TestLivenessAcrossLeaderChange(t *testing.T) {
	h := newHarness(t, seedNodes(
		seedNode("n1", api.NodeStatus_READY),
		seedNode("n2", api.NodeStatus_READY),
		seedNode("n3", api.NodeStatus_READY),
		seedNode("n4", api.NodeStatus_DOWN),
	), nil)
	commits := h.countCommits()

	h.clock.Advance(grace - 5*time.Second)
	for _, id := range []string{"n1", "n2", "n3"} {
		if s := h.nodeState(id); s != api.NodeStatus_READY {
			t.Fatalf("%s is %v before its grace period ended", id, s)
		}
	}
	// n1 and n2 reach the new leader; n3 never does.
	a1 := h.connect("n1", nil)
	a2 := h.connect("n2", nil)
	for _, a := range []*agent{a1, a2} {
		if s := a.first.GetNode().GetStatus().GetState(); s != api.NodeStatus_READY {
			t.Fatalf("%s is %v after reconnecting", a.node, s)
		}
	}
	if n := commits(); n != 0 {
		t.Fatalf("%d store writes for nodes that were already READY at the same address", n)
	}
	h.clock.Advance(4 * time.Second)
	for _, id := range []string{"n1", "n2", "n3"} {
		if s := h.nodeState(id); s != api.NodeStatus_READY {
			t.Fatalf("%s is %v before its grace period ended", id, s)
		}
	}
	for _, a := range []*agent{a1, a2} {
		if _, err := a.heartbeat(); err != nil {
			t.Fatal(err)
		}
	}
	h.clock.Advance(2 * time.Second) // past n3's grace
	h.eventually("n3 down", func() bool { return h.nodeState("n3") == api.NodeStatus_DOWN })
	for _, id := range []string{"n1", "n2"} {
		if s := h.nodeState(id); s != api.NodeStatus_READY {
			t.Fatalf("%s is %v", id, s)
		}
	}
	if s := h.node("n4").GetStatus(); s.GetState() != api.NodeStatus_DOWN || s.GetMessage() != "" {
		t.Fatalf("n4 (down before) is %v", s)
	}
}

// countCommits counts the store's commits from now on.
func (h *harness) countCommits() func() int {
	ch, cancel := h.store.Watch(func(e store.Event) bool { return e.Action == store.EventCommit })
	h.t.Cleanup(cancel)
	return func() int {
		n := 0
		for {
			select {
			case <-ch:
				n++
			default:
				return n
			}
		}
	}
}

func TestSessionStreamsNodeAndManagerChanges(t *testing.T) {
	var mu sync.Mutex
	managers := []*api.WeightedPeer{{NodeId: "m1", Addr: "10.0.0.1:4242", Weight: 10}}
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN)), func(c *Config) {
		c.Managers = func() []*api.WeightedPeer {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(managers)
		}
	})
	a := h.connect("n1", nil)
	h.update(func(tx store.Tx) error {
		n := store.GetNode(tx, "n1")
		n.Spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN
		return tx.Update(n)
	})
	for {
		m := a.next()
		if m.GetNode().GetSpec().GetAvailability() == api.NodeAvailability_NODE_AVAILABILITY_DRAIN {
			if m.GetSessionId() != a.session {
				t.Fatalf("session ID %q in an update", m.GetSessionId())
			}
			break
		}
	}
	mu.Lock()
	managers = append(managers, &api.WeightedPeer{NodeId: "m2", Addr: "10.0.0.2:4242", Weight: 1})
	mu.Unlock()
	h.clock.Advance(DefaultHeartbeatPeriod)
	for {
		if m := a.next(); len(m.GetManagers()) == 2 {
			break
		}
	}
}

func TestNodeRemovedEndsSession(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN)), nil)
	a := h.connect("n1", nil)
	h.update(func(tx store.Tx) error { return store.DeleteNode(tx, "n1") })
	if c := a.waitEnded(); c != codes.PermissionDenied {
		t.Fatalf("session of a removed node ended with %v", c)
	}
}

func TestNotLeader(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.LeaderAddr = func() string { return "10.0.0.7:4242" } })
	h.d.Stop()
	if err := <-h.runErr; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	var trailer metadata.MD
	_, err := h.client.Heartbeat(h.as("n1"), &api.HeartbeatRequest{SessionId: "x"}, grpc.Trailer(&trailer))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("heartbeat on a stopped dispatcher: %v", err)
	}
	if got := trailer.Get(LeaderTrailer); len(got) != 1 || got[0] != "10.0.0.7:4242" {
		t.Fatalf("leader trailer %v", got)
	}
}

func TestStopEndsSessionsAndRunRestarts(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN)), nil)
	a := h.connect("n1", nil)
	as := a.assignments()
	as.next()
	h.d.Stop()
	if c := a.waitEnded(); c != codes.Unavailable {
		t.Fatalf("session ended with %v on Stop", c)
	}
	if err := as.waitEnded(); status.Code(err) != codes.Unavailable {
		t.Fatalf("assignments ended with %v on Stop", err)
	}
	if err := <-h.runErr; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if s := h.nodeState("n1"); s != api.NodeStatus_READY {
		t.Fatalf("Stop changed n1 to %v", s)
	}
	// A new term: the old session is gone, a new one works.
	h.start()
	if _, err := a.heartbeat(); status.Code(err) != codes.NotFound {
		t.Fatalf("old session after restart: %v", err)
	}
	b := h.connect("n1", nil)
	if _, err := b.heartbeat(); err != nil {
		t.Fatal(err)
	}
}

func assignedTask(id, node string, desired, observed api.TaskState) *api.Task {
	return &api.Task{
		Id: id, NodeId: node, ServiceId: "svc", DesiredState: desired,
		Status: &api.TaskStatus{State: observed},
		Spec:   &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox"}},
	}
}

func createAll(objs ...api.StoreObject) func(tx store.Tx) error {
	return func(tx store.Tx) error {
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestAssignments(t *testing.T) {
	sec := &api.Secret{Id: "s1", Spec: &api.SecretSpec{Annotations: &api.Annotations{Name: "pw"}, Data: []byte("hunter2")}}
	cfg := &api.Config{Id: "c1", Spec: &api.ConfigSpec{Annotations: &api.Annotations{Name: "conf"}, Data: []byte("x=1")}}
	withSecret := assignedTask("t2", "n1", stRunning, stRunning)
	withSecret.Spec.Container.Secrets = []*api.SecretReference{{SecretId: "s1", SecretName: "pw"}}
	withSecret.Spec.Container.Configs = []*api.ConfigReference{{ConfigId: "c1", ConfigName: "conf"}}
	h := newHarness(t, createAll(
		seedNode("n1", api.NodeStatus_UNKNOWN), sec, cfg,
		assignedTask("t1", "n1", stRunning, stAssigned),
		withSecret,
		assignedTask("t3", "n1", stShutdown, stRunning),  // still to shut down
		assignedTask("t4", "n1", stShutdown, stShutdown), // done
		assignedTask("t5", "n2", stRunning, stRunning),   // elsewhere
		assignedTask("t6", "", stRunning, stPending),     // unscheduled
	), nil)
	a := h.connect("n1", nil)
	as := a.assignments()

	complete := as.next()
	if complete.typ != api.AssignmentsMessage_COMPLETE || complete.appliesTo != "" || complete.resultsIn == "" {
		t.Fatalf("first change set %v %q %q", complete.typ, complete.appliesTo, complete.resultsIn)
	}
	want := []string{"update secret s1", "update config c1", "update task t1", "update task t2", "update task t3"}
	if got := stripVersions(describe(complete.changes)); !slices.Equal(got, want) {
		t.Fatalf("complete set %q, want %q", got, want)
	}
	if s := complete.changes[0].GetAssignment().GetSecret(); string(s.GetSpec().GetData()) != "hunter2" {
		t.Fatalf("secret %v", s)
	}

	// The scheduler assigns t6 to n1.
	h.update(func(tx store.Tx) error {
		t6 := store.GetTask(tx, "t6")
		t6.NodeId = "n1"
		t6.Status = &api.TaskStatus{State: stAssigned}
		return tx.Update(t6)
	})
	inc := as.next()
	if inc.typ != api.AssignmentsMessage_INCREMENTAL || inc.appliesTo != complete.resultsIn || inc.resultsIn == inc.appliesTo {
		t.Fatalf("incremental %v applies to %q results in %q after %q", inc.typ, inc.appliesTo, inc.resultsIn, complete.resultsIn)
	}
	if got := stripVersions(describe(inc.changes)); !slices.Equal(got, []string{"update task t6"}) {
		t.Fatalf("after assigning t6: %q", got)
	}

	// A secret in use changes.
	h.update(func(tx store.Tx) error {
		s1 := store.GetSecret(tx, "s1")
		s1.Spec.Annotations.Labels = map[string]string{"rotated": "yes"}
		return tx.Update(s1)
	})
	inc = as.next()
	if got := stripVersions(describe(inc.changes)); !slices.Equal(got, []string{"update secret s1"}) {
		t.Fatalf("after updating s1: %q", got)
	}

	// t3 shuts down as asked, t2 is stopped and removed: both leave, and
	// with t2 its secret and config.
	h.update(func(tx store.Tx) error {
		t3 := store.GetTask(tx, "t3")
		t3.Status = &api.TaskStatus{State: stShutdown}
		if err := tx.Update(t3); err != nil {
			return err
		}
		return store.DeleteTask(tx, "t2")
	})
	var got []string
	prev := inc.resultsIn
	for len(got) < 4 {
		cs := as.next()
		if cs.appliesTo != prev {
			t.Fatalf("change set applies to %q, want %q", cs.appliesTo, prev)
		}
		prev = cs.resultsIn
		got = append(got, describe(cs.changes)...)
	}
	// t2's secret and config leave with or after it; t3 may come first,
	// in a change set of its own.
	if i, j := slices.Index(got, "remove task t2"), slices.Index(got, "remove secret s1"); i < 0 || j < i {
		t.Fatalf("after shutdown and delete: %q: the secret left before its task", got)
	}
	slices.Sort(got)
	if want := []string{"remove config c1", "remove secret s1", "remove task t2", "remove task t3"}; !slices.Equal(got, want) {
		t.Fatalf("after shutdown and delete: %q, want %q", got, want)
	}

	// Changes elsewhere send nothing; the next change set is t1's.
	h.update(func(tx store.Tx) error {
		t5 := store.GetTask(tx, "t5")
		t5.Status = &api.TaskStatus{State: stFailed}
		return tx.Update(t5)
	})
	h.update(func(tx store.Tx) error {
		t1 := store.GetTask(tx, "t1")
		t1.DesiredState = stShutdown
		return tx.Update(t1)
	})
	if got := stripVersions(describe(as.next().changes)); !slices.Equal(got, []string{"update task t1"}) {
		t.Fatalf("after t1's desired state changed: %q", got)
	}
}

func stripVersions(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		if j := len(x) - 1; j > 0 {
			for k := len(x) - 1; k >= 0; k-- {
				if x[k] == '@' {
					x = x[:k]
					break
				}
			}
		}
		out[i] = x
	}
	return out
}

func TestAssignmentsRequireTheSession(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN), seedNode("n2", api.NodeStatus_UNKNOWN)), nil)
	a := h.connect("n1", nil)
	stream, err := h.client.Assignments(h.as("n2"), &api.AssignmentsRequest{SessionId: a.session})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.NotFound {
		t.Fatalf("n2 reading n1's assignments: %v", err)
	}
}

func TestAssignmentsPaged(t *testing.T) {
	const tasks = 60
	var objs []api.StoreObject
	objs = append(objs, seedNode("n1", api.NodeStatus_UNKNOWN))
	for i := range tasks {
		task := assignedTask(fmt.Sprintf("t%03d", i), "n1", stRunning, stAssigned)
		task.Spec.Container.Env = []string{"BIG=" + string(make([]byte, 1000))}
		objs = append(objs, task)
	}
	h := newHarness(t, createAll(objs...), func(c *Config) { c.MaxMessageBytes = 8 << 10 })
	a := h.connect("n1", nil)
	as := a.assignments()
	cs := as.next()
	if len(cs.changes) != tasks {
		t.Fatalf("complete set of %d changes, want %d", len(cs.changes), tasks)
	}
	if cs.pages < tasks*1000/(8<<10) {
		t.Fatalf("%d pages for %d KiB", cs.pages, tasks)
	}
	// A burst too large for one message is paged too.
	h.update(func(tx store.Tx) error {
		for i := range tasks {
			task := store.GetTask(tx, fmt.Sprintf("t%03d", i))
			task.Spec.Container.Env = []string{"BIG=" + string(make([]byte, 1001))}
			if err := tx.Update(task); err != nil {
				return err
			}
		}
		return nil
	})
	n := 0
	for n < tasks {
		cs := as.next()
		n += len(cs.changes)
	}
}

// TestAssignmentsBatchBursts: changes arriving within the batch delay
// leave in one change set.
func TestAssignmentsBatchBursts(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN)), func(c *Config) {
		c.AssignmentBatchDelay = 50 * time.Millisecond
	})
	a := h.connect("n1", nil)
	as := a.assignments()
	if cs := as.next(); len(cs.changes) != 0 {
		t.Fatalf("complete set %v", cs.changes)
	}
	const burst = 20
	for i := range burst {
		h.update(createAll(assignedTask(fmt.Sprintf("t%d", i), "n1", stRunning, stAssigned)))
	}
	var st *assignStream
	h.eventually("burst marked", func() bool {
		h.d.run.hub.mu.Lock()
		defer h.d.run.hub.mu.Unlock()
		for s := range h.d.run.hub.streams["n1"] {
			st = s
		}
		if st == nil {
			return false
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		return len(st.d.tasks) == burst
	})
	select {
	case cs := <-as.sets:
		t.Fatalf("change set before the batch delay: %v", describe(cs.changes))
	default:
	}
	h.advanceUntil("change set", 50*time.Millisecond, func() bool { return len(as.sets) > 0 })
	if cs := as.next(); len(cs.changes) != burst {
		t.Fatalf("burst sent as %d changes, want %d in one change set", len(cs.changes), burst)
	}
}

func TestUpdateTaskStatus(t *testing.T) {
	h := newHarness(t, createAll(
		seedNode("n1", api.NodeStatus_UNKNOWN), seedNode("n2", api.NodeStatus_UNKNOWN),
		assignedTask("t1", "n1", stRunning, stAssigned),
		assignedTask("t2", "n2", stRunning, stAssigned),
	), nil)
	a := h.connect("n1", nil)
	report := func(id string, s api.TaskState, msg string) error {
		_, err := h.client.UpdateTaskStatus(h.as("n1"), &api.UpdateTaskStatusRequest{SessionId: a.session,
			Updates: []*api.UpdateTaskStatusRequest_TaskStatusUpdate{{TaskId: id, Status: &api.TaskStatus{State: s, Message: msg}}}})
		return err
	}
	if err := report("t1", stRunning, "started"); err != nil {
		t.Fatal(err)
	}
	// Acknowledged means applied.
	st := h.task("t1").GetStatus()
	if st.GetState() != stRunning || st.GetMessage() != "started" || st.GetTimestamp() == nil {
		t.Fatalf("t1 status %v", st)
	}
	if err := report("t1", stAccepted, "late"); err != nil {
		t.Fatal(err)
	}
	if s := h.task("t1").GetStatus().GetState(); s != stRunning {
		t.Fatalf("t1 moved back to %v", s)
	}
	if err := report("t2", stRunning, ""); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("reporting another node's task: %v", err)
	}
	if s := h.task("t2").GetStatus().GetState(); s != stAssigned {
		t.Fatalf("t2 changed to %v", s)
	}
	if err := report("gone", stRunning, ""); err != nil {
		t.Fatalf("reporting a deleted task: %v", err)
	}
	if _, err := h.client.UpdateTaskStatus(h.as("n1"), &api.UpdateTaskStatusRequest{SessionId: "bogus"}); status.Code(err) != codes.NotFound {
		t.Fatalf("bad session: %v", err)
	}
}

// TestUpdateTaskStatusBatched: many nodes reporting at once make one store
// write.
func TestUpdateTaskStatusBatched(t *testing.T) {
	const nodes = 50
	var objs []api.StoreObject
	for i := range nodes {
		id := fmt.Sprintf("n%d", i)
		objs = append(objs, seedNode(id, api.NodeStatus_UNKNOWN), assignedTask("t"+id, id, stRunning, stAssigned))
	}
	h := newHarness(t, createAll(objs...), func(c *Config) { c.StatusBatchDelay = 100 * time.Millisecond })
	agents := make([]*agent, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := h.tryConnect(fmt.Sprintf("n%d", i), nil)
			if err != nil {
				t.Error(err)
				return
			}
			agents[i] = a
		}()
	}
	// The registrations wait for a flush too.
	h.eventually("registrations queued", func() bool {
		h.d.run.w.mu.Lock()
		defer h.d.run.w.mu.Unlock()
		return len(h.d.run.w.nodes) == nodes
	})
	commits := h.countCommits()
	var connected atomic.Int32
	go func() { wg.Wait(); connected.Store(1) }()
	h.advanceUntil("sessions", 100*time.Millisecond, func() bool { return connected.Load() == 1 })
	if t.Failed() {
		t.FailNow()
	}
	if n := commits(); n != 1 {
		t.Fatalf("%d registrations took %d store writes, want 1", nodes, n)
	}

	errs := make(chan error, nodes)
	for _, a := range agents {
		go func() {
			_, err := h.client.UpdateTaskStatus(h.as(a.node), &api.UpdateTaskStatusRequest{SessionId: a.session,
				Updates: []*api.UpdateTaskStatusRequest_TaskStatusUpdate{{TaskId: "t" + a.node, Status: &api.TaskStatus{State: stRunning}}}})
			errs <- err
		}()
	}
	h.eventually("reports queued", func() bool {
		h.d.run.w.mu.Lock()
		defer h.d.run.w.mu.Unlock()
		return len(h.d.run.w.tasks) == nodes
	})
	h.advanceUntil("answers", 100*time.Millisecond, func() bool { return len(errs) == nodes })
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := commits(); n != 1 {
		t.Fatalf("%d reports took %d store writes, want 1", nodes, n)
	}
	for _, a := range agents {
		if s := h.task("t" + a.node).GetStatus().GetState(); s != stRunning {
			t.Fatalf("t%s is %v", a.node, s)
		}
	}
}

func TestRunTwiceFails(t *testing.T) {
	h := newHarness(t, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.d.Run(ctx); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestStoreClosedStopsRun(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.store.Close()
	select {
	case err := <-h.runErr:
		if err == nil {
			t.Fatal("Run returned nil after the store's watch closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the store's watch closed")
	}
}

// TestAssignmentsConverge: an agent that opens its stream while the store
// changes all the time ends up holding exactly what it needs — nothing is
// lost between the snapshot and the watch, nothing is applied out of order.
func TestAssignmentsConverge(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_UNKNOWN)), func(c *Config) {
		c.MaxMessageBytes = 2 << 10
	})
	a := h.connect("n1", nil)
	const writes = 400
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		ctx := context.Background()
		for i := range writes {
			if i == writes/4 {
				close(started)
			}
			err := h.store.Update(ctx, func(tx store.Tx) error {
				id := fmt.Sprintf("t%03d", i)
				node := "n1"
				if i%7 == 0 {
					node = "n2"
				}
				if err := tx.Create(assignedTask(id, node, stRunning, stAssigned)); err != nil {
					return err
				}
				switch {
				case i%5 == 1:
					return store.DeleteTask(tx, fmt.Sprintf("t%03d", i-1))
				case i%3 == 2:
					old := store.GetTask(tx, fmt.Sprintf("t%03d", i-2))
					if old == nil {
						return nil
					}
					old.DesiredState = stShutdown
					old.Status = &api.TaskStatus{State: stShutdown}
					return tx.Update(old)
				case i%4 == 3:
					old := store.GetTask(tx, fmt.Sprintf("t%03d", i-3))
					if old == nil {
						return nil
					}
					old.Status = &api.TaskStatus{State: stRunning}
					return tx.Update(old)
				}
				return nil
			})
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	<-started
	as := a.assignments()
	held := map[string]*api.Task{}
	prev := ""
	apply := func(cs changeSet) {
		if cs.typ == api.AssignmentsMessage_COMPLETE {
			clear(held)
		} else if cs.appliesTo != prev {
			t.Fatalf("change set applies to %q after %q", cs.appliesTo, prev)
		}
		prev = cs.resultsIn
		for _, c := range cs.changes {
			task := c.GetAssignment().GetTask()
			if c.GetAction() == api.AssignmentChange_REMOVE {
				if _, ok := held[task.GetId()]; !ok {
					t.Fatalf("remove of %s, not held", task.GetId())
				}
				delete(held, task.GetId())
				continue
			}
			if h, ok := held[task.GetId()]; ok && versionOf(h) >= versionOf(task) {
				t.Fatalf("%s went from version %d to %d", task.GetId(), versionOf(h), versionOf(task))
			}
			held[task.GetId()] = task
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := map[string]*api.Task{}
	h.store.View(func(tx store.ReadTx) {
		tasks, _ := store.FindTasks(tx, store.All)
		for _, task := range tasks {
			if needsTask("n1", task) {
				want[task.GetId()] = task
			}
		}
	})
	// The agent holds every task it needs, as the store has it but for
	// the states the agent reported itself.
	holds := func() bool {
		return maps.EqualFunc(held, want, func(h, w *api.Task) bool {
			return versionOf(h) == versionOf(w) || reportedOnly(h, w)
		})
	}
	for !holds() {
		apply(as.next())
	}
}

func TestFailedDownWriteIsRetried(t *testing.T) {
	h := newHarness(t, seedNodes(seedNode("n1", api.NodeStatus_READY)), nil)
	r := h.d.run
	r.reg.mu.Lock()
	r.reg.live.forget("n1") // as a sweep does
	r.reg.mu.Unlock()
	failed := newFlushGen()
	failed.err = errors.New("proposal dropped")
	close(failed.done)
	r.retryDown(failed, []string{"n1"})
	h.clock.Advance(DefaultHeartbeatPeriod + time.Second)
	h.eventually("n1 down", func() bool { return h.nodeState("n1") == api.NodeStatus_DOWN })
}
