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
// from DOCKER-USER, the chain the engine runs before its own rules, or
// from FORWARD on a host without it. It uses the iptables commands, so
// the rules land where the engine's are, whichever iptables backend the
// host uses.
type hostForward struct {
	run    func(ctx context.Context, stdin string, name string, args ...string) error
	ports  map[portKey]bool // ports accepted now
	hooked string           // chain holding the jump; "" = none yet
	clean  bool             // no chain of an earlier process can be left
}

func newHostForward() *hostForward { return &hostForward{run: runCommand} }

// runCommand runs name with args, stdin as its input.
func runCommand(ctx context.Context, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
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
	if err := h.run(ctx, forwardRestore(want), "iptables-restore", "-w", "--noflush"); err != nil {
		return err
	}
	h.ports = want
	if h.hooked != "" {
		return nil
	}
	parent := "DOCKER-USER"
	if err := h.run(ctx, "", "iptables", "-w", "-S", parent); err != nil {
		parent = "FORWARD"
	}
	if err := h.run(ctx, "", "iptables", "-w", "-C", parent, "-j", forwardChain); err != nil {
		if err := h.run(ctx, "", "iptables", "-w", "-I", parent, "1", "-j", forwardChain); err != nil {
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
		if h.run(ctx, "", "iptables", "-w", "-S", forwardChain) != nil {
			h.clean = true
			return nil
		}
	}
	for _, parent := range []string{"DOCKER-USER", "FORWARD"} {
		// -D removes one jump per call.
		for range 3 {
			if h.run(ctx, "", "iptables", "-w", "-D", parent, "-j", forwardChain) != nil {
				break
			}
		}
	}
	if err := h.run(ctx, "", "iptables", "-w", "-F", forwardChain); err != nil {
		return err
	}
	if err := h.run(ctx, "", "iptables", "-w", "-X", forwardChain); err != nil {
		return err
	}
	h.ports, h.hooked, h.clean = nil, "", true
	return nil
}
