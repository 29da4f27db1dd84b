package mesh

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// nftTable is the nftables table (family ip) of the kernel fast path.
const nftTable = "swarmd_mesh"

// fastRule is one published port the kernel forwards (DNAT) to local
// containers, round robin.
type fastRule struct {
	Protocol  Protocol
	Published uint16
	Backends  []netip.AddrPort // IPv4 container addresses
}

// nftRuleset returns the nft script that atomically replaces the table
// ip swarmd_mesh with rules (no rules: removes it). bind is the IPv4
// address the ports are published on; the zero Addr means every local
// address. It is pure, for tests; rules are sorted by port.
func nftRuleset(bind netip.Addr, rules []fastRule) string {
	var b strings.Builder
	// Creating the table first makes the delete valid if it did not exist:
	// the script is one transaction, whatever the current state.
	fmt.Fprintf(&b, "table ip %s {}\ndelete table ip %s\n", nftTable, nftTable)
	if len(rules) == 0 {
		return b.String()
	}
	rules = slices.Clone(rules)
	slices.SortFunc(rules, func(x, y fastRule) int {
		return cmp.Or(cmp.Compare(x.Published, y.Published), cmp.Compare(x.Protocol, y.Protocol))
	})
	dst := "fib daddr type local"
	if bind.IsValid() && !bind.IsUnspecified() {
		dst = "ip daddr " + bind.String()
	}
	var pre, out strings.Builder
	for _, r := range rules {
		if len(r.Backends) == 0 {
			continue
		}
		match := fmt.Sprintf("%s %s dport %d", dst, r.Protocol, r.Published)
		var to string
		if len(r.Backends) == 1 {
			to = "dnat ip to " + r.Backends[0].String()
		} else {
			elems := make([]string, len(r.Backends))
			for i, ap := range r.Backends {
				elems[i] = fmt.Sprintf("%d : %s . %d", i, ap.Addr(), ap.Port())
			}
			to = fmt.Sprintf("dnat ip to numgen inc mod %d map { %s }", len(r.Backends), strings.Join(elems, ", "))
		}
		fmt.Fprintf(&pre, "\t\t%s %s\n", match, to)
		// Locally originated connections to a loopback address cannot be
		// sent to a container (martian source): those stay in userspace.
		lo := ""
		if slices.ContainsFunc(r.Backends, func(ap netip.AddrPort) bool { return !ap.Addr().IsLoopback() }) {
			lo = " ip daddr != 127.0.0.0/8"
		}
		fmt.Fprintf(&out, "\t\t%s%s %s dport %d %s\n", dst, lo, r.Protocol, r.Published, to)
	}
	fmt.Fprintf(&b, "table ip %s {\n", nftTable)
	b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
	b.WriteString(pre.String())
	b.WriteString("\t}\n\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n")
	b.WriteString(out.String())
	b.WriteString("\t}\n}\n")
	return b.String()
}

// fastPath is the state of the kernel fast path of a mesh.
type fastPath struct {
	mu      sync.Mutex
	run     func(ctx context.Context, script string) error // applies a script
	applied string                                         // last script applied, "" = none
	active  map[portKey]bool                               // ports the kernel forwards
	retry   bool                                           // last sync left ports out: try again
}

// runNft applies an nft script with the nft binary.
func runNft(ctx context.Context, script string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// syncFastPath programs the kernel to forward the ports of table whose
// backends all run on this node, and only those. A port whose task
// addresses cannot be resolved (or are not IPv4) stays in userspace and is
// retried on the next Update. Called with m.mu held.
func (m *Mesh) syncFastPath(table map[portKey]Port, changed bool) {
	fp := m.fast
	if fp == nil {
		return
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if !changed && !fp.retry {
		return
	}
	var bind netip.Addr
	if m.cfg.BindAddr != "" {
		bind = netip.MustParseAddr(m.cfg.BindAddr).Unmap()
		if !bind.Is4() {
			return // the fast path is IPv4 only
		}
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.DialTimeout)
	defer cancel()
	retry := false
	var rules []fastRule
	active := make(map[portKey]bool)
	for k, p := range table {
		r, ok := m.fastRule(ctx, p)
		if !ok {
			retry = retry || len(p.Backends) > 0 && allLocal(m.cfg.NodeID, p)
			continue
		}
		rules = append(rules, r)
		active[k] = true
	}
	script := nftRuleset(bind, rules)
	if script == fp.applied || (fp.applied == "" && len(rules) == 0) {
		fp.retry = retry
		return
	}
	if err := fp.run(ctx, script); err != nil {
		m.warnLimited("mesh fast path: nft failed, ports stay in userspace", "error", err)
		fp.retry = true
		return
	}
	fp.applied, fp.active, fp.retry = script, active, retry
	if len(rules) == 0 {
		fp.applied = ""
	}
	m.log.Info("mesh fast path programmed", "ports", len(rules))
}

func allLocal(nodeID string, p Port) bool {
	for _, b := range p.Backends {
		if b.NodeID != nodeID {
			return false
		}
	}
	return true
}

// fastRule returns the kernel rule of port p, if every backend is local
// and resolves to an IPv4 address.
func (m *Mesh) fastRule(ctx context.Context, p Port) (fastRule, bool) {
	if len(p.Backends) == 0 || !allLocal(m.cfg.NodeID, p) {
		return fastRule{}, false
	}
	r := fastRule{Protocol: p.Protocol, Published: uint16(p.Published)}
	for _, b := range p.Backends {
		addr, err := m.cfg.Resolver.TaskAddr(ctx, b.TaskID)
		if err != nil || !addr.Unmap().Is4() {
			return fastRule{}, false
		}
		target := p.Target
		if m.cfg.TargetOverride != nil {
			target = m.cfg.TargetOverride(b.TaskID, target)
		}
		if target == 0 || target > 65535 {
			return fastRule{}, false
		}
		r.Backends = append(r.Backends, netip.AddrPortFrom(addr.Unmap(), uint16(target)))
	}
	return r, true
}

// closeFastPath removes the table, if the mesh programmed it.
func (m *Mesh) closeFastPath() {
	fp := m.fast
	if fp == nil {
		return
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if fp.applied == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := fp.run(ctx, nftRuleset(netip.Addr{}, nil)); err != nil {
		m.log.Warn("mesh fast path: removing the nft table failed", "error", err)
	}
	fp.applied, fp.active = "", nil
}
