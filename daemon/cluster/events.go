package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

// getEvents streams the engine's events with the swarm's own merged in
// (type service, node, network, secret, config; scope swarm), as an engine
// in swarm mode does. Swarm events are live only (no history for since).
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request) error {
	args, err := filterArgs(r)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, s.base.String()+r.URL.RequestURI(), nil)
	if err != nil {
		return err
	}
	req.URL.Path = prefixVersion(r, "/events")
	resp, err := s.engine.RoundTrip(req)
	if err != nil {
		return &httpError{code: http.StatusBadGateway, msg: "Cannot connect to the Docker daemon behind swarmd: " + err.Error()}
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
		_, _ = bufio.NewReader(resp.Body).WriteTo(w)
		return nil
	}
	out := &lockedWriter{w: w}
	out.flush()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var feed <-chan store.Event
	if m := s.cluster.localManager(); m != nil && swarmEventsWanted(args) {
		ch, stop := m.Store().Watch(store.MatchKind(store.KindService, store.KindNode, store.KindNetwork, store.KindSecret, store.KindConfig))
		defer stop()
		feed = ch
	}
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			out.write(append(sc.Bytes(), '\n'))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-engineDone:
			return nil
		case e, ok := <-feed:
			if !ok {
				feed = nil
				continue
			}
			msg, ok := swarmEvent(e, time.Now())
			if !ok || !eventMatches(args, msg) {
				continue
			}
			b, err := json.Marshal(msg)
			if err != nil {
				continue
			}
			out.write(append(b, '\n'))
		}
	}
}

// lockedWriter serialises writes of whole events to the response.
type lockedWriter struct {
	mu sync.Mutex
	w  http.ResponseWriter
}

func (l *lockedWriter) write(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
	if f, ok := l.w.(http.Flusher); ok {
		f.Flush()
	}
}

func (l *lockedWriter) flush() { l.write(nil) }

// swarmEventsWanted reports whether the filters leave room for swarm
// events (filters on containers, images, volumes, plugins or the daemon
// only match engine events).
func swarmEventsWanted(args filters.Args) bool {
	for _, k := range []string{"container", "image", "volume", "plugin", "daemon"} {
		if args.Contains(k) {
			return false
		}
	}
	return !args.Contains("scope") || args.ExactMatch("scope", "swarm")
}

// eventMatches applies the type, event, service, node, secret, config and
// network filters to a swarm event.
func eventMatches(args filters.Args, m events.Message) bool {
	if !args.ExactMatch("type", string(m.Type)) || !args.ExactMatch("event", string(m.Action)) {
		return false
	}
	for _, k := range []string{"service", "node", "secret", "config", "network"} {
		if !args.Contains(k) {
			continue
		}
		if string(m.Type) != k {
			return false
		}
		if !args.ExactMatch(k, m.Actor.ID) && !args.ExactMatch(k, m.Actor.Attributes["name"]) {
			return false
		}
	}
	return true
}

// swarmEvent is the Engine API event of a store change, with docker's
// attributes: the name, and for updates what changed (old and new).
func swarmEvent(e store.Event, now time.Time) (events.Message, bool) {
	var action events.Action
	switch e.Action {
	case store.EventCreate:
		action = events.ActionCreate
	case store.EventUpdate:
		action = events.ActionUpdate
	case store.EventRemove:
		action = events.ActionRemove
	default:
		return events.Message{}, false
	}
	m := events.Message{Action: action, Scope: "swarm", Time: now.Unix(), TimeNano: now.UnixNano(),
		Actor: events.Actor{ID: e.Object.GetId(), Attributes: map[string]string{}}}
	attr := m.Actor.Attributes
	changed := func(key, old, cur string) {
		if e.Action == store.EventUpdate && old != cur {
			attr[key+".old"], attr[key+".new"] = old, cur
		}
	}
	switch o := e.Object.(type) {
	case *api.Service:
		m.Type = events.ServiceEventType
		attr["name"] = o.GetSpec().GetAnnotations().GetName()
		if old, ok := e.Old.(*api.Service); ok {
			changed("image", old.GetSpec().GetTask().GetContainer().GetImage(), o.GetSpec().GetTask().GetContainer().GetImage())
			if o.GetSpec().GetReplicated() != nil && old.GetSpec().GetReplicated() != nil {
				changed("replicas", strconv.FormatUint(old.GetSpec().GetReplicated().GetReplicas(), 10),
					strconv.FormatUint(o.GetSpec().GetReplicated().GetReplicas(), 10))
			}
			changed("updatestate", updateStateName(old.GetUpdateStatus()), updateStateName(o.GetUpdateStatus()))
		}
	case *api.Node:
		m.Type = events.NodeEventType
		attr["name"] = o.GetDescription().GetHostname()
		if n := o.GetSpec().GetAnnotations().GetName(); n != "" {
			attr["name"] = n
		}
		if old, ok := e.Old.(*api.Node); ok {
			changed("state", nodeStateName(old), nodeStateName(o))
			changed("availability", availabilityName(old), availabilityName(o))
			changed("role", roleName(old.GetRole()), roleName(o.GetRole()))
		}
	case *api.Network:
		m.Type = events.NetworkEventType
		attr["name"] = o.GetSpec().GetAnnotations().GetName()
	case *api.Secret:
		m.Type = events.SecretEventType
		attr["name"] = o.GetSpec().GetAnnotations().GetName()
	case *api.Config:
		m.Type = events.ConfigEventType
		attr["name"] = o.GetSpec().GetAnnotations().GetName()
	default:
		return events.Message{}, false
	}
	return m, true
}

func updateStateName(u *api.UpdateStatus) string {
	switch u.GetState() {
	case api.UpdateStatus_UPDATING:
		return "updating"
	case api.UpdateStatus_PAUSED:
		return "paused"
	case api.UpdateStatus_COMPLETED:
		return "completed"
	case api.UpdateStatus_ROLLBACK_STARTED:
		return "rollback_started"
	case api.UpdateStatus_ROLLBACK_PAUSED:
		return "rollback_paused"
	case api.UpdateStatus_ROLLBACK_COMPLETED:
		return "rollback_completed"
	}
	return ""
}

func nodeStateName(n *api.Node) string {
	switch n.GetStatus().GetState() {
	case api.NodeStatus_READY:
		return "ready"
	case api.NodeStatus_DOWN:
		return "down"
	case api.NodeStatus_DISCONNECTED:
		return "disconnected"
	}
	return "unknown"
}

func availabilityName(n *api.Node) string {
	switch n.GetSpec().GetAvailability() {
	case api.NodeAvailability_NODE_AVAILABILITY_PAUSE:
		return "pause"
	case api.NodeAvailability_NODE_AVAILABILITY_DRAIN:
		return "drain"
	}
	return "active"
}

func roleName(r api.NodeRole) string {
	if r == api.NodeRole_NODE_ROLE_MANAGER {
		return "manager"
	}
	return "worker"
}
