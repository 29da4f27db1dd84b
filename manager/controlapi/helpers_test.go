package controlapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
	"github.com/openswarm/swarmd/manager/state/store/storetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fakeRaft is a RaftInfo with members set by the test.
type fakeRaft struct {
	mu          sync.Mutex
	members     []*api.RaftMember
	leader      uint64
	unreachable map[uint64]bool
	removed     []uint64
	removeErr   error
}

func (f *fakeRaft) Members() []*api.RaftMember {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.members)
}

func (f *fakeRaft) Leader() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeRaft) Reachable(id uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.unreachable[id]
}

func (f *fakeRaft) RemoveMember(_ context.Context, id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removeErr != nil {
		return f.removeErr
	}
	f.removed = append(f.removed, id)
	f.members = slices.DeleteFunc(f.members, func(m *api.RaftMember) bool { return m.GetRaftId() == id })
	return nil
}

func (f *fakeRaft) add(raftID uint64, nodeID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members = append(f.members, &api.RaftMember{RaftId: raftID, NodeId: nodeID, Addr: fmt.Sprintf("10.0.0.%d:4242", raftID)})
}

var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newTestServer(t *testing.T, raft RaftInfo, opts ...Option) (*Server, *store.MemoryStore) {
	t.Helper()
	st := storetest.New(t, nil)
	opts = append([]Option{WithClock(func() time.Time { return testNow })}, opts...)
	return NewServer(st, raft, opts...), st
}

// put stores objects directly, as other subsystems would.
func put(t *testing.T, st *store.MemoryStore, objs ...api.StoreObject) {
	t.Helper()
	err := st.Update(context.Background(), func(tx store.Tx) error {
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("store objects: %v", err)
	}
}

func testNode(id, hostname string, role api.NodeRole, state api.NodeStatus_State) *api.Node {
	return &api.Node{
		Id:          id,
		Spec:        &api.NodeSpec{DesiredRole: role, Membership: api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED},
		Description: &api.NodeDescription{Hostname: hostname},
		Status:      &api.NodeStatus{State: state},
		Role:        role,
	}
}

func serviceSpec(name string) *api.ServiceSpec {
	return &api.ServiceSpec{
		Annotations: &api.Annotations{Name: name},
		Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: "busybox:latest"}},
		Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: 1}},
	}
}

func withPorts(spec *api.ServiceSpec, ports ...*api.PortConfig) *api.ServiceSpec {
	spec.Endpoint = &api.EndpointSpec{Ports: ports}
	return spec
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// wantErr fails unless err has code c and its description contains text.
func wantErr(t *testing.T, err error, c codes.Code, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v %q", c, text)
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a status error", err)
	}
	if st.Code() != c || !strings.Contains(st.Message(), text) {
		t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), c, text)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func createService(t *testing.T, s *Server, spec *api.ServiceSpec) *api.Service {
	t.Helper()
	resp, err := s.CreateService(context.Background(), &api.CreateServiceRequest{Spec: spec})
	mustOK(t, err)
	return resp.GetService()
}

var errBoom = errors.New("boom")
