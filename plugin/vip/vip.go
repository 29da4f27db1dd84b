// Package vip gives swarm services virtual IPs without IPVS. Inside a
// container's network namespace it programs one nftables table that DNATs
// every new connection (any protocol, any port) to a service VIP onto one of
// the service's current task IPs, chosen round robin per connection.
//
// Packets a container sends traverse the nat output hook, so no address or
// ARP entry for the VIP is needed, only a route covering it (the overlay
// subnet the VIP is allocated from). Connections keep the backend conntrack
// chose for them when the table changes; new ones only go to the backends of
// the latest table. A VIP without backends refuses connections (TCP reset,
// ICMP port unreachable) instead of dropping them.
package vip

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// DefaultTable is the nftables table (family ip) the Programmer owns.
const DefaultTable = "swarmd-vip"

// Rules maps each service VIP to the task IPs that currently back it.
type Rules map[netip.Addr][]netip.Addr

// Render returns the nft script that replaces table with rules in a single
// transaction: it creates the table if missing, deletes it, and defines it
// again (unless there are no rules), so applying the script twice gives the same state. VIPs and
// backends are sorted and deduplicated, so equal Rules render equal scripts.
func Render(table string, rules Rules) (string, error) {
	if !validName(table) {
		return "", fmt.Errorf("invalid nftables table name %q", table)
	}
	vips := make([]netip.Addr, 0, len(rules))
	for v := range rules {
		if !v.Unmap().Is4() {
			return "", fmt.Errorf("virtual IP %v: only IPv4 is supported", v)
		}
		vips = append(vips, v.Unmap())
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	vips = slices.Compact(vips)

	var nat, refuse []string
	for _, v := range vips {
		backends, err := backendsOf(rules, v)
		if err != nil {
			return "", err
		}
		switch len(backends) {
		case 0:
			refuse = append(refuse, v.String())
		case 1:
			nat = append(nat, fmt.Sprintf("ip daddr %s dnat to %s", v, backends[0]))
		default:
			elems := make([]string, len(backends))
			for i, b := range backends {
				elems[i] = fmt.Sprintf("%d : %s", i, b)
			}
			nat = append(nat, fmt.Sprintf("ip daddr %s dnat to numgen inc mod %d map { %s }",
				v, len(backends), strings.Join(elems, ", ")))
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {}\n", table)
	fmt.Fprintf(&b, "delete table ip %s\n", table)
	if len(vips) == 0 {
		// No table at all: its hooks would cost every packet.
		return b.String(), nil
	}
	fmt.Fprintf(&b, "table ip %s {\n", table)
	b.WriteString("\tchain nat-output {\n")
	b.WriteString("\t\ttype nat hook output priority -100; policy accept;\n")
	for _, r := range nat {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n")
	// Packets still addressed to a VIP after the nat chain have no
	// backend. A filter chain sees every packet (the nat chain only the
	// first of a connection): it exists only while a VIP needs it.
	if len(refuse) > 0 {
		set := strings.Join(refuse, ", ")
		b.WriteString("\tchain filter-output {\n")
		b.WriteString("\t\ttype filter hook output priority 0; policy accept;\n")
		fmt.Fprintf(&b, "\t\tip daddr { %s } meta l4proto tcp reject with tcp reset\n", set)
		fmt.Fprintf(&b, "\t\tip daddr { %s } reject with icmp type port-unreachable\n", set)
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// backendsOf returns the sorted, deduplicated IPv4 backends of v, merging
// the entries of rules whose key maps to v.
func backendsOf(rules Rules, v netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	for k, bs := range rules {
		if k.Unmap() != v {
			continue
		}
		for _, b := range bs {
			if !b.Unmap().Is4() {
				return nil, fmt.Errorf("backend %v of virtual IP %v: only IPv4 is supported", b, v)
			}
			out = append(out, b.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '_'):
		default:
			return false
		}
	}
	return true
}
