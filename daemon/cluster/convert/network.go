package convert

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strconv"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/openswarm/swarmd/api"
)

// Network scopes and the one driver of swarm-scoped networks.
const (
	ScopeSwarm    = "swarm"
	OverlayDriver = "overlay"
	// vxlanIDOption is the driver option docker shows a swarm network's
	// VXLAN ID under.
	vxlanIDOption = "com.docker.network.driver.overlay.vxlanid_list"
)

// IsSwarmNetworkCreate reports whether a POST /networks/create asks for a
// swarm-scoped network: the overlay driver, or the swarm scope.
func IsSwarmNetworkCreate(req network.CreateRequest) bool {
	return req.Driver == OverlayDriver || req.Scope == ScopeSwarm
}

// NetworkSpecFromDocker is the spec of a swarm-scoped `docker network
// create` (or a network of `docker stack deploy`). Only the overlay driver
// and swarmd's own IPAM are available; what swarmd cannot honour is refused
// with an error naming it.
func NetworkSpecFromDocker(req network.CreateRequest) (*api.NetworkSpec, error) {
	switch {
	case req.Driver != "" && req.Driver != OverlayDriver:
		return nil, fmt.Errorf("Driver: swarm-scoped networks use the %s driver in swarmd, not %q", OverlayDriver, req.Driver)
	case req.Scope != "" && req.Scope != ScopeSwarm:
		return nil, fmt.Errorf("Scope: the %s driver only creates networks of scope %s, not %q", OverlayDriver, ScopeSwarm, req.Scope)
	case req.ConfigOnly || req.ConfigFrom != nil && req.ConfigFrom.Network != "":
		return nil, errors.New("ConfigOnly, ConfigFrom: config-only networks are not supported by swarmd")
	case req.Ingress:
		return nil, errors.New("Ingress: swarmd's routing mesh needs no ingress network")
	case req.EnableIPv6 != nil && *req.EnableIPv6:
		return nil, errors.New("EnableIPv6: IPv6 swarm networks are not supported by swarmd")
	case req.EnableIPv4 != nil && !*req.EnableIPv4:
		return nil, errors.New("EnableIPv4: swarm networks are IPv4 networks in swarmd")
	}
	out := &api.NetworkSpec{
		Annotations:   &api.Annotations{Name: req.Name, Labels: maps.Clone(req.Labels)},
		Driver:        OverlayDriver,
		DriverOptions: maps.Clone(req.Options),
		Internal:      req.Internal,
		Attachable:    req.Attachable,
	}
	if ipam := req.IPAM; ipam != nil {
		if ipam.Driver != "" && ipam.Driver != "default" {
			return nil, fmt.Errorf("IPAM.Driver: %q is not supported by swarmd (only %q)", ipam.Driver, "default")
		}
		if len(ipam.Options) > 0 {
			return nil, errors.New("IPAM.Options: not supported by swarmd")
		}
		for i, c := range ipam.Config {
			if len(c.AuxAddress) > 0 {
				return nil, fmt.Errorf("IPAM.Config[%d].AuxiliaryAddresses: not supported by swarmd", i)
			}
			out.Ipam = append(out.Ipam, &api.IPAMConfig{Subnet: c.Subnet, Range: c.IPRange, Gateway: c.Gateway})
		}
	}
	return out, nil
}

// NetworkToDocker is a swarm network as `docker network ls` and `docker
// network inspect` show it: scope swarm, its driver, the allocated IPAM
// (the requested one until the allocator has run), its VXLAN ID among the
// options.
func NetworkToDocker(n *api.Network) network.Inspect {
	spec := n.GetSpec()
	labels := maps.Clone(spec.GetAnnotations().GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	out := network.Inspect{
		ID:         n.GetId(),
		Name:       spec.GetAnnotations().GetName(),
		Created:    timeOf(n.GetMeta().GetCreatedAt()),
		Scope:      ScopeSwarm,
		Driver:     spec.GetDriver(),
		EnableIPv4: true,
		EnableIPv6: spec.GetIpv6Enabled(),
		IPAM:       network.IPAM{Driver: "default", Config: []network.IPAMConfig{}},
		Internal:   spec.GetInternal(),
		Attachable: spec.GetAttachable(),
		Ingress:    spec.GetIngress(),
		Options:    maps.Clone(spec.GetDriverOptions()),
		Labels:     labels,
	}
	if out.Driver == "" {
		out.Driver = OverlayDriver
	}
	ipam := n.GetIpam()
	if len(ipam) == 0 {
		ipam = spec.GetIpam()
	}
	for _, c := range ipam {
		out.IPAM.Config = append(out.IPAM.Config, network.IPAMConfig{Subnet: c.GetSubnet(), IPRange: c.GetRange(), Gateway: c.GetGateway()})
	}
	if n.GetVni() != 0 {
		if out.Options == nil {
			out.Options = map[string]string{}
		}
		out.Options[vxlanIDOption] = strconv.FormatUint(uint64(n.GetVni()), 10)
	}
	return out
}

// predefinedNetworks are the networks every engine has; `type=builtin`
// selects them.
var predefinedNetworks = map[string]bool{"bridge": true, "host": true, "none": true}

// ValidateNetworkFilters checks the filters of GET /networks as docker
// does: dangling, driver, id, label, name, scope and type (custom or
// builtin).
func ValidateNetworkFilters(args filters.Args) error {
	accepted := map[string]bool{"dangling": true, "driver": true, "id": true, "label": true, "name": true, "scope": true, "type": true}
	if err := args.Validate(accepted); err != nil {
		return err
	}
	for _, t := range args.Get("type") {
		if t != "custom" && t != "builtin" {
			return fmt.Errorf("invalid filter: 'type'='%s'", t)
		}
	}
	if _, err := args.GetBoolOrDefault("dangling", false); err != nil {
		return err
	}
	for _, k := range []string{"id", "name"} {
		for _, v := range args.Get(k) {
			if _, err := regexp.Compile(v); err != nil {
				return fmt.Errorf("invalid filter: '%s'='%s': %w", k, v, err)
			}
		}
	}
	return nil
}

// NetworkFilter is the predicate of GET /networks filters on swarm
// networks, docker's semantics: name and id match as regular expressions
// (so a plain value matches anywhere in the name or ID), driver and scope
// exactly, label as "key" or "key=value", type=custom selects them all and
// type=builtin none, dangling=true those no service uses (inUse tells).
func NetworkFilter(args filters.Args, inUse func(id string) bool) (func(network.Inspect) bool, error) {
	if err := ValidateNetworkFilters(args); err != nil {
		return nil, err
	}
	dangling, hasDangling := false, args.Contains("dangling")
	if hasDangling {
		dangling, _ = args.GetBoolOrDefault("dangling", false)
	}
	return func(n network.Inspect) bool {
		if args.Contains("driver") && !args.ExactMatch("driver", n.Driver) {
			return false
		}
		if args.Contains("scope") && !args.ExactMatch("scope", n.Scope) {
			return false
		}
		if args.Contains("name") && !args.Match("name", n.Name) {
			return false
		}
		if args.Contains("id") && !args.Match("id", n.ID) {
			return false
		}
		if args.Contains("label") && !args.MatchKVList("label", n.Labels) {
			return false
		}
		if args.Contains("type") {
			kind := "custom"
			if predefinedNetworks[n.Name] {
				kind = "builtin"
			}
			if !args.ExactMatch("type", kind) {
				return false
			}
		}
		if hasDangling && inUse != nil && inUse(n.ID) == dangling {
			return false
		}
		return true
	}, nil
}
