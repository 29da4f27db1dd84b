package convert

import (
	"fmt"
	"maps"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/api"
)

// NodeToDocker is a node as `docker node inspect` shows it.
func NodeToDocker(n *api.Node) swarm.Node {
	d := n.GetDescription()
	out := swarm.Node{
		ID:   n.GetId(),
		Meta: metaToDocker(n.GetMeta()),
		Spec: swarm.NodeSpec{
			Annotations:  annotationsToDocker(n.GetSpec().GetAnnotations()),
			Role:         roleToDocker(n.GetSpec().GetDesiredRole()),
			Availability: availabilityToDocker(n.GetSpec().GetAvailability()),
		},
		Description: swarm.NodeDescription{
			Hostname: d.GetHostname(),
			Platform: swarm.Platform{Architecture: d.GetPlatform().GetArchitecture(), OS: d.GetPlatform().GetOs()},
			Resources: swarm.Resources{
				NanoCPUs: d.GetResources().GetNanoCpus(), MemoryBytes: d.GetResources().GetMemoryBytes(),
			},
			Engine: swarm.EngineDescription{
				EngineVersion: d.GetEngine().GetEngineVersion(), Labels: maps.Clone(d.GetEngine().GetLabels()),
			},
		},
		Status: swarm.NodeStatus{
			State:   swarm.NodeState(strings.ToLower(n.GetStatus().GetState().String())),
			Message: n.GetStatus().GetMessage(),
			Addr:    n.GetStatus().GetAddr(),
		},
	}
	if root := d.GetTlsRootCa(); len(root) > 0 {
		out.Description.TLSInfo = tlsInfo(root)
	}
	if m := n.GetManagerStatus(); m != nil {
		out.ManagerStatus = &swarm.ManagerStatus{
			Leader:       m.GetLeader(),
			Reachability: swarm.Reachability(strings.ToLower(m.GetReachability().String())),
			Addr:         m.GetAddr(),
		}
	}
	return out
}

func roleToDocker(r api.NodeRole) swarm.NodeRole {
	if r == api.NodeRole_NODE_ROLE_MANAGER {
		return swarm.NodeRoleManager
	}
	return swarm.NodeRoleWorker
}

func availabilityToDocker(a api.NodeAvailability) swarm.NodeAvailability {
	switch a {
	case api.NodeAvailability_NODE_AVAILABILITY_PAUSE:
		return swarm.NodeAvailabilityPause
	case api.NodeAvailability_NODE_AVAILABILITY_DRAIN:
		return swarm.NodeAvailabilityDrain
	}
	return swarm.NodeAvailabilityActive
}

// NodeSpecFromDocker is the node spec of a `docker node update`. The
// role and availability must be docker's words (empty: worker, active).
func NodeSpecFromDocker(s swarm.NodeSpec) (*api.NodeSpec, error) {
	out := &api.NodeSpec{
		Annotations: annotationsFromDocker(s.Annotations),
		Membership:  api.NodeMembership_NODE_MEMBERSHIP_ACCEPTED,
	}
	switch swarm.NodeRole(strings.ToLower(string(s.Role))) {
	case swarm.NodeRoleWorker, "":
		out.DesiredRole = api.NodeRole_NODE_ROLE_WORKER
	case swarm.NodeRoleManager:
		out.DesiredRole = api.NodeRole_NODE_ROLE_MANAGER
	default:
		return nil, fmt.Errorf("invalid Role: %q", s.Role)
	}
	switch swarm.NodeAvailability(strings.ToLower(string(s.Availability))) {
	case swarm.NodeAvailabilityActive, "":
		out.Availability = api.NodeAvailability_NODE_AVAILABILITY_ACTIVE
	case swarm.NodeAvailabilityPause:
		out.Availability = api.NodeAvailability_NODE_AVAILABILITY_PAUSE
	case swarm.NodeAvailabilityDrain:
		out.Availability = api.NodeAvailability_NODE_AVAILABILITY_DRAIN
	default:
		return nil, fmt.Errorf("invalid Availability: %q", s.Availability)
	}
	return out, nil
}
