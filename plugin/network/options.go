package network

import (
	"fmt"
	"net/netip"
	"strconv"

	helpers "github.com/docker/go-plugins-helpers/network"

	"github.com/openswarm/swarmd/plugin/overlay"
)

// Driver options (docker network create -o KEY=VALUE) understood by the
// driver. The swarm allocator's choices reach the driver through them.
const (
	// OptionVNI is the network's VXLAN network identifier (required).
	OptionVNI = "swarmd.vni"
	// OptionNetworkID is the swarm network ID; peers are programmed under
	// it. Without it the engine's network ID is used.
	OptionNetworkID = "swarmd.network.id"
	// OptionNetworkName is the swarm network name (informational).
	OptionNetworkName = "swarmd.network.name"
	// OptionMTU overrides the MTU (default: underlay MTU - 50).
	OptionMTU = "swarmd.mtu"
)

// Keys under which the engine passes options to a network driver.
const (
	engineGenericOptions = "com.docker.network.generic"
	engineMTUOption      = "com.docker.network.driver.mtu"
)

// stringOptions flattens the engine's network options: the user's -o
// options (nested under the generic key) win over top-level ones.
func stringOptions(opts map[string]any) map[string]string {
	out := make(map[string]string)
	add := func(m map[string]any) {
		for k, v := range m {
			switch v := v.(type) {
			case string:
				out[k] = v
			case float64:
				out[k] = strconv.FormatFloat(v, 'f', -1, 64)
			case bool:
				out[k] = strconv.FormatBool(v)
			}
		}
	}
	add(opts)
	switch g := opts[engineGenericOptions].(type) {
	case map[string]any:
		add(g)
	case map[string]string:
		for k, v := range g {
			out[k] = v
		}
	}
	return out
}

// ParseNetwork builds the overlay definition of engine network engineID from
// the engine's CreateNetwork request.
func ParseNetwork(req *helpers.CreateNetworkRequest) (overlay.Network, error) {
	opts := stringOptions(req.Options)
	n := overlay.Network{ID: req.NetworkID, Name: opts[OptionNetworkName]}
	if id := opts[OptionNetworkID]; id != "" {
		n.ID = id
	}
	vni, ok := opts[OptionVNI]
	if !ok {
		return n, fmt.Errorf("swarmd overlay: option %s is required", OptionVNI)
	}
	v, err := strconv.ParseUint(vni, 10, 32)
	if err != nil || v == 0 || v > overlay.MaxVNI {
		return n, fmt.Errorf("swarmd overlay: option %s=%q: want a number in 1..%d", OptionVNI, vni, overlay.MaxVNI)
	}
	n.VNI = uint32(v)
	for _, key := range []string{engineMTUOption, OptionMTU} {
		if s, ok := opts[key]; ok && s != "" && s != "0" {
			m, err := strconv.Atoi(s)
			if err != nil {
				return n, fmt.Errorf("swarmd overlay: option %s=%q: %w", key, s, err)
			}
			n.MTU = m
		}
	}
	if len(req.IPv6Data) > 0 {
		return n, fmt.Errorf("swarmd overlay: IPv6 is not supported")
	}
	if len(req.IPv4Data) != 1 || req.IPv4Data[0] == nil {
		return n, fmt.Errorf("swarmd overlay: want exactly one IPv4 subnet, got %d", len(req.IPv4Data))
	}
	d := req.IPv4Data[0]
	if n.Subnet, err = netip.ParsePrefix(d.Pool); err != nil {
		return n, fmt.Errorf("swarmd overlay: subnet %q: %w", d.Pool, err)
	}
	if d.Gateway != "" {
		gw, err := netip.ParsePrefix(d.Gateway)
		if err != nil {
			a, aerr := netip.ParseAddr(d.Gateway)
			if aerr != nil {
				return n, fmt.Errorf("swarmd overlay: gateway %q: %w", d.Gateway, err)
			}
			gw = netip.PrefixFrom(a, n.Subnet.Bits())
		}
		n.Gateway = gw.Addr()
	}
	return n, n.Validate()
}

// parseEndpointAddress returns the IPv4 address of a CIDR the engine gives.
func parseEndpointAddress(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("swarmd overlay: endpoint address %q: %w", s, err)
	}
	return a, nil
}
