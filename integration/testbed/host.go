package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host is one test host: a network namespace with its own address, engine
// and (once started) swarmd.
type Host struct {
	tb *Testbed
	// Name is hN; also the namespace's hostname and swarmd's --hostname.
	Name string
	// Netns is the network namespace (swtb-hN), see `ip netns`.
	Netns string
	// IP is the host's address on the bridge (10.99.0.(10+N)).
	IP string
	// Dir holds the host's logs and state (under the testbed's temp dir).
	Dir string
	// EngineSock is the unix socket of the host's own Docker Engine.
	EngineSock string
	// SwarmdSock is the unix socket where swarmd serves the Engine API.
	SwarmdSock string
	// ControlSock is swarmd's control API socket.
	ControlSock string
	// StateDir is swarmd's --state-dir.
	StateDir string
	// DataRoot and ExecRoot are the engine's --data-root and --exec-root.
	DataRoot, ExecRoot string
	// BridgeSubnet is the engine's docker0 subnet (10.98.(10+N).0/24)
	// with Config.RoutedBridges, else "" (the engine's default).
	BridgeSubnet string

	pidFile string

	mu     sync.Mutex
	engine *proc
	swarmd *proc
	// stateMount is set while StateDir is a size-limited tmpfs
	// (LimitStateDir).
	stateMount bool
}

// proc is a process started by the testbed.
type proc struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

func startProc(cmd *exec.Cmd, logPath string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, log: f, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to grace for the exit, then SIGKILLs.
func (p *proc) stop(ctx context.Context, sig syscall.Signal, grace time.Duration) error {
	if p.done() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused process cannot exit
	if err := p.cmd.Process.Signal(sig); err != nil && !p.done() {
		return err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	return fmt.Errorf("did not exit within %s of %s; killed", grace, sig)
}

func newHost(tb *Testbed, n int) (*Host, error) {
	name := fmt.Sprintf("h%d", n)
	ns := nsPrefix + fmt.Sprint(n)
	h := &Host{
		tb:         tb,
		Name:       name,
		Netns:      ns,
		IP:         fmt.Sprintf("10.99.0.%d", 10+n),
		Dir:        filepath.Join(tb.dir, name),
		EngineSock: "/var/run/" + ns + ".sock",
		DataRoot:   "/var/lib/" + ns,
		ExecRoot:   "/var/run/" + ns,
		pidFile:    "/var/run/" + ns + ".pid",
	}
	if tb.cfg.RoutedBridges {
		h.BridgeSubnet = fmt.Sprintf("10.98.%d.0/24", 10+n)
	}
	h.SwarmdSock = filepath.Join(h.Dir, "docker.sock")
	h.ControlSock = filepath.Join(h.Dir, "control.sock")
	h.StateDir = filepath.Join(h.Dir, "swarmd")
	for _, d := range []string{h.Dir, filepath.Join(h.Dir, "etc-docker"), filepath.Join(h.Dir, "docker-config"), filepath.Join(h.Dir, "plugins")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("testbed: %s: dir: %w", name, err)
		}
	}
	// DNS lookups go to an address in the test subnet, so none leaves it.
	if err := os.WriteFile(filepath.Join(h.Dir, "resolv.conf"), []byte("nameserver "+BridgeIP+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("testbed: %s: resolv.conf: %w", name, err)
	}
	return h, nil
}

// setupNet creates the namespace, the veth pair and the partition chain.
func (h *Host) setupNet(ctx context.Context) error {
	steps := [][]string{
		{"ip", "netns", "add", h.Netns},
		{"ip", "link", "add", h.Netns, "type", "veth", "peer", "name", "eth0", "netns", h.Netns},
		{"ip", "link", "set", h.Netns, "master", Bridge, "up"},
		{"ip", "-n", h.Netns, "link", "set", "lo", "up"},
		{"ip", "-n", h.Netns, "addr", "add", h.IP + "/" + prefixLen, "dev", "eth0"},
		{"ip", "-n", h.Netns, "link", "set", "eth0", "up"},
		{"ip", "-n", h.Netns, "route", "add", "default", "via", BridgeIP},
		// Partition's rules live in the raw table, before the engine's
		// DNAT for published ports.
		{"ip", "netns", "exec", h.Netns, "iptables", "-w", "-t", "raw", "-N", partChain},
		{"ip", "netns", "exec", h.Netns, "iptables", "-w", "-t", "raw", "-I", "PREROUTING", "-j", partChain},
		{"ip", "netns", "exec", h.Netns, "iptables", "-w", "-t", "raw", "-I", "OUTPUT", "-j", partChain},
		// Netem's loss emulation: egress on eth0, forwarded or local.
		{"ip", "netns", "exec", h.Netns, "iptables", "-w", "-t", "mangle", "-N", netemChain},
		{"ip", "netns", "exec", h.Netns, "iptables", "-w", "-t", "mangle", "-I", "POSTROUTING", "-o", "eth0", "-j", netemChain},
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("testbed: %s: network: %w", h.Name, err)
		}
	}
	return nil
}

// engineScript runs as PID of `ip netns exec <ns> unshare --uts sh`: it
// prepares the private mount namespace `ip netns exec` created (cgroups,
// /etc/docker, /etc/resolv.conf, and a plugin directory of the host's own,
// so that the engine sees only its own swarmd's plugin socket, not those
// of other hosts or stale ones of earlier tests, which it would try to
// activate again and again), sets the hostname and execs dockerd.
func (h *Host) engineScript() (string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	b.WriteString(mounts)
	fmt.Fprintf(&b, "mount --bind %s /etc/docker\n", filepath.Join(h.Dir, "etc-docker"))
	fmt.Fprintf(&b, "mount --bind %s /etc/resolv.conf\n", filepath.Join(h.Dir, "resolv.conf"))
	b.WriteString("mkdir -p /run/docker/plugins\n")
	fmt.Fprintf(&b, "mount --bind %s /run/docker/plugins\n", filepath.Join(h.Dir, "plugins"))
	fmt.Fprintf(&b, "hostname %s\n", h.Name)
	bip := ""
	if h.BridgeSubnet != "" {
		// docker0 takes the subnet's first address.
		bip = " --bip " + strings.Replace(h.BridgeSubnet, ".0/", ".1/", 1)
	}
	fmt.Fprintf(&b, "exec dockerd --data-root %s --exec-root %s -H unix://%s --pidfile %s%s\n",
		h.DataRoot, h.ExecRoot, h.EngineSock, h.pidFile, bip)
	return b.String(), nil
}

// cgroupMounts returns shell commands that remount, inside a new mount
// namespace, the cgroup hierarchies the root namespace has under
// /sys/fs/cgroup (`ip netns exec` remounts /sys and hides them).
func cgroupMounts() (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("testbed: cgroup mounts: %w", err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		mp, fstype, opts := f[4], g[0], g[2]
		if mp != "/sys/fs/cgroup" && !strings.HasPrefix(mp, "/sys/fs/cgroup/") {
			continue
		}
		switch fstype {
		case "tmpfs":
			fmt.Fprintf(&b, "mount -t tmpfs -o mode=755 tmpfs %s\n", mp)
		case "cgroup", "cgroup2":
			fmt.Fprintf(&b, "mkdir -p %s\nmount -t %s -o %s %s %s\n", mp, fstype, opts, fstype, mp)
		}
	}
	if b.Len() == 0 {
		return "", errors.New("testbed: no cgroup hierarchy under /sys/fs/cgroup")
	}
	return b.String(), nil
}

// startEngine starts the host's dockerd and waits until it answers.
func (h *Host) startEngine(ctx context.Context) error {
	script, err := h.engineScript()
	if err != nil {
		return err
	}
	path := filepath.Join(h.Dir, "engine.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return fmt.Errorf("testbed: %s: engine script: %w", h.Name, err)
	}
	_ = os.Remove(h.EngineSock)
	_ = os.Remove(h.pidFile)
	cmd := exec.Command("ip", "netns", "exec", h.Netns, "unshare", "--uts", "sh", path)
	p, err := startProc(cmd, filepath.Join(h.Dir, "dockerd.log"))
	if err != nil {
		return fmt.Errorf("testbed: %s: start dockerd: %w", h.Name, err)
	}
	h.mu.Lock()
	h.engine = p
	h.mu.Unlock()
	if err := waitPing(ctx, h.EngineSock, p, 60*time.Second); err != nil {
		return fmt.Errorf("testbed: %s: dockerd: %w\n%s", h.Name, err, tailFile(filepath.Join(h.Dir, "dockerd.log"), 20))
	}
	return nil
}

// StartEngine starts the host's engine again after StopEngine (same data
// root, so containers and images survive) and waits until it answers.
func (h *Host) StartEngine(ctx context.Context) error {
	h.mu.Lock()
	running := h.engine != nil && !h.engine.done()
	h.mu.Unlock()
	if running {
		return fmt.Errorf("testbed: %s: start engine: already running", h.Name)
	}
	return h.startEngine(ctx)
}

// StopEngine stops the host's engine with SIGTERM (SIGKILL after 30 s,
// reported as an error); its containers stop with it.
func (h *Host) StopEngine(ctx context.Context) error {
	h.mu.Lock()
	p := h.engine
	h.mu.Unlock()
	if p == nil {
		return fmt.Errorf("testbed: %s: stop engine: not started", h.Name)
	}
	if err := p.stop(ctx, syscall.SIGTERM, 30*time.Second); err != nil {
		return fmt.Errorf("testbed: %s: stop engine: %w", h.Name, err)
	}
	return nil
}

// waitPing polls GET /_ping on the unix socket sock until it answers 200,
// p exits or timeout passes.
func waitPing(ctx context.Context, sock string, p *proc, timeout time.Duration) error {
	client := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			DisableKeepAlives: true,
		},
	}
	deadline := time.Now().Add(timeout)
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine/_ping", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/_ping: %s", resp.Status)
		}
		last = err
		if p.done() {
			return fmt.Errorf("exited (%v) before answering on %s", p.err, sock)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer on %s within %s: %w", sock, timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", sock, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StartSwarmd starts swarmd inside the host's network namespace with its
// state dir, Engine API socket (SwarmdSock), control socket, the host's
// engine, remote API on IP:2377 and hostname Name; extraArgs follow (a later
// flag wins). It logs to Dir/swarmd.log and returns once the Engine API
// socket answers /_ping. A swarmd started earlier must be stopped first.
func (h *Host) StartSwarmd(ctx context.Context, extraArgs ...string) error {
	if h.tb.cfg.SwarmdBin == "" {
		return fmt.Errorf("testbed: %s: start swarmd: Config.SwarmdBin is empty", h.Name)
	}
	h.mu.Lock()
	if h.swarmd != nil && !h.swarmd.done() {
		h.mu.Unlock()
		return fmt.Errorf("testbed: %s: start swarmd: already running", h.Name)
	}
	h.mu.Unlock()
	h.mu.Lock()
	engine := h.engine
	h.mu.Unlock()
	if engine == nil || engine.done() {
		return fmt.Errorf("testbed: %s: start swarmd: the engine is not running", h.Name)
	}
	_ = os.Remove(h.SwarmdSock)
	// swarmd shares the engine's namespaces, network, mount and UTS, as
	// on a real host: it sees the network namespaces the engine mounts
	// for its containers, and the named namespaces of its overlay
	// networks outlive a swarmd restart.
	args := append([]string{"--target", strconv.Itoa(engine.cmd.Process.Pid), "--mount", "--uts", "--net", "--",
		filepath.Join(h.tb.cfg.SwarmdBin, "swarmd"),
		"--state-dir", h.StateDir,
		"--listen-engine-api", h.SwarmdSock,
		"--listen-control-api", h.ControlSock,
		"--engine-addr", "unix://" + h.EngineSock,
		"--listen-remote-api", h.IP + ":2377",
		"--hostname", h.Name,
		"--log-level", "debug",
		"--listen-debug", h.DebugAddr(),
		"--network-plugin", "swarmd-" + h.Name,
	}, extraArgs...)
	logPath := filepath.Join(h.Dir, "swarmd.log")
	if f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		fmt.Fprintf(f, "=== testbed: %s start swarmd %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args[6:], " "))
		f.Close()
	}
	p, err := startProc(exec.Command("nsenter", args...), logPath)
	if err != nil {
		return fmt.Errorf("testbed: %s: start swarmd: %w", h.Name, err)
	}
	h.mu.Lock()
	h.swarmd = p
	h.mu.Unlock()
	if err := waitPing(ctx, h.SwarmdSock, p, 30*time.Second); err != nil {
		return fmt.Errorf("testbed: %s: swarmd: %w\n%s", h.Name, err, h.LogTail(30))
	}
	return nil
}

func (h *Host) swarmdProc() (*proc, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.swarmd == nil {
		return nil, fmt.Errorf("testbed: %s: swarmd not started", h.Name)
	}
	return h.swarmd, nil
}

// SwarmdRunning reports whether swarmd has been started and not exited.
func (h *Host) SwarmdRunning() bool {
	p, err := h.swarmdProc()
	return err == nil && !p.done()
}

// StopSwarmd stops swarmd with SIGTERM and waits for it to exit (SIGKILL
// after 30 s, reported as an error).
func (h *Host) StopSwarmd(ctx context.Context) error {
	p, err := h.swarmdProc()
	if err != nil {
		return err
	}
	if err := p.stop(ctx, syscall.SIGTERM, 30*time.Second); err != nil {
		return fmt.Errorf("testbed: %s: stop swarmd: %w", h.Name, err)
	}
	return nil
}

// Kill stops swarmd with SIGKILL and waits for it to exit.
func (h *Host) Kill() error {
	p, err := h.swarmdProc()
	if err != nil {
		return err
	}
	if p.done() {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !p.done() {
		return fmt.Errorf("testbed: %s: kill swarmd: %w", h.Name, err)
	}
	<-p.exited
	return nil
}

// Pause freezes swarmd (SIGSTOP); Resume continues it.
func (h *Host) Pause() error { return h.signalSwarmd(syscall.SIGSTOP) }

// Resume continues a paused swarmd (SIGCONT).
func (h *Host) Resume() error { return h.signalSwarmd(syscall.SIGCONT) }

func (h *Host) signalSwarmd(sig syscall.Signal) error {
	p, err := h.swarmdProc()
	if err != nil {
		return err
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("testbed: %s: %s swarmd: %w", h.Name, sig, err)
	}
	return nil
}

// Docker runs the docker CLI (from the root namespace) against this host's
// swarmd and returns its trimmed combined output.
func (h *Host) Docker(ctx context.Context, args ...string) (string, error) {
	return h.cli(ctx, "unix://"+h.SwarmdSock, args)
}

// Engine runs the docker CLI against this host's own engine.
func (h *Host) Engine(ctx context.Context, args ...string) (string, error) {
	return h.cli(ctx, "unix://"+h.EngineSock, args)
}

func (h *Host) cli(ctx context.Context, host string, args []string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+host,
		"DOCKER_CONFIG="+filepath.Join(h.Dir, "docker-config"), "DOCKER_CLI_HINTS=false")
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("%s: docker %s: %w: %s", h.Name, strings.Join(args, " "), err, s)
	}
	return s, nil
}

// Exec runs a command inside the host's network namespace (with the
// machine's file system and hostname) and returns its trimmed combined
// output.
func (h *Host) Exec(ctx context.Context, name string, args ...string) (string, error) {
	out, err := run(ctx, "ip", append([]string{"netns", "exec", h.Netns, name}, args...)...)
	if err != nil {
		return out, fmt.Errorf("%s: %w", h.Name, err)
	}
	return out, nil
}

// RouteBridge routes, in h's namespace, the containers of other's engine
// (its BridgeSubnet, Config.RoutedBridges) through other's address.
func (h *Host) RouteBridge(ctx context.Context, other *Host) error {
	if other.BridgeSubnet == "" {
		return fmt.Errorf("testbed: %s: route to %s's containers: Config.RoutedBridges is off", h.Name, other.Name)
	}
	if out, err := h.Exec(ctx, "ip", "route", "replace", other.BridgeSubnet, "via", other.IP); err != nil {
		return fmt.Errorf("testbed: route to %s's containers: %w: %s", other.Name, err, out)
	}
	return nil
}

// Netem shapes the host's egress on eth0 (towards every other host and the
// root namespace) with a netem spec, e.g. "delay 100ms 20ms loss 5%". On a
// kernel without the netem qdisc (as on this machine) it emulates what it
// can: "loss P%" with an iptables statistic DROP rule (mangle POSTROUTING)
// and "rate R" with a tbf qdisc; any other netem option (delay, duplicate,
// reorder, corrupt, ...) then fails with an error wrapping
// errors.ErrUnsupported. Netem replaces what an earlier call set.
func (h *Host) Netem(ctx context.Context, spec string) error {
	if err := h.ClearNetem(ctx); err != nil {
		return err
	}
	args := append([]string{"-n", h.Netns, "qdisc", "replace", "dev", "eth0", "root", "netem"}, strings.Fields(spec)...)
	_, err := run(ctx, "tc", args...)
	if err == nil {
		return nil
	}
	if !strings.Contains(err.Error(), "qdisc kind is unknown") {
		return fmt.Errorf("testbed: %s: netem: %w", h.Name, err)
	}
	var loss, rate string
	f := strings.Fields(spec)
	for i := 0; i < len(f); i++ {
		switch {
		case f[i] == "loss" && i+1 < len(f):
			i++
			if f[i] == "random" && i+1 < len(f) {
				i++
			}
			p, err := strconv.ParseFloat(strings.TrimSuffix(f[i], "%"), 64)
			if err != nil || p < 0 || p > 100 {
				return fmt.Errorf("testbed: %s: netem: loss %q", h.Name, f[i])
			}
			loss = strconv.FormatFloat(p/100, 'f', -1, 64)
		case f[i] == "rate" && i+1 < len(f):
			i++
			rate = f[i]
		default:
			return fmt.Errorf("testbed: %s: netem %q: the kernel has no netem qdisc and %q cannot be emulated: %w",
				h.Name, spec, f[i], errors.ErrUnsupported)
		}
	}
	if rate != "" {
		if _, err := run(ctx, "tc", "-n", h.Netns, "qdisc", "replace", "dev", "eth0", "root", "tbf",
			"rate", rate, "burst", "32kbit", "latency", "400ms"); err != nil {
			return fmt.Errorf("testbed: %s: netem rate: %w", h.Name, err)
		}
	}
	if loss != "" {
		if _, err := h.iptables(ctx, "-t", "mangle", "-A", netemChain, "-m", "statistic",
			"--mode", "random", "--probability", loss, "-j", "DROP"); err != nil {
			return fmt.Errorf("testbed: %s: netem loss: %w", h.Name, err)
		}
	}
	return nil
}

// ClearNetem removes what Netem set.
func (h *Host) ClearNetem(ctx context.Context) error {
	out, err := run(ctx, "tc", "-n", h.Netns, "qdisc", "show", "dev", "eth0")
	if err != nil {
		return fmt.Errorf("testbed: %s: clear netem: %w", h.Name, err)
	}
	if strings.Contains(out, "netem") || strings.Contains(out, "tbf") {
		if _, err := run(ctx, "tc", "-n", h.Netns, "qdisc", "del", "dev", "eth0", "root"); err != nil {
			return fmt.Errorf("testbed: %s: clear netem: %w", h.Name, err)
		}
	}
	if _, err := h.iptables(ctx, "-t", "mangle", "-F", netemChain); err != nil {
		return fmt.Errorf("testbed: %s: clear netem: %w", h.Name, err)
	}
	return nil
}

// iptables runs iptables in the host's network namespace.
func (h *Host) iptables(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "ip", append([]string{"netns", "exec", h.Netns, "iptables", "-w"}, args...)...)
}

// LogTail returns the last n lines of swarmd's log.
func (h *Host) LogTail(n int) string {
	return tailFile(filepath.Join(h.Dir, "swarmd.log"), n)
}

// EngineLogTail returns the last n lines of the host engine's log.
func (h *Host) EngineLogTail(n int) string {
	return tailFile(filepath.Join(h.Dir, "dockerd.log"), n)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// teardown stops swarmd, removes the engine's containers, stops the engine,
// kills whatever is left in the namespace and deletes the namespace (which
// deletes the veth pair) and the engine's roots.
func (h *Host) teardown(ctx context.Context) error {
	var errs []error
	h.mu.Lock()
	sw, eng := h.swarmd, h.engine
	h.mu.Unlock()
	if sw != nil {
		if err := sw.stop(ctx, syscall.SIGTERM, 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("testbed: %s: stop swarmd: %w", h.Name, err))
		}
	}
	if eng != nil && !eng.done() {
		// Containers whose PID 1 ignores SIGTERM would hold the engine's
		// shutdown for 10 s each, and container processes live outside the
		// host's network namespace: remove them first.
		if ids, err := h.Engine(ctx, "ps", "-aq"); err == nil && ids != "" {
			if _, err := h.Engine(ctx, append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
				errs = append(errs, fmt.Errorf("testbed: %s: remove containers: %w", h.Name, err))
			}
		}
		if err := eng.stop(ctx, syscall.SIGTERM, 20*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("testbed: %s: stop dockerd: %w", h.Name, err))
		}
	}
	errs = append(errs, h.unlimitStateDir())
	if _, err := os.Stat("/run/netns/" + h.Netns); err == nil {
		errs = append(errs, killNetnsProcs(ctx, h.Netns))
		if _, err := run(ctx, "ip", "netns", "delete", h.Netns); err != nil {
			errs = append(errs, fmt.Errorf("testbed: %s: %w", h.Name, err))
		}
	}
	for _, p := range []string{h.DataRoot, h.ExecRoot, h.EngineSock, h.pidFile} {
		if err := removeAll(p); err != nil {
			errs = append(errs, fmt.Errorf("testbed: %s: remove %s: %w", h.Name, p, err))
		}
	}
	return errors.Join(errs...)
}
