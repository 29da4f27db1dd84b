package dispatcher

import (
	"testing"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

func TestStatusAdvances(t *testing.T) {
	st := func(s api.TaskState, msg string) *api.TaskStatus { return &api.TaskStatus{State: s, Message: msg} }
	tests := []struct {
		name      string
		cur, next *api.TaskStatus
		want      bool
	}{
		{"forward", st(stAssigned, ""), st(stAccepted, "accepted"), true},
		{"far forward", st(stAssigned, ""), st(stRunning, "started"), true},
		{"backwards", st(stRunning, "started"), st(stAccepted, "accepted"), false},
		{"same state, news", st(stRunning, "started"), st(stRunning, "healthy"), true},
		{"identical", st(stRunning, "started"), st(stRunning, "started"), false},
		{"terminal to later terminal", st(stComplete, ""), st(stShutdown, ""), true},
		{"terminal back to running", st(stFailed, ""), st(stRunning, ""), false},
		{"no report", st(stRunning, ""), nil, false},
		{"no stored status", nil, st(stAssigned, ""), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusAdvances(tc.cur, tc.next); got != tc.want {
				t.Fatalf("statusAdvances = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLaterStatus(t *testing.T) {
	running := &api.TaskStatus{State: stRunning}
	accepted := &api.TaskStatus{State: stAccepted}
	running2 := &api.TaskStatus{State: stRunning, Message: "again"}
	tests := []struct {
		name            string
		old, next, want *api.TaskStatus
	}{
		{"first", nil, accepted, accepted},
		{"forward", accepted, running, running},
		{"backwards keeps old", running, accepted, running},
		{"same state takes the later", running, running2, running2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := laterStatus(tc.old, tc.next); got != tc.want {
				t.Fatalf("laterStatus = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestApplyNodeWrite(t *testing.T) {
	desc := &api.NodeDescription{Hostname: "h1"}
	node := func(state api.NodeStatus_State, addr string, d *api.NodeDescription) *api.Node {
		return &api.Node{Id: "n1", Description: d, Status: &api.NodeStatus{State: state, Addr: addr}}
	}
	tests := []struct {
		name    string
		n       *api.Node
		w       nodeWrite
		changed bool
		want    *api.Node
	}{
		{
			name: "register unknown", n: node(api.NodeStatus_UNKNOWN, "", nil),
			w: nodeWrite{ready: true, desc: desc, addr: "10.0.0.1"}, changed: true,
			want: node(api.NodeStatus_READY, "10.0.0.1", desc),
		},
		{
			name: "register again, same", n: node(api.NodeStatus_READY, "10.0.0.1", desc),
			w:    nodeWrite{ready: true, desc: desc, addr: "10.0.0.1"},
			want: node(api.NodeStatus_READY, "10.0.0.1", desc),
		},
		{
			name: "register without description keeps it", n: node(api.NodeStatus_DOWN, "10.0.0.1", desc),
			w: nodeWrite{ready: true, addr: "10.0.0.2"}, changed: true,
			want: node(api.NodeStatus_READY, "10.0.0.2", desc),
		},
		{
			name: "down", n: node(api.NodeStatus_READY, "10.0.0.1", desc),
			w: nodeWrite{message: msgHeartbeatFailure}, changed: true,
			want: &api.Node{Id: "n1", Description: desc, Status: &api.NodeStatus{State: api.NodeStatus_DOWN, Addr: "10.0.0.1", Message: msgHeartbeatFailure}},
		},
		{
			name: "down already", n: &api.Node{Id: "n1", Status: &api.NodeStatus{State: api.NodeStatus_DOWN, Message: "left"}},
			w:    nodeWrite{message: msgHeartbeatFailure},
			want: &api.Node{Id: "n1", Status: &api.NodeStatus{State: api.NodeStatus_DOWN, Message: "left"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := applyNodeWrite(tc.n, tc.w); got != tc.changed {
				t.Fatalf("changed = %v, want %v", got, tc.changed)
			}
			if !proto.Equal(tc.n, tc.want) {
				t.Fatalf("node %v, want %v", tc.n, tc.want)
			}
		})
	}
}
