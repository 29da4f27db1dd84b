package dispatcher

import (
	"github.com/openswarm/swarmd/api"
	"google.golang.org/protobuf/proto"
)

// This file holds the I/O-free rules of the writes the dispatcher makes:
// task status reports and node liveness.

// statusAdvances reports whether next may replace cur as a task's observed
// status: a task's state never moves backwards, and a report identical to
// what is stored changes nothing. A report in the same state (a new
// message, container or port status) is taken.
func statusAdvances(cur, next *api.TaskStatus) bool {
	if next == nil || next.GetState() < cur.GetState() {
		return false
	}
	return !proto.Equal(cur, next)
}

// laterStatus picks which of two reports for one task, old queued first,
// to keep: the later one, unless it moves backwards.
func laterStatus(old, next *api.TaskStatus) *api.TaskStatus {
	if old != nil && next.GetState() < old.GetState() {
		return old
	}
	return next
}

// nodeWrite is a change of a node's liveness the dispatcher makes.
type nodeWrite struct {
	// ready: the node registered (a session started) from addr, describing
	// itself as desc (nil keeps the stored description). Otherwise the
	// node is DOWN, for message.
	ready   bool
	desc    *api.NodeDescription
	addr    string
	message string
}

// Status messages of nodes the dispatcher marks DOWN.
const (
	msgHeartbeatFailure = "heartbeat failure"
)

// applyNodeWrite changes n as w says and reports whether anything changed.
// A DOWN write leaves a node that is already DOWN alone.
func applyNodeWrite(n *api.Node, w nodeWrite) bool {
	before := proto.Clone(n).(*api.Node)
	if w.ready {
		if w.desc != nil {
			n.Description = proto.Clone(w.desc).(*api.NodeDescription)
		}
		n.Status = &api.NodeStatus{State: api.NodeStatus_READY, Addr: w.addr}
	} else {
		if n.GetStatus().GetState() == api.NodeStatus_DOWN {
			return false
		}
		n.Status = &api.NodeStatus{State: api.NodeStatus_DOWN, Message: w.message, Addr: n.GetStatus().GetAddr()}
	}
	return !proto.Equal(before, n)
}

// newNode is the node object the dispatcher creates for a node that
// registers without one in the store: an accepted, active worker.
func newNode(id string) *api.Node {
	return &api.Node{
		Id: id,
		Spec: &api.NodeSpec{
			DesiredRole:  api.NodeRole_NODE_ROLE_WORKER,
			Membership:   api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED,
			Availability: api.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
		},
		Role:   api.NodeRole_NODE_ROLE_WORKER,
		Status: &api.NodeStatus{State: api.NodeStatus_UNKNOWN},
	}
}
