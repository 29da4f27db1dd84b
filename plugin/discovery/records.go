// Package discovery is service discovery on swarmd's overlay networks: it
// turns the endpoints and services the dispatcher streams for each network
// into DNS records served by a resolver listening on the network's gateway
// address (inside the network's namespace), and into virtual IP rules
// programmed inside the network namespace of every local container attached
// to the network.
package discovery

import (
	"net/netip"
	"slices"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/plugin/resolver"
	"github.com/openswarm/swarmd/plugin/vip"
)

// table is what one network serves: its DNS records and the backends of
// the virtual IPs of its services.
type table struct {
	records resolver.Records
	vips    vip.Rules
}

// tables computes the table of every network in nets. Only RUNNING tasks
// are resolved and balanced; a service without one still resolves to its
// virtual IP (whose connections are then refused) or, in dnsrr mode, to no
// address.
func tables(nets []*api.NetworkPeers) map[string]table {
	out := make(map[string]table, len(nets))
	for _, np := range nets {
		if np.GetNetworkId() == "" {
			continue
		}
		out[np.GetNetworkId()] = networkTable(np)
	}
	return out
}

func networkTable(np *api.NetworkPeers) table {
	running := map[string][]netip.Addr{} // service ID -> task addresses
	t := table{
		records: resolver.Records{Services: map[string]resolver.Service{}, Aliases: map[string][]netip.Addr{}},
		vips:    vip.Rules{},
	}
	for _, p := range np.GetPeers() {
		ip, err := netip.ParseAddr(p.GetIp())
		if err != nil || !ip.Is4() || !p.GetRunning() {
			continue
		}
		running[p.GetServiceId()] = append(running[p.GetServiceId()], ip)
		for _, name := range append([]string{p.GetName()}, p.GetAliases()...) {
			if name != "" && !slices.Contains(t.records.Aliases[name], ip) {
				t.records.Aliases[name] = append(t.records.Aliases[name], ip)
			}
		}
	}
	for _, s := range np.GetServices() {
		if s.GetName() == "" {
			continue
		}
		svc := resolver.Service{Tasks: running[s.GetServiceId()], Mode: resolver.ModeVIP}
		if s.GetDnsrr() {
			svc.Mode = resolver.ModeDNSRR
		} else if v, err := netip.ParseAddr(s.GetVip()); err == nil && v.Is4() {
			svc.VIPs = []netip.Addr{v}
			t.vips[v] = slices.Clone(svc.Tasks)
		} else {
			// No virtual IP yet: answer with the tasks meanwhile.
			svc.Mode = resolver.ModeDNSRR
		}
		t.records.Services[s.GetName()] = svc
	}
	return t
}

// rulesFor is the virtual IP rules of a container attached to networks:
// those of every service on any of them.
func rulesFor(networks []string, tabs map[string]table) vip.Rules {
	rules := vip.Rules{}
	for _, id := range networks {
		for v, backends := range tabs[id].vips {
			rules[v] = append(rules[v], backends...)
		}
	}
	return rules
}

// equalRules reports whether a and b map the same virtual IPs to the same
// sets of backends.
func equalRules(a, b vip.Rules) bool {
	if len(a) != len(b) {
		return false
	}
	for v, ab := range a {
		bb, ok := b[v]
		if !ok || len(ab) != len(bb) {
			return false
		}
		as, bs := slices.Clone(ab), slices.Clone(bb)
		slices.SortFunc(as, netip.Addr.Compare)
		slices.SortFunc(bs, netip.Addr.Compare)
		if !slices.Equal(as, bs) {
			return false
		}
	}
	return true
}
