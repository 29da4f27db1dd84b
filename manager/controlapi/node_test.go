package controlapi

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"google.golang.org/grpc/codes"
)

const (
	manager = api.NodeRole_NODE_ROLE_MANAGER
	worker  = api.NodeRole_NODE_ROLE_WORKER
	ready   = api.NodeStatus_READY
	down    = api.NodeStatus_DOWN
)

// threeManagers: m1 (leader), m2, m3 managers, w1 worker, all ready.
func threeManagers(t *testing.T) (*Server, *store.MemoryStore, *fakeRaft) {
	t.Helper()
	raft := &fakeRaft{leader: 1}
	s, st := newTestServer(t, raft)
	put(t, st,
		testNode("m1aaaaaaaaaaaaaaaaaaaaaaa", "host-m1", manager, ready),
		testNode("m2bbbbbbbbbbbbbbbbbbbbbbb", "host-m2", manager, ready),
		testNode("m3ccccccccccccccccccccccc", "host-m3", manager, ready),
		testNode("w1ddddddddddddddddddddddd", "host-w1", worker, ready),
	)
	raft.add(1, "m1aaaaaaaaaaaaaaaaaaaaaaa")
	raft.add(2, "m2bbbbbbbbbbbbbbbbbbbbbbb")
	raft.add(3, "m3ccccccccccccccccccccccc")
	return s, st, raft
}

func getNode(t *testing.T, s *Server, id string) *api.Node {
	t.Helper()
	resp, err := s.GetNode(context.Background(), &api.GetNodeRequest{NodeId: id})
	mustOK(t, err)
	return resp.GetNode()
}

func TestGetNodeResolvesAndFillsManagerStatus(t *testing.T) {
	s, _, raft := threeManagers(t)
	raft.unreachable = map[uint64]bool{3: true}
	ctx := context.Background()

	for _, input := range []string{"m1aaaaaaaaaaaaaaaaaaaaaaa", "host-m1", "m1a"} {
		n := getNode(t, s, input)
		if n.GetId() != "m1aaaaaaaaaaaaaaaaaaaaaaa" {
			t.Fatalf("GetNode(%q) = %s", input, n.GetId())
		}
		ms := n.GetManagerStatus()
		if ms.GetRaftId() != 1 || !ms.GetLeader() || ms.GetReachability() != api.RaftMemberStatus_REACHABLE || ms.GetAddr() != "10.0.0.1:4242" {
			t.Fatalf("manager status of the leader: %v", ms)
		}
	}
	if ms := getNode(t, s, "host-m3").GetManagerStatus(); ms.GetLeader() || ms.GetReachability() != api.RaftMemberStatus_UNREACHABLE {
		t.Fatalf("manager status of an unreachable follower: %v", ms)
	}
	if ms := getNode(t, s, "host-w1").GetManagerStatus(); ms != nil {
		t.Fatalf("worker has manager status %v", ms)
	}

	_, err := s.GetNode(ctx, &api.GetNodeRequest{NodeId: "m"})
	wantErr(t, err, codes.InvalidArgument, "node m is ambiguous (3 matches found)")
	_, err = s.GetNode(ctx, &api.GetNodeRequest{NodeId: "nope"})
	wantErr(t, err, codes.NotFound, "node nope not found")
	_, err = s.GetNode(ctx, &api.GetNodeRequest{})
	wantErr(t, err, codes.InvalidArgument, "invalid argument")
}

func TestListNodesFilters(t *testing.T) {
	s, st, _ := threeManagers(t)
	labelled := testNode("x1eeeeeeeeeeeeeeeeeeeeeee", "edge", worker, down)
	labelled.Spec.Annotations = &api.Annotations{Labels: map[string]string{"zone": "a", "ssd": ""}}
	labelled.Spec.Membership = api.NodeMembership_NODE_MEMBERSHIP_PENDING
	engine := testNode("x2fffffffffffffffffffffff", "edge-2", worker, ready)
	engine.Description.Engine = &api.EngineDescription{Labels: map[string]string{"zone": "b"}}
	put(t, st, labelled, engine)

	tests := []struct {
		name string
		f    *api.ListFilters
		want []string
	}{
		{"all", nil, []string{"m1", "m2", "m3", "w1", "x1", "x2"}},
		{"names", &api.ListFilters{Names: []string{"host-m2", "edge"}}, []string{"m2", "x1"}},
		{"name prefixes", &api.ListFilters{NamePrefixes: []string{"edge"}}, []string{"x1", "x2"}},
		{"id prefixes", &api.ListFilters{IdPrefixes: []string{"m1", "w"}}, []string{"m1", "w1"}},
		{"label key", &api.ListFilters{Labels: map[string]string{"ssd": ""}}, []string{"x1"}},
		{"label key=value", &api.ListFilters{Labels: map[string]string{"zone": "a"}}, []string{"x1"}},
		{"engine label", &api.ListFilters{Labels: map[string]string{"zone": "b"}}, []string{"x2"}},
		{"any zone", &api.ListFilters{Labels: map[string]string{"zone": ""}}, []string{"x1", "x2"}},
		{"roles", &api.ListFilters{Roles: []api.NodeRole{manager}}, []string{"m1", "m2", "m3"}},
		{"memberships", &api.ListFilters{Memberships: []api.NodeMembership{api.NodeMembership_NODE_MEMBERSHIP_PENDING}}, []string{"x1"}},
		{"and", &api.ListFilters{NamePrefixes: []string{"host"}, Roles: []api.NodeRole{worker}}, []string{"w1"}},
		{"none", &api.ListFilters{Names: []string{"nope"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := s.ListNodes(context.Background(), &api.ListNodesRequest{Filters: tt.f})
			mustOK(t, err)
			var got []string
			for _, n := range resp.GetNodes() {
				got = append(got, n.GetId()[:2])
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	resp, err := s.ListNodes(context.Background(), &api.ListNodesRequest{Filters: &api.ListFilters{Roles: []api.NodeRole{manager}}})
	mustOK(t, err)
	for _, n := range resp.GetNodes() {
		if n.GetManagerStatus() == nil {
			t.Fatalf("listed manager %s without manager status", n.GetId())
		}
	}
}

func updateNode(s *Server, n *api.Node, mutate func(*api.NodeSpec)) (*api.Node, error) {
	spec := n.GetSpec()
	mutate(spec)
	resp, err := s.UpdateNode(context.Background(), &api.UpdateNodeRequest{NodeId: n.GetId(), NodeVersion: n.GetMeta().GetVersion(), Spec: spec})
	return resp.GetNode(), err
}

func TestUpdateNode(t *testing.T) {
	s, _, _ := threeManagers(t)
	n := getNode(t, s, "host-w1")
	updated, err := updateNode(s, n, func(spec *api.NodeSpec) {
		spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN
		spec.Annotations = &api.Annotations{Labels: map[string]string{"zone": "a"}}
	})
	mustOK(t, err)
	if updated.GetSpec().GetAvailability() != api.NodeAvailability_NODE_AVAILABILITY_DRAIN ||
		updated.GetSpec().GetAnnotations().GetLabels()["zone"] != "a" {
		t.Fatalf("update not applied: %v", updated.GetSpec())
	}
	if updated.GetMeta().GetVersion().GetIndex() <= n.GetMeta().GetVersion().GetIndex() {
		t.Fatalf("version did not move: %v -> %v", n.GetMeta().GetVersion(), updated.GetMeta().GetVersion())
	}

	// The old version is stale now.
	_, err = updateNode(s, n, func(spec *api.NodeSpec) { spec.Availability = api.NodeAvailability_NODE_AVAILABILITY_PAUSE })
	wantErr(t, err, codes.Unknown, "update out of sequence")
	if !errors.Is(err, store.ErrSequenceConflict) {
		t.Fatalf("%v does not wrap store.ErrSequenceConflict", err)
	}
	if got := getNode(t, s, "host-w1").GetSpec().GetAvailability(); got != api.NodeAvailability_NODE_AVAILABILITY_DRAIN {
		t.Fatalf("stale update changed availability to %v", got)
	}

	_, err = s.UpdateNode(context.Background(), &api.UpdateNodeRequest{NodeId: n.GetId(), Spec: n.GetSpec()})
	wantErr(t, err, codes.InvalidArgument, "invalid argument")
	_, err = s.UpdateNode(context.Background(), &api.UpdateNodeRequest{NodeId: "zzz", NodeVersion: &api.Version{}, Spec: &api.NodeSpec{}})
	wantErr(t, err, codes.NotFound, "node zzz not found")
	_, err = updateNode(s, getNode(t, s, "host-w1"), func(spec *api.NodeSpec) { spec.Availability = 9 })
	wantErr(t, err, codes.InvalidArgument, "NodeSpec: availability 9")
}

func TestDemotion(t *testing.T) {
	t.Run("last manager", func(t *testing.T) {
		raft := &fakeRaft{leader: 1}
		s, st := newTestServer(t, raft)
		put(t, st, testNode("m1aaaaaaaaaaaaaaaaaaaaaaa", "m1", manager, ready), testNode("w1ddddddddddddddddddddddd", "w1", worker, ready))
		raft.add(1, "m1aaaaaaaaaaaaaaaaaaaaaaa")
		_, err := updateNode(s, getNode(t, s, "m1"), func(spec *api.NodeSpec) { spec.DesiredRole = worker })
		wantErr(t, err, codes.FailedPrecondition, "attempting to demote the last manager of the swarm")
	})
	t.Run("demote one of three, then the next two", func(t *testing.T) {
		s, _, _ := threeManagers(t)
		_, err := updateNode(s, getNode(t, s, "host-m3"), func(spec *api.NodeSpec) { spec.DesiredRole = worker })
		mustOK(t, err)
		// m3 still holds its manager certificate but is on its way
		// out: it does not count as another manager.
		_, err = updateNode(s, getNode(t, s, "host-m2"), func(spec *api.NodeSpec) { spec.DesiredRole = worker })
		mustOK(t, err)
		_, err = updateNode(s, getNode(t, s, "host-m1"), func(spec *api.NodeSpec) { spec.DesiredRole = worker })
		wantErr(t, err, codes.FailedPrecondition, "attempting to demote the last manager of the swarm")
	})
	t.Run("quorum", func(t *testing.T) {
		s, _, raft := threeManagers(t)
		raft.unreachable = map[uint64]bool{3: true}
		_, err := updateNode(s, getNode(t, s, "host-m2"), func(spec *api.NodeSpec) { spec.DesiredRole = worker })
		wantErr(t, err, codes.FailedPrecondition, "can't remove member from the raft: this would result in a loss of quorum")
		// Demoting the unreachable one leaves two reachable of two.
		_, err = updateNode(s, getNode(t, s, "host-m3"), func(spec *api.NodeSpec) { spec.DesiredRole = worker })
		mustOK(t, err)
	})
	t.Run("promote", func(t *testing.T) {
		s, _, _ := threeManagers(t)
		n, err := updateNode(s, getNode(t, s, "host-w1"), func(spec *api.NodeSpec) { spec.DesiredRole = manager })
		mustOK(t, err)
		if n.GetSpec().GetDesiredRole() != manager {
			t.Fatalf("desired role %v", n.GetSpec().GetDesiredRole())
		}
	})
}

func TestRemoveNode(t *testing.T) {
	ctx := context.Background()
	t.Run("manager must be demoted", func(t *testing.T) {
		s, _, _ := threeManagers(t)
		_, err := s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "host-m2", Force: true})
		wantErr(t, err, codes.FailedPrecondition, "node m2bbbbbbbbbbbbbbbbbbbbbbb is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal")
		if err.Error() != "rpc error: code = FailedPrecondition desc = node m2bbbbbbbbbbbbbbbbbbbbbbb is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal" {
			t.Fatalf("error text %q", err.Error())
		}
	})
	t.Run("manager without raft", func(t *testing.T) {
		s, st := newTestServer(t, nil)
		put(t, st, testNode("m1aaaaaaaaaaaaaaaaaaaaaaa", "m1", manager, down))
		_, err := s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "m1", Force: true})
		wantErr(t, err, codes.FailedPrecondition, "is a manager but cannot access node information from the raft memberlist")
	})
	t.Run("ready worker needs force", func(t *testing.T) {
		s, st, _ := threeManagers(t)
		_, err := s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "host-w1"})
		wantErr(t, err, codes.FailedPrecondition, "node w1ddddddddddddddddddddddd is not down and can't be removed")
		_, err = s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "host-w1", Force: true})
		mustOK(t, err)
		st.View(func(tx store.ReadTx) {
			if store.GetNode(tx, "w1ddddddddddddddddddddddd") != nil {
				t.Fatal("node still stored")
			}
		})
	})
	t.Run("down worker: blacklisted, tasks orphaned", func(t *testing.T) {
		s, st, _ := threeManagers(t)
		gone := testNode("x1eeeeeeeeeeeeeeeeeeeeeee", "gone", worker, down)
		put(t, st, gone,
			&api.Cluster{Id: "cluster1", Spec: &api.ClusterSpec{Annotations: &api.Annotations{Name: "default"}}},
			&api.Task{Id: "t1", NodeId: gone.Id, Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_RUNNING}},
			&api.Task{Id: "t2", NodeId: gone.Id, Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_COMPLETE}},
			&api.Task{Id: "t3", NodeId: "w1ddddddddddddddddddddddd", Status: &api.TaskStatus{State: api.TaskState_TASK_STATE_RUNNING}},
		)
		_, err := s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "gone"})
		mustOK(t, err)
		st.View(func(tx store.ReadTx) {
			if store.GetNode(tx, gone.Id) != nil {
				t.Fatal("node still stored")
			}
			if bl := store.GetCluster(tx, "cluster1").GetBlacklistedCertificates(); !slices.Equal(bl, []string{gone.Id}) {
				t.Fatalf("blacklist %v", bl)
			}
			t1 := store.GetTask(tx, "t1")
			if t1.GetStatus().GetState() != api.TaskState_TASK_STATE_ORPHANED || t1.GetStatus().GetMessage() != orphanedMessage ||
				!t1.GetStatus().GetTimestamp().AsTime().Equal(testNow) {
				t.Fatalf("t1 status %v", t1.GetStatus())
			}
			if st := store.GetTask(tx, "t2").GetStatus().GetState(); st != api.TaskState_TASK_STATE_COMPLETE {
				t.Fatalf("finished task moved to %v", st)
			}
			if st := store.GetTask(tx, "t3").GetStatus().GetState(); st != api.TaskState_TASK_STATE_RUNNING {
				t.Fatalf("other node's task moved to %v", st)
			}
		})
		_, err = s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "gone"})
		wantErr(t, err, codes.NotFound, "node gone not found")
	})
	t.Run("demoted but still a raft member", func(t *testing.T) {
		s, _, raft := threeManagers(t)
		_, err := updateNode(s, getNode(t, s, "host-m3"), func(spec *api.NodeSpec) { spec.DesiredRole = worker })
		mustOK(t, err)
		_, err = s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "host-m3"})
		wantErr(t, err, codes.FailedPrecondition, "is not down and can't be removed")
		raft.removeErr = errBoom
		_, err = s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "host-m3", Force: true})
		wantErr(t, err, codes.FailedPrecondition, "can't remove member from the raft: boom")
		raft.removeErr = nil
		_, err = s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "host-m3", Force: true})
		mustOK(t, err)
		if !slices.Equal(raft.removed, []uint64{3}) {
			t.Fatalf("raft members removed: %v", raft.removed)
		}
	})
	t.Run("demoted member, down, no force", func(t *testing.T) {
		s, st, raft := threeManagers(t)
		_, err := updateNode(s, getNode(t, s, "host-m3"), func(spec *api.NodeSpec) { spec.DesiredRole = worker })
		mustOK(t, err)
		mustOK(t, st.Update(ctx, func(tx store.Tx) error {
			n := store.GetNode(tx, "m3ccccccccccccccccccccccc")
			n.Status.State = down
			return tx.Update(n)
		}))
		raft.unreachable = map[uint64]bool{3: true}
		_, err = s.RemoveNode(ctx, &api.RemoveNodeRequest{NodeId: "host-m3"})
		wantErr(t, err, codes.FailedPrecondition, "is being demoted and is still a member of the raft cluster")
	})
}
