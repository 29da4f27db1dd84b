package vip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config configures a Programmer.
type Config struct {
	// Nft is the nft binary; empty means "nft" from PATH.
	Nft string
	// Table is the nftables table (family ip) owned by the Programmer;
	// empty means DefaultTable.
	Table string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Programmer applies Rules inside network namespaces. It is safe for
// concurrent use; calls for the same namespace path are serialised.
type Programmer struct {
	nft   string
	table string
	log   *slog.Logger

	mu    sync.Mutex
	locks map[string]*nsLock
}

type nsLock struct {
	mu   sync.Mutex
	refs int
}

// NewProgrammer returns a Programmer. It checks that the nft binary exists.
func NewProgrammer(cfg Config) (*Programmer, error) {
	p := &Programmer{nft: cfg.Nft, table: cfg.Table, log: cfg.Logger, locks: map[string]*nsLock{}}
	if p.nft == "" {
		p.nft = "nft"
	}
	if p.table == "" {
		p.table = DefaultTable
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if !validName(p.table) {
		return nil, fmt.Errorf("invalid nftables table name %q", p.table)
	}
	path, err := exec.LookPath(p.nft)
	if err != nil {
		return nil, fmt.Errorf("find nft: %w", err)
	}
	p.nft = path
	return p, nil
}

// Apply replaces the VIP table in the network namespace at nsPath with
// rules, in one nftables transaction: at no time does the namespace see a
// partial table. Applying the same rules again changes nothing. UDP
// conntrack entries towards a VIP whose backend is no longer listed are
// deleted, so the next datagram of such a flow picks a current backend; TCP
// connections keep their backend until they close.
func (p *Programmer) Apply(ctx context.Context, nsPath string, rules Rules) error {
	script, err := Render(p.table, rules)
	if err != nil {
		return err
	}
	unlock := p.lock(nsPath)
	defer unlock()
	if err := p.runNft(ctx, nsPath, script); err != nil {
		return fmt.Errorf("apply virtual IPs in %s: %w", nsPath, err)
	}
	n, err := flushStaleUDP(nsPath, rules)
	if err != nil {
		return fmt.Errorf("flush stale udp flows in %s: %w", nsPath, err)
	}
	p.log.Debug("virtual IPs applied", "netns", nsPath, "vips", len(rules), "udp_flows_flushed", n)
	return nil
}

// Clear removes the VIP table from the namespace at nsPath; a missing table
// is not an error.
func (p *Programmer) Clear(ctx context.Context, nsPath string) error {
	unlock := p.lock(nsPath)
	defer unlock()
	script := fmt.Sprintf("table ip %s {}\ndelete table ip %s\n", p.table, p.table)
	if err := p.runNft(ctx, nsPath, script); err != nil {
		return fmt.Errorf("clear virtual IPs in %s: %w", nsPath, err)
	}
	return nil
}

func (p *Programmer) lock(nsPath string) (unlock func()) {
	p.mu.Lock()
	l := p.locks[nsPath]
	if l == nil {
		l = &nsLock{}
		p.locks[nsPath] = l
	}
	l.refs++
	p.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		p.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(p.locks, nsPath)
		}
		p.mu.Unlock()
	}
}

// runNft runs "nft -f -" with script on stdin, as a process started from a
// thread inside the namespace at nsPath (a child inherits the network
// namespace of the thread that forks it).
func (p *Programmer) runNft(ctx context.Context, nsPath, script string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, p.nft, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	cmd.Stderr = &stderr
	if err := inNetns(nsPath, cmd.Start); err != nil {
		return fmt.Errorf("start %s: %w", p.nft, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// inNetns runs fn on a locked OS thread inside the network namespace at
// nsPath. The thread is discarded if it cannot switch back.
func inNetns(nsPath string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open network namespace %s: %w", nsPath, err)
			return
		}
		defer target.Close()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter network namespace %s: %w", nsPath, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and ends with this goroutine.
			done <- errors.Join(ferr, fmt.Errorf("restore network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// staleUDP matches UDP flows sent to a VIP whose backend (the reply source)
// is not among the VIP's current backends.
type staleUDP struct{ rules Rules }

func (f staleUDP) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP {
		return false
	}
	vip, ok := netip.AddrFromSlice(flow.Forward.DstIP)
	if !ok {
		return false
	}
	backends, ok := f.rules[vip.Unmap()]
	if !ok {
		return false
	}
	src, _ := netip.AddrFromSlice(flow.Reverse.SrcIP)
	for _, b := range backends {
		if b.Unmap() == src.Unmap() {
			return false
		}
	}
	return true
}

func flushStaleUDP(nsPath string, rules Rules) (uint, error) {
	if len(rules) == 0 {
		return 0, nil
	}
	norm := make(Rules, len(rules))
	for v, bs := range rules {
		norm[v.Unmap()] = append(norm[v.Unmap()], bs...)
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return 0, fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, staleUDP{norm})
	if err != nil {
		return n, fmt.Errorf("delete conntrack flows: %w", err)
	}
	return n, nil
}
