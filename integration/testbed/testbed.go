// Package testbed runs several swarmd hosts on one Linux machine, each with
// its own address, its own Docker Engine and its own swarmd, so that
// multi-host tests can start, stop, kill, pause, slow down and cut off hosts.
//
// Layout:
//
//   - a bridge swbr0 with 10.99.0.1/24 in the root network namespace, plus
//     two rules at the top of the root engine's DOCKER-USER chain: accept
//     traffic between the hosts, drop anything from the hosts that would
//     leave the bridge;
//   - host hN is the network namespace swtb-hN with a veth (root side
//     swtb-hN on the bridge, eth0 inside) at 10.99.0.(10+N), default route via
//     10.99.0.1;
//   - each host runs its own dockerd (which starts its own containerd) in that
//     namespace, with its own UTS namespace (hostname hN), its own mount
//     namespace (cgroup hierarchies remounted, /etc/docker and
//     /etc/resolv.conf bind-mounted from the host's directory), data root
//     /var/lib/swtb-hN, exec root /var/run/swtb-hN and socket
//     /var/run/swtb-hN.sock;
//   - swarmd, once started, runs in the same network namespace and serves
//     its Engine API on a socket in the host's directory.
//
// The test driver stays in the root namespace: unix sockets (engines,
// swarmds) are reachable from there, so Docker and Engine run the docker CLI
// from there. Host.HTTPClient, DialContext, Listen and ListenPacket create
// their sockets inside a host's namespace (a thread that setns()es into it),
// so that traffic comes from the host's address and is subject to Partition
// and Netem; 10.99.0.x is also routable from the root namespace (source
// 10.99.0.1), which Partition does not cut.
//
// This kernel has no IPVS and no netem qdisc: see Netem for what is
// emulated.
//
// Only one testbed can exist on a machine at a time: New takes the lock file
// /run/swtb.lock (waiting for it) and first removes whatever a crashed
// earlier testbed left behind. Everything requires root.
package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Names and addresses the testbed uses; nothing outside them is touched.
const (
	Bridge    = "swbr0"
	Subnet    = "10.99.0.0/24"
	BridgeIP  = "10.99.0.1"
	prefixLen = "24"
	nsPrefix  = "swtb-h"
	lockFile  = "/run/swtb.lock"
	// maxHosts bounds the host numbers (10.99.0.11 .. 10.99.0.(10+maxHosts)).
	maxHosts = 200
	// partChain is the chain in each host's raw table that Partition fills.
	partChain = "SWTB-PART"
	// netemChain is the chain in each host's mangle table that Netem's
	// loss emulation fills.
	netemChain = "SWTB-NETEM"
	// overlayNSPrefix starts the names of the overlay network namespaces
	// of the hosts' swarmd (swov-<host address>-...).
	overlayNSPrefix = "swov-10.99.0."
	// keptMarker marks a directory kept with SWTB_KEEP=1, which a later
	// testbed must not remove as a leftover.
	keptMarker = "KEPT"
)

// Config says what testbed to build.
type Config struct {
	// Hosts is the number of hosts (h1..hN), at least 1.
	Hosts int
	// SwarmdBin is the directory holding the swarmd binary (needed only
	// for StartSwarmd).
	SwarmdBin string
	// Images are the tags built with internal/testimage on every host's
	// engine.
	Images []string
	// Logf, if set, receives progress messages (e.g. t.Logf).
	Logf func(string, ...any)
	// RoutedBridges gives each host's engine a docker0 subnet of its own
	// (Host.BridgeSubnet) instead of the engines' common default, so that
	// another host can reach its containers through it (RouteBridge).
	RoutedBridges bool
}

// Testbed is a set of hosts on one bridge. Close it.
type Testbed struct {
	cfg   Config
	dir   string // logs and state of all hosts
	hosts []*Host
	lock  *os.File

	// userChain is the root chain holding the accept and guard rules
	// ("" until they are inserted).
	userChain string

	closeOnce sync.Once
	closeErr  error
	// Timings of New's steps, for reports.
	Timings map[string]time.Duration
	mu      sync.Mutex
}

// New builds the testbed: bridge, rules, one namespace, veth and engine per
// host (engines start in parallel), and the images on every engine. On error
// everything created so far is removed again.
func New(ctx context.Context, cfg Config) (*Testbed, error) {
	if cfg.Hosts < 1 || cfg.Hosts > maxHosts {
		return nil, fmt.Errorf("testbed: %d hosts: want 1..%d", cfg.Hosts, maxHosts)
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	start := time.Now()
	tb := &Testbed{cfg: cfg, Timings: map[string]time.Duration{}}
	if err := tb.acquireLock(ctx); err != nil {
		return nil, err
	}
	if err := tb.build(ctx); err != nil {
		return nil, errors.Join(err, tb.Close())
	}
	tb.timing("total", time.Since(start))
	cfg.Logf("testbed: %d hosts ready in %s (%s)", cfg.Hosts, time.Since(start).Round(time.Millisecond), tb.dir)
	return tb, nil
}

func (tb *Testbed) timing(step string, d time.Duration) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.Timings[step] = d
}

func (tb *Testbed) build(ctx context.Context) error {
	t0 := time.Now()
	if err := cleanStale(ctx); err != nil {
		return fmt.Errorf("testbed: remove leftovers of an earlier testbed: %w", err)
	}
	dir, err := os.MkdirTemp("", "swtb-")
	if err != nil {
		return fmt.Errorf("testbed: temp dir: %w", err)
	}
	tb.dir = dir
	if err := tb.setupBridge(ctx); err != nil {
		return err
	}
	tb.timing("bridge", time.Since(t0))
	for i := 1; i <= tb.cfg.Hosts; i++ {
		h, err := newHost(tb, i)
		if err != nil {
			return err
		}
		tb.hosts = append(tb.hosts, h)
	}

	// Every host: network, then engine; all hosts in parallel. The images
	// are built on h1 as soon as its engine answers and copied to the others
	// as soon as theirs do.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make([]chan struct{}, len(tb.hosts))
	errs := make([]error, len(tb.hosts)+1)
	var wg sync.WaitGroup
	for i, h := range tb.hosts {
		ready[i] = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			if err := h.setupNet(ctx); err != nil {
				errs[i] = err
				cancel()
				return
			}
			if err := h.startEngine(ctx); err != nil {
				errs[i] = err
				cancel()
				return
			}
			tb.timing("engine "+h.Name, time.Since(t))
			close(ready[i])
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.Now()
		errs[len(tb.hosts)] = tb.buildImages(ctx, ready)
		tb.timing("images", time.Since(t))
	}()
	wg.Wait()
	return errors.Join(errs...)
}

// Dir is the directory holding every host's logs and state.
func (tb *Testbed) Dir() string { return tb.dir }

// Hosts returns the hosts, h1 first.
func (tb *Testbed) Hosts() []*Host { return append([]*Host(nil), tb.hosts...) }

// Host returns host hN (1-based).
func (tb *Testbed) Host(n int) *Host { return tb.hosts[n-1] }

// Close stops every swarmd and engine and removes namespaces, veths, the
// bridge, the rules, data roots and (unless SWTB_KEEP=1) the directory with
// logs and state. It is idempotent and best effort: all errors are joined.
func (tb *Testbed) Close() error {
	tb.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if tb.dir != "" && os.Getenv("SWTB_KEEP") == "1" {
			// Before cleanStale, which removes unmarked directories.
			_ = os.WriteFile(filepath.Join(tb.dir, keptMarker), nil, 0o644)
		}
		errs := make([]error, len(tb.hosts))
		var wg sync.WaitGroup
		for i, h := range tb.hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = h.teardown(ctx)
			}()
		}
		wg.Wait()
		// Whatever is left over (also of hosts New did not get to).
		errs = append(errs, cleanStale(ctx))
		if tb.userChain != "" {
			errs = append(errs, deleteRootRules(ctx, tb.userChain))
		}
		if tb.dir != "" && os.Getenv("SWTB_KEEP") != "1" {
			if err := os.RemoveAll(tb.dir); err != nil {
				errs = append(errs, fmt.Errorf("testbed: remove %s: %w", tb.dir, err))
			}
		} else if tb.dir != "" {
			tb.cfg.Logf("testbed: SWTB_KEEP=1: kept %s", tb.dir)
		}
		if tb.lock != nil {
			_ = os.Remove(lockFile)
			_ = syscall.Flock(int(tb.lock.Fd()), syscall.LOCK_UN)
			_ = tb.lock.Close()
		}
		tb.closeErr = errors.Join(errs...)
	})
	return tb.closeErr
}

// acquireLock waits for the machine-wide testbed lock: an flock on
// lockFile, which Close removes again (hence the check that the locked file
// is still the one at the path).
func (tb *Testbed) acquireLock(ctx context.Context) error {
	for {
		f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return fmt.Errorf("testbed: lock: %w", err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			var held, now syscall.Stat_t
			if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(lockFile, &now) == nil &&
				held.Ino == now.Ino && held.Dev == now.Dev {
				tb.lock = f
				return nil
			}
			f.Close() // removed by the previous holder: try the new file
			continue
		}
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("testbed: lock %s: %w", lockFile, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbed: wait for %s (another testbed runs): %w", lockFile, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// setupBridge creates the bridge and inserts the root rules.
func (tb *Testbed) setupBridge(ctx context.Context) error {
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", BridgeIP + "/" + prefixLen, "dev", Bridge},
		{"link", "set", Bridge, "up"},
	} {
		if _, err := run(ctx, "ip", args...); err != nil {
			return fmt.Errorf("testbed: bridge: %w", err)
		}
	}
	// The root engine sets FORWARD to DROP and hooks DOCKER-USER into it;
	// without a root engine, use FORWARD itself.
	chain := "DOCKER-USER"
	if _, err := run(ctx, "iptables", "-w", "-S", chain); err != nil {
		chain = "FORWARD"
	}
	tb.userChain = chain
	if _, err := run(ctx, "iptables", "-w", "-I", chain, "1", "-i", Bridge, "-o", Bridge, "-j", "ACCEPT"); err != nil {
		return fmt.Errorf("testbed: accept rule: %w", err)
	}
	if _, err := run(ctx, "iptables", "-w", "-I", chain, "2", "-i", Bridge, "!", "-o", Bridge, "-j", "DROP"); err != nil {
		return fmt.Errorf("testbed: guard rule: %w", err)
	}
	return nil
}

// rootRules are the rule specs setupBridge inserts (without -I/-D chain).
func rootRules() [][]string {
	return [][]string{
		{"-i", Bridge, "-o", Bridge, "-j", "ACCEPT"},
		{"-i", Bridge, "!", "-o", Bridge, "-j", "DROP"},
	}
}

// deleteRootRules deletes every copy of the root rules from chain.
func deleteRootRules(ctx context.Context, chain string) error {
	var errs []error
	for _, rule := range rootRules() {
		for range 20 {
			if _, err := run(ctx, "iptables", append([]string{"-w", "-C", chain}, rule...)...); err != nil {
				break
			}
			if _, err := run(ctx, "iptables", append([]string{"-w", "-D", chain}, rule...)...); err != nil {
				errs = append(errs, fmt.Errorf("testbed: delete rule: %w", err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// cleanStale removes whatever a testbed left behind: processes in swtb-hN
// namespaces, the namespaces, veths, the bridge, root rules, data and exec
// roots. It is called (under the lock) by New before building and by Close
// after the hosts are torn down.
func cleanStale(ctx context.Context) error {
	var errs []error
	out, _ := run(ctx, "ip", "netns", "list")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		ns := f[0]
		// Container processes live outside the namespace: have the
		// namespace's engine, if it still answers, remove its containers.
		sock := "unix:///var/run/" + ns + ".sock"
		if ids, err := runTimeout(ctx, 10*time.Second, "docker", "-H", sock, "ps", "-aq"); err == nil && ids != "" {
			if _, err := runTimeout(ctx, 30*time.Second, "docker", append([]string{"-H", sock, "rm", "-f"}, strings.Fields(ids)...)...); err != nil {
				errs = append(errs, fmt.Errorf("testbed: remove containers of %s: %w", ns, err))
			}
		}
		errs = append(errs, killNetnsProcs(ctx, ns))
		if _, err := run(ctx, "ip", "netns", "delete", ns); err != nil {
			errs = append(errs, fmt.Errorf("testbed: delete netns %s: %w", ns, err))
		}
	}
	// Overlay network namespaces the hosts' swarmd made (named after
	// their VXLAN address) outlive them when swarmd was killed.
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], overlayNSPrefix) {
			if _, err := run(ctx, "ip", "netns", "delete", f[0]); err != nil {
				errs = append(errs, fmt.Errorf("testbed: delete netns %s: %w", f[0], err))
			}
		}
	}
	out, _ = run(ctx, "ip", "-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		// "12: swtb-h1@if3: <...> ..."
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, nsPrefix) || name == Bridge {
			// A veth goes away with its namespace, asynchronously.
			if out, err := run(ctx, "ip", "link", "delete", name); err != nil && !strings.Contains(out, "Cannot find device") {
				errs = append(errs, fmt.Errorf("testbed: delete link %s: %w", name, err))
			}
		}
	}
	for _, chain := range []string{"DOCKER-USER", "FORWARD"} {
		if _, err := run(ctx, "iptables", "-w", "-S", chain); err == nil {
			errs = append(errs, deleteRootRules(ctx, chain))
		}
	}
	for _, pattern := range []string{"/var/lib/" + nsPrefix + "[0-9]*", "/var/run/" + nsPrefix + "[0-9]*"} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			if err := removeAll(m); err != nil {
				errs = append(errs, fmt.Errorf("testbed: remove %s: %w", m, err))
			}
		}
	}
	// Directories of testbeds that crashed; those kept with SWTB_KEEP=1
	// hold keptMarker and stay.
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "swtb-[0-9]*"))
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, keptMarker)); err == nil {
			continue
		}
		if err := removeAll(d); err != nil {
			errs = append(errs, fmt.Errorf("testbed: remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// killNetnsProcs SIGKILLs every process in network namespace ns and waits
// (up to 10 s) until none is left.
func killNetnsProcs(ctx context.Context, ns string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := run(ctx, "ip", "netns", "pids", ns)
		if err != nil {
			return fmt.Errorf("testbed: pids of %s: %w", ns, err)
		}
		pids := strings.Fields(out)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testbed: processes %v in %s survive SIGKILL", pids, ns)
		}
		for _, p := range pids {
			var pid int
			if _, err := fmt.Sscan(p, &pid); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeAll removes path; mount points left under it (a data root whose
// mount namespace is gone has none) are unmounted lazily first.
func removeAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	if mounts, rerr := os.ReadFile("/proc/self/mounts"); rerr == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && strings.HasPrefix(f[1], path) {
				_ = syscall.Unmount(f[1], syscall.MNT_DETACH)
			}
		}
	}
	return os.RemoveAll(path)
}

// runTimeout is run with a timeout.
func runTimeout(ctx context.Context, d time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return run(ctx, name, args...)
}

// run runs a command in the root namespace and returns its trimmed combined
// output; the error names the command and holds the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, s)
	}
	return s, nil
}
