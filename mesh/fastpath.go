package mesh

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// nftTable is the nftables table (family ip) of the kernel fast path.
const nftTable = "swarmd_mesh"

// forwardedDSCP is the DSCP codepoint (pool 2, experimental or local use,
// RFC 2474) a node's kernel sets on the first packet of a connection it
// forwards to another node's published port. The receiving node gives such
// a connection to one of its own tasks (or to its userspace mesh), never
// to a third node: one hop at most.
const forwardedDSCP = 0x3b

// fastRule is one published port the kernel forwards (DNAT), round robin
// over its tasks: a local task at its container's address and target port,
// a remote task at its node's address and the published port.
type fastRule struct {
	Protocol  Protocol
	Published uint16
	Backends  []netip.AddrPort // one per task
	Local     []netip.AddrPort // the local tasks' containers
	Peers     []netip.Addr     // the nodes of the remote tasks, sorted, once each
}

// dnatTo is the nft statement that sends a new connection to one of to,
// round robin.
func dnatTo(to []netip.AddrPort) string {
	if len(to) == 1 {
		return "dnat ip to " + to[0].String()
	}
	elems := make([]string, len(to))
	for i, ap := range to {
		elems[i] = fmt.Sprintf("%d : %s . %d", i, ap.Addr(), ap.Port())
	}
	return fmt.Sprintf("dnat ip to numgen inc mod %d map { %s }", len(to), strings.Join(elems, ", "))
}

// nftRuleset returns the nft script that atomically replaces the table
// ip swarmd_mesh with rules (no rules: removes it). bind is the IPv4
// address the ports are published on; the zero Addr means every local
// address. It is pure, for tests; rules are sorted by port.
//
// Per port, prerouting first catches connections another node forwarded
// (forwardedDSCP): they go to a local task, or, with none left here, to
// the userspace mesh (no DNAT). Every other new connection, in prerouting
// and in output, goes to the next task of the port. Postrouting
// masquerades the connections sent on to another node, so its answers
// come back through this node, and marks their first packet.
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
	var pre, out, post strings.Builder
	for _, r := range rules {
		if len(r.Backends) == 0 {
			continue
		}
		// A forwarded connection was sent to this node's address, whatever
		// address the mesh binds: match every local address.
		marked := fmt.Sprintf("fib daddr type local ip dscp %#x %s dport %d", forwardedDSCP, r.Protocol, r.Published)
		if len(r.Local) > 0 {
			fmt.Fprintf(&pre, "\t\t%s %s\n", marked, dnatTo(r.Local))
		} else {
			fmt.Fprintf(&pre, "\t\t%s accept\n", marked)
		}
		to := dnatTo(r.Backends)
		fmt.Fprintf(&pre, "\t\t%s %s dport %d %s\n", dst, r.Protocol, r.Published, to)
		// Locally originated connections to a loopback address cannot be
		// sent to a container or another node (martian source): those
		// stay in userspace.
		lo := ""
		if slices.ContainsFunc(r.Backends, func(ap netip.AddrPort) bool { return !ap.Addr().IsLoopback() }) {
			lo = " ip daddr != 127.0.0.0/8"
		}
		fmt.Fprintf(&out, "\t\t%s%s %s dport %d %s\n", dst, lo, r.Protocol, r.Published, to)
		if len(r.Peers) > 0 {
			peers := make([]string, len(r.Peers))
			for i, a := range r.Peers {
				peers[i] = a.String()
			}
			fmt.Fprintf(&post, "\t\tct status dnat ip daddr { %s } %s dport %d ip dscp set %#x masquerade\n",
				strings.Join(peers, ", "), r.Protocol, r.Published, forwardedDSCP)
		}
	}
	fmt.Fprintf(&b, "table ip %s {\n", nftTable)
	b.WriteString("\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
	b.WriteString(pre.String())
	b.WriteString("\t}\n\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n")
	b.WriteString(out.String())
	if post.Len() > 0 {
		b.WriteString("\t}\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		b.WriteString(post.String())
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// fastPath is the state of the kernel fast path of a mesh.
type fastPath struct {
	mu      sync.Mutex
	run     func(ctx context.Context, script string) error // applies a script
	fw      *hostForward                                   // opens the host's FORWARD path; nil = not needed
	applied string                                         // last script applied, "" = none
	active  map[portKey]bool                               // ports the kernel forwards
	retry   bool                                           // last sync left ports out: try again
	clean   bool                                           // a script ran: no table of an earlier process is left
	ready   map[string]bool                                // local TCP tasks seen accepting connections
	probing map[string]bool                                // local TCP tasks being probed
}

// Probing a new local TCP task before the kernel sends it connections:
// every probeEvery, each attempt bounded by probeDial, for probeFor at most.
const (
	probeEvery = 50 * time.Millisecond
	probeDial  = 500 * time.Millisecond
	probeFor   = 2 * time.Minute
)

// runNft applies an nft script with the nft binary.
func runNft(ctx context.Context, script string) error {
	_, err := runCommand(ctx, script, "nft", "-f", "-")
	return err
}

// syncFastPath programs the kernel to forward the ports of table, and
// only those. A port with a local task whose address cannot be resolved
// (or is not IPv4) stays in userspace and is retried on the next Update;
// so does, for good, a port with a remote task whose node's tunnel host
// is not an IPv4 address. Called with m.mu held.
func (m *Mesh) syncFastPath(table map[portKey]Port, changed bool) {
	fp := m.fast
	if fp == nil {
		return
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if !changed && !fp.retry && fp.clean {
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
		r, ok, again := m.fastRule(ctx, p)
		if !ok {
			retry = retry || again
			continue
		}
		rules = append(rules, r)
		active[k] = true
	}
	local := localTasks(m.cfg.NodeID, table)
	for id := range fp.ready {
		if !local[id] {
			delete(fp.ready, id)
		}
	}
	script := nftRuleset(bind, rules)
	// Until a script ran, a table left by an earlier swarmd (killed) may be
	// there: the first sync replaces or removes it, even with no rules.
	if fp.clean && (script == fp.applied || (fp.applied == "" && len(rules) == 0)) {
		fp.retry = retry
		return
	}
	// The host may forward what the new rules DNAT before they exist, and
	// stops forwarding removed ports only after their rules are gone.
	if fp.fw != nil {
		if err := fp.fw.allow(ctx, rules, true); err != nil {
			m.warnLimited("mesh fast path: iptables failed, the host may not forward to containers or nodes", "error", err)
		}
	}
	if err := fp.run(ctx, script); err != nil {
		m.warnLimited("mesh fast path: nft failed, ports stay in userspace", "error", err)
		fp.retry = true
		return
	}
	if fp.fw != nil {
		if err := fp.fw.allow(ctx, rules, false); err != nil {
			m.warnLimited("mesh fast path: iptables failed, the host may not forward to containers or nodes", "error", err)
		}
	}
	fp.applied, fp.active, fp.retry, fp.clean = script, active, retry, true
	if len(rules) == 0 {
		fp.applied = ""
	}
	m.log.Info("mesh fast path programmed", "ports", len(rules))
}

// fastRule returns the kernel rule of port p: ok if every local task
// resolves to an IPv4 address and every remote task's node has an IPv4
// tunnel host; retry if a local task may resolve later.
func (m *Mesh) fastRule(ctx context.Context, p Port) (r fastRule, ok, retry bool) {
	if len(p.Backends) == 0 || p.Published == 0 || p.Published > 65535 {
		return fastRule{}, false, false
	}
	r = fastRule{Protocol: p.Protocol, Published: uint16(p.Published)}
	for _, b := range p.Backends {
		if b.NodeID != m.cfg.NodeID {
			peer, err := tunnelHost(b.Tunnel)
			if err != nil {
				return fastRule{}, false, false
			}
			r.Backends = append(r.Backends, netip.AddrPortFrom(peer, r.Published))
			if !slices.Contains(r.Peers, peer) {
				r.Peers = append(r.Peers, peer)
			}
			continue
		}
		addr, err := m.cfg.Resolver.TaskAddr(ctx, b.TaskID)
		if err != nil || !addr.Unmap().Is4() {
			return fastRule{}, false, true
		}
		target := p.Target
		if m.cfg.TargetOverride != nil {
			target = m.cfg.TargetOverride(b.TaskID, target)
		}
		if target == 0 || target > 65535 {
			return fastRule{}, false, false
		}
		ap := netip.AddrPortFrom(addr.Unmap(), uint16(target))
		// The kernel cannot try another task if this one does not listen
		// yet: a TCP task gets kernel connections once it accepted one.
		if p.Protocol == TCP && !m.fast.ready[b.TaskID] {
			m.probe(b.TaskID, ap)
			continue
		}
		r.Backends = append(r.Backends, ap)
		r.Local = append(r.Local, ap)
	}
	if len(r.Backends) == 0 {
		return fastRule{}, false, false // a probe syncs again
	}
	slices.SortFunc(r.Peers, netip.Addr.Compare)
	return r, true, false
}

// probe starts probing a local TCP task, unless it is being probed: once
// it accepts a connection it is ready and the rules are synced again.
// Called with m.mu and m.fast.mu held.
func (m *Mesh) probe(taskID string, to netip.AddrPort) {
	fp := m.fast
	if fp.probing[taskID] {
		return
	}
	if fp.probing == nil {
		fp.probing, fp.ready = map[string]bool{}, map[string]bool{}
	}
	fp.probing[taskID] = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ok := m.waitListening(to)
		fp.mu.Lock()
		delete(fp.probing, taskID)
		if ok {
			fp.ready[taskID] = true
		}
		fp.mu.Unlock()
		if !ok {
			if m.ctx.Err() == nil {
				m.warnLimited("mesh fast path: a task does not accept connections, it gets none from the kernel", "task.id", taskID, "addr", to)
			}
			return
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.closed {
			m.syncFastPath(m.table, true)
		}
	}()
}

// waitListening reports whether to accepts a TCP connection within
// probeFor, trying every probeEvery; false also once the mesh closes.
func (m *Mesh) waitListening(to netip.AddrPort) bool {
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	stop := time.Now().Add(probeFor)
	d := net.Dialer{Timeout: probeDial}
	for {
		if c, err := d.DialContext(m.ctx, "tcp", to.String()); err == nil {
			_ = c.Close()
			return true
		}
		if time.Now().After(stop) {
			return false
		}
		select {
		case <-m.ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// tunnelHost is the IPv4 address of a node's mesh tunnel host:port.
func tunnelHost(tunnel string) (netip.Addr, error) {
	host, _, err := net.SplitHostPort(tunnel)
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, err
	}
	if a = a.Unmap(); !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("tunnel host %s: not a routable IPv4 address", a)
	}
	return a, nil
}

// closeFastPath removes the table, if the mesh programmed it, and then
// the host firewall's rules.
func (m *Mesh) closeFastPath() {
	fp := m.fast
	if fp == nil {
		return
	}
	fp.mu.Lock()
	defer fp.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if fp.applied != "" {
		if err := fp.run(ctx, nftRuleset(netip.Addr{}, nil)); err != nil {
			m.log.Warn("mesh fast path: removing the nft table failed", "error", err)
		}
	}
	if fp.fw != nil {
		if err := fp.fw.remove(ctx); err != nil {
			m.log.Warn("mesh fast path: removing the iptables rules failed", "error", err)
		}
	}
	fp.applied, fp.active = "", nil
}
