// Package swarmbench measures a swarm at scale: real swarmd manager
// processes, and thousands of simulated nodes (real agents, joined through
// the real CA, without an executor) in the benchmarking process. The
// figures it reports go to BENCHMARKS.md; cmd/swarm-bench is its command
// line.
package swarmbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openswarm/swarmd/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Manager is a swarmd process.
type Manager struct {
	Name, Addr, Dir string
	cmd             *exec.Cmd
	exited          chan struct{}
	conn            *grpc.ClientConn
}

// StartManager runs the swarmd binary bin with its state in dir, listening
// on addr; extra adds flags (--init, --join-addr ...). Its output goes to
// dir/swarmd.log.
func StartManager(bin, dir, name, addr string, extra ...string) (*Manager, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "swarmd.log"))
	if err != nil {
		return nil, err
	}
	m := &Manager{Name: name, Addr: addr, Dir: dir, exited: make(chan struct{})}
	args := append([]string{"-d", dir, "--listen-remote-api", addr, "--hostname", name,
		"--listen-control-api", m.socket(), "--listen-engine-api", filepath.Join(dir, "docker.sock"),
		"--listen-mesh=", "--log-level", "warn"}, extra...)
	m.cmd = exec.Command(bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = m.cmd.Wait(); _ = logf.Close(); close(m.exited) }()
	m.conn, err = grpc.NewClient("unix://"+m.socket(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		m.Kill()
		return nil, err
	}
	return m, nil
}

func (m *Manager) socket() string { return filepath.Join(m.Dir, "swarmd.sock") }

// Control is the manager's control API.
func (m *Manager) Control() api.ControlClient { return api.NewControlClient(m.conn) }

// WaitReady polls the control API until it answers or ctx ends.
func (m *Manager) WaitReady(ctx context.Context) error {
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := m.Control().ListClusters(c, &api.ListClustersRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last error: %w)", m.Name, ctx.Err(), err)
		case <-m.exited:
			return fmt.Errorf("%s exited; see %s", m.Name, filepath.Join(m.Dir, "swarmd.log"))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (m *Manager) Kill() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(syscall.SIGKILL)
		<-m.exited
	}
	if m.conn != nil {
		_ = m.conn.Close()
	}
}

// Memory returns the process's resident set size now and at its peak.
func (m *Manager) Memory() (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			peak = kb << 10
		}
	}
	return rss, peak, sc.Err()
}

// selfCPUTime is the user+system CPU time this process (the benchmark, with
// its simulated nodes) has used.
func selfCPUTime() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// CPUTime is the user+system CPU time the process has used.
func (m *Manager) CPUTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", m.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at ")".
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck, nil
}

// JoinTokens returns the cluster's worker and manager join tokens.
func (m *Manager) JoinTokens(ctx context.Context) (worker, manager string, err error) {
	resp, err := m.Control().ListClusters(ctx, &api.ListClustersRequest{})
	if err != nil {
		return "", "", err
	}
	if len(resp.GetClusters()) != 1 {
		return "", "", fmt.Errorf("%d clusters", len(resp.GetClusters()))
	}
	t := resp.GetClusters()[0].GetRootCa().GetJoinTokens()
	return t.GetWorker(), t.GetManager(), nil
}

// IsLeader reports whether this manager leads, as its own node object says.
func (m *Manager) IsLeader(ctx context.Context) bool {
	resp, err := m.Control().ListNodes(ctx, &api.ListNodesRequest{Filters: &api.ListFilters{Roles: []api.NodeRole{api.NodeRole_NODE_ROLE_MANAGER}}})
	if err != nil {
		return false
	}
	for _, n := range resp.GetNodes() {
		if n.GetManagerStatus().GetAddr() == m.Addr {
			return n.GetManagerStatus().GetLeader()
		}
	}
	return false
}
