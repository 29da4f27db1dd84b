package mesh

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
)

// forwardChain is the chain of the host's iptables filter table in which
// the fast path accepts the connections its rules forward.
const forwardChain = "SWARMD-MESH"

// hostForward lets the host forward the fast path's connections: the
// engine sets the FORWARD policy to DROP on most hosts and accepts only
// what it publishes itself. Chain forwardChain accepts, in both directions,
// every connection DNATed from a published port of the fast path
// (conntrack state DNAT and original destination port), and is jumped to
// from DOCKER-USER, the chain the engine runs before its own rules (after
// the rules the host put there: a host that restricts forwarding to
// containers there keeps doing so), or from the top of FORWARD on a host
// without it. It uses the iptables commands, so
// the rules land where the engine's are, whichever iptables backend the
// host uses.
type hostForward struct {
	run    func(ctx context.Context, stdin string, name string, args ...string) (string, error)
	ports  map[portKey]bool // ports accepted now
	hooked string           // chain holding the jump; "" = none yet
	clean  bool             // no chain of an earlier process can be left
}

func newHostForward() *hostForward { return &hostForward{run: runCommand} }

// runCommand runs name with args, stdin as its input, and returns its
// output.
func runCommand(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.String(), nil
}

// jumpPosition is where the jump to forwardChain goes in chain, given the
// chain's rules as iptables -S lists them: before a last bare RETURN (the
// engine's DOCKER-USER ends with one), so the rules before it run first;
// 0 means at the end.
func jumpPosition(chain, listing string) int {
	var rules []string
	for _, l := range strings.Split(listing, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "-A "+chain+" ") {
			rules = append(rules, l)
		}
	}
	if n := len(rules); n > 0 && rules[n-1] == "-A "+chain+" -j RETURN" {
		return n
	}
	return 0
}

// forwardRestore is the iptables-restore --noflush input that makes
// forwardChain accept exactly ports (the chain is created if missing and
// flushed otherwise, in one commit). It is pure, for tests.
func forwardRestore(ports map[portKey]bool) string {
	keys := slices.SortedFunc(maps.Keys(ports), func(a, b portKey) int {
		return cmp.Or(cmp.Compare(a.Published, b.Published), cmp.Compare(a.Protocol, b.Protocol))
	})
	var b strings.Builder
	fmt.Fprintf(&b, "*filter\n:%s - [0:0]\n", forwardChain)
	for _, k := range keys {
		fmt.Fprintf(&b, "-A %s -p %s -m conntrack --ctstate DNAT --ctorigdstport %d -j ACCEPT\n", forwardChain, k.Protocol, k.Published)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// allow makes the chain accept the ports of rules; with keep, the ports
// it accepts already stay too (a superset while nft is being changed).
func (h *hostForward) allow(ctx context.Context, rules []fastRule, keep bool) error {
	want := map[portKey]bool{}
	if keep {
		maps.Copy(want, h.ports)
	}
	for _, r := range rules {
		if len(r.Backends) > 0 {
			want[portKey{r.Protocol, uint32(r.Published)}] = true
		}
	}
	if len(want) == 0 {
		return h.remove(ctx)
	}
	if maps.Equal(want, h.ports) && h.hooked != "" {
		return nil
	}
	if _, err := h.run(ctx, forwardRestore(want), "iptables-restore", "-w", "--noflush"); err != nil {
		return err
	}
	h.ports = want
	if h.hooked != "" {
		return nil
	}
	parent, at := "DOCKER-USER", []string{"-A", "DOCKER-USER"}
	if listing, err := h.run(ctx, "", "iptables", "-w", "-S", parent); err != nil {
		parent, at = "FORWARD", []string{"-I", "FORWARD", "1"}
	} else if n := jumpPosition(parent, listing); n > 0 {
		at = []string{"-I", parent, fmt.Sprint(n)}
	}
	if _, err := h.run(ctx, "", "iptables", "-w", "-C", parent, "-j", forwardChain); err != nil {
		if _, err := h.run(ctx, "", "iptables", append(append([]string{"-w"}, at...), "-j", forwardChain)...); err != nil {
			return err
		}
	}
	h.hooked = parent
	return nil
}

// remove deletes the jump and the chain, if this mesh made them or an
// earlier process left them.
func (h *hostForward) remove(ctx context.Context) error {
	if h.ports == nil && h.hooked == "" {
		if h.clean {
			return nil
		}
		// A chain left by an earlier swarmd (killed): remove it if there.
		if _, err := h.run(ctx, "", "iptables", "-w", "-S", forwardChain); err != nil {
			h.clean = true
			return nil
		}
	}
	for _, parent := range []string{"DOCKER-USER", "FORWARD"} {
		// -D removes one jump per call.
		for range 3 {
			if _, err := h.run(ctx, "", "iptables", "-w", "-D", parent, "-j", forwardChain); err != nil {
				break
			}
		}
	}
	if _, err := h.run(ctx, "", "iptables", "-w", "-F", forwardChain); err != nil {
		return err
	}
	if _, err := h.run(ctx, "", "iptables", "-w", "-X", forwardChain); err != nil {
		return err
	}
	h.ports, h.hooked, h.clean = nil, "", true
	return nil
}
