package convert

import (
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/filters"

	"github.com/openswarm/swarmd/api"
)

// prefixed reports whether s starts with one of prefixes (none: true).
func prefixed(s string, prefixes []string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// ServiceFilter is the predicate of `docker service ls --filter`: id and
// name (prefixes), label (key or key=value), mode (replicated, global,
// replicated-job, global-job).
func ServiceFilter(args filters.Args) (func(*api.Service) bool, error) {
	if err := args.Validate(map[string]bool{"id": true, "name": true, "label": true, "mode": true}); err != nil {
		return nil, err
	}
	modes := args.Get("mode")
	for _, m := range modes {
		switch m {
		case "replicated", "global", "replicated-job", "global-job":
		default:
			return nil, fmt.Errorf("Invalid filter: 'mode'='%s'", m)
		}
	}
	ids, names, labels := args.Get("id"), args.Get("name"), args.Get("label")
	return func(s *api.Service) bool {
		if !prefixed(s.GetId(), ids) || !prefixed(s.GetSpec().GetAnnotations().GetName(), names) {
			return false
		}
		if !matchLabels(s.GetSpec().GetAnnotations().GetLabels(), labels) {
			return false
		}
		if len(modes) > 0 {
			m := "replicated"
			switch {
			case s.GetSpec().GetGlobal() != nil:
				m = "global"
			case s.GetSpec().GetReplicatedJob() != nil:
				m = "replicated-job"
			case s.GetSpec().GetGlobalJob() != nil:
				m = "global-job"
			}
			if !slices.Contains(modes, m) {
				return false
			}
		}
		return true
	}, nil
}

// NodeFilter is the predicate of `docker node ls --filter`: id and name
// (prefixes; name matches the node's name or hostname), label (engine
// labels), node.label (the node's own labels), membership (accepted,
// pending), role (manager, worker).
func NodeFilter(args filters.Args) (func(*api.Node) bool, error) {
	if err := args.Validate(map[string]bool{"id": true, "name": true, "label": true, "node.label": true, "membership": true, "role": true}); err != nil {
		return nil, err
	}
	for _, r := range args.Get("role") {
		if r != "manager" && r != "worker" {
			return nil, fmt.Errorf("Invalid role filter: '%s'", r)
		}
	}
	for _, m := range args.Get("membership") {
		if m != "accepted" && m != "pending" {
			return nil, fmt.Errorf("Invalid membership filter: '%s'", m)
		}
	}
	ids, names := args.Get("id"), args.Get("name")
	labels, nodeLabels := args.Get("label"), args.Get("node.label")
	roles, memberships := args.Get("role"), args.Get("membership")
	return func(n *api.Node) bool {
		if !prefixed(n.GetId(), ids) {
			return false
		}
		if len(names) > 0 && !prefixed(n.GetSpec().GetAnnotations().GetName(), names) &&
			!prefixed(n.GetDescription().GetHostname(), names) {
			return false
		}
		if !matchLabels(n.GetDescription().GetEngine().GetLabels(), labels) ||
			!matchLabels(n.GetSpec().GetAnnotations().GetLabels(), nodeLabels) {
			return false
		}
		if len(roles) > 0 && !slices.Contains(roles, string(roleToDocker(n.GetSpec().GetDesiredRole()))) {
			return false
		}
		m := "pending"
		if n.GetSpec().GetMembership() == api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED {
			m = "accepted"
		}
		return len(memberships) == 0 || slices.Contains(memberships, m)
	}, nil
}

// TaskFilter is the predicate of `docker service ps` and `GET /tasks`
// filters: id and name (prefixes; the name is docker's <service>.<slot>),
// label (the labels of the task's service, as `docker stack ps` needs),
// desired-state (running, shutdown, accepted). The service, node
// and _up-to-date filters are accepted and left to the caller, which
// resolves them through the control API.
func TaskFilter(args filters.Args) (func(*api.Task) bool, error) {
	accepted := map[string]bool{"id": true, "name": true, "label": true, "desired-state": true,
		"service": true, "node": true, "_up-to-date": true}
	if err := args.Validate(accepted); err != nil {
		return nil, err
	}
	var desired []api.TaskState
	for _, d := range args.Get("desired-state") {
		st, ok := taskStateFromDocker(d)
		if !ok || (st != api.TaskState_TASK_STATE_RUNNING && st != api.TaskState_TASK_STATE_SHUTDOWN && st != api.TaskState_TASK_STATE_ACCEPTED) {
			return nil, fmt.Errorf("Invalid desired-state filter: '%s'", d)
		}
		desired = append(desired, st)
	}
	ids, names, labels := args.Get("id"), args.Get("name"), args.Get("label")
	return func(t *api.Task) bool {
		if !prefixed(t.GetId(), ids) || !prefixed(taskName(t), names) {
			return false
		}
		if !matchLabels(t.GetServiceAnnotations().GetLabels(), labels) {
			return false
		}
		if len(desired) == 0 {
			return true
		}
		for _, d := range desired {
			if t.GetDesiredState() == d {
				return true
			}
		}
		return false
	}, nil
}
