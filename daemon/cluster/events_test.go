package cluster

import (
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

func svc(id, name, image string, replicas uint64) *api.Service {
	return &api.Service{Id: id, Spec: &api.ServiceSpec{
		Annotations: &api.Annotations{Name: name},
		Task:        &api.TaskSpec{Container: &api.ContainerSpec{Image: image}},
		Mode:        &api.ServiceSpec_Replicated{Replicated: &api.ReplicatedService{Replicas: replicas}},
	}}
}

func TestSwarmEvent(t *testing.T) {
	now := time.Unix(1700000000, 5)
	node := func(state api.NodeStatus_State, avail api.NodeAvailability) *api.Node {
		return &api.Node{Id: "n1", Description: &api.NodeDescription{Hostname: "h1"},
			Spec: &api.NodeSpec{Availability: avail}, Status: &api.NodeStatus{State: state}}
	}
	tests := []struct {
		name  string
		ev    store.Event
		typ   events.Type
		act   events.Action
		attrs map[string]string
		skip  bool
	}{
		{"service create", store.Event{Action: store.EventCreate, Object: svc("s1", "web", "a:1", 3)},
			events.ServiceEventType, events.ActionCreate, map[string]string{"name": "web"}, false},
		{"service scale and image", store.Event{Action: store.EventUpdate, Object: svc("s1", "web", "a:2", 5), Old: svc("s1", "web", "a:1", 3)},
			events.ServiceEventType, events.ActionUpdate, map[string]string{"name": "web", "image.old": "a:1", "image.new": "a:2", "replicas.old": "3", "replicas.new": "5"}, false},
		{"node down and drained", store.Event{Action: store.EventUpdate,
			Object: node(api.NodeStatus_DOWN, api.NodeAvailability_NODE_AVAILABILITY_DRAIN), Old: node(api.NodeStatus_READY, api.NodeAvailability_NODE_AVAILABILITY_ACTIVE)},
			events.NodeEventType, events.ActionUpdate, map[string]string{"name": "h1", "state.old": "ready", "state.new": "down", "availability.old": "active", "availability.new": "drain"}, false},
		{"service remove", store.Event{Action: store.EventRemove, Object: svc("s1", "web", "a:1", 3)},
			events.ServiceEventType, events.ActionRemove, map[string]string{"name": "web"}, false},
		{"task: not an engine event", store.Event{Action: store.EventCreate, Object: &api.Task{Id: "t"}}, "", "", nil, true},
		{"commit", store.Event{Action: store.EventCommit}, "", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := swarmEvent(tt.ev, now)
			if ok == tt.skip {
				t.Fatalf("ok = %v", ok)
			}
			if tt.skip {
				return
			}
			if m.Type != tt.typ || m.Action != tt.act || m.Scope != "swarm" || m.TimeNano != now.UnixNano() || len(m.Actor.Attributes) != len(tt.attrs) {
				t.Fatalf("got %+v", m)
			}
			for k, v := range tt.attrs {
				if m.Actor.Attributes[k] != v {
					t.Fatalf("attribute %s = %q, want %q (%v)", k, m.Actor.Attributes[k], v, m.Actor.Attributes)
				}
			}
		})
	}
}

func TestEventFilters(t *testing.T) {
	m := events.Message{Type: events.ServiceEventType, Action: events.ActionUpdate, Scope: "swarm",
		Actor: events.Actor{ID: "s1", Attributes: map[string]string{"name": "web"}}}
	tests := []struct {
		name   string
		args   filters.Args
		wanted bool // swarm events at all
		match  bool
	}{
		{"none", filters.NewArgs(), true, true},
		{"type service", filters.NewArgs(filters.Arg("type", "service")), true, true},
		{"type node", filters.NewArgs(filters.Arg("type", "node")), true, false},
		{"service by name", filters.NewArgs(filters.Arg("service", "web")), true, true},
		{"service by id", filters.NewArgs(filters.Arg("service", "s1")), true, true},
		{"other service", filters.NewArgs(filters.Arg("service", "db")), true, false},
		{"event create", filters.NewArgs(filters.Arg("event", "create")), true, false},
		{"containers only", filters.NewArgs(filters.Arg("container", "c1")), false, false},
		{"scope local", filters.NewArgs(filters.Arg("scope", "local")), false, false},
		{"scope swarm", filters.NewArgs(filters.Arg("scope", "swarm")), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := swarmEventsWanted(tt.args); got != tt.wanted {
				t.Fatalf("wanted = %v", got)
			}
			if tt.wanted {
				if got := eventMatches(tt.args, m); got != tt.match {
					t.Fatalf("match = %v", got)
				}
			}
		})
	}
}
