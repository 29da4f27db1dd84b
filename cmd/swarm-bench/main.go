// Command swarm-bench measures a swarm at scale: real swarmd managers and
// thousands of simulated nodes (internal/swarmbench).
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/openswarm/swarmd/internal/swarmbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "swarm-bench: %v\n", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	var (
		o        swarmbench.Options
		ip       string
		timeout  time.Duration
		services int
		replicas int
		window   time.Duration
		// Each command has its own node count and default: both
		// bound to o.Nodes, the last registered default would win.
		scheduleNodes, heartbeatNodes int
	)
	root := &cobra.Command{
		Use:           "swarm-bench",
		Short:         "Measure a swarm at scale with simulated nodes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&o.Swarmd, "swarmd", "", "swarmd binary (default: swarmd beside swarm-bench, then $PATH)")
	pf.StringVar(&o.Dir, "dir", "", "directory for the managers' state (default: a new temporary directory)")
	pf.StringVar(&ip, "ip", "127.0.0.71", "loopback address of the first manager; the others take the next ones")
	pf.IntVar(&o.JoinParallel, "join-parallel", 32, "simulated nodes joining at once")
	pf.DurationVar(&timeout, "timeout", 15*time.Minute, "give up after this long")
	pf.StringArrayVar(&o.ManagerArgs, "manager-arg", nil, "extra flag for the first manager, e.g. --manager-arg=--listen-debug=127.0.0.1:6060 (repeatable)")

	prepare := func(cmd *cobra.Command) (context.Context, context.CancelFunc, func(), error) {
		parsed := net.ParseIP(ip).To4()
		if parsed == nil {
			return nil, nil, nil, fmt.Errorf("--ip %q is not an IPv4 address", ip)
		}
		copy(o.IP[:], parsed)
		if o.Nodes < 1 {
			return nil, nil, nil, fmt.Errorf("--nodes must be at least 1, got %d", o.Nodes)
		}
		if o.JoinParallel < 1 {
			return nil, nil, nil, fmt.Errorf("--join-parallel must be at least 1, got %d", o.JoinParallel)
		}
		bin, err := findSwarmd(o.Swarmd)
		if err != nil {
			return nil, nil, nil, err
		}
		o.Swarmd = bin
		cleanup := func() {}
		if o.Dir == "" {
			d, err := os.MkdirTemp("", "swarm-bench-")
			if err != nil {
				return nil, nil, nil, err
			}
			o.Dir, cleanup = d, func() { _ = os.RemoveAll(d) }
		}
		o.Out = cmd.OutOrStdout()
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		return ctx, cancel, cleanup, nil
	}

	schedule := &cobra.Command{
		Use:   "schedule",
		Short: "Time from creating services to every task assigned, and the manager's peak memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if services < 1 || replicas < 1 {
				return fmt.Errorf("--services and --replicas must be at least 1")
			}
			o.Nodes = scheduleNodes
			ctx, cancel, cleanup, err := prepare(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			defer cleanup()
			_, err = swarmbench.Schedule(ctx, o, services, replicas)
			return err
		},
	}
	schedule.Flags().IntVar(&scheduleNodes, "nodes", 1000, "simulated nodes")
	schedule.Flags().IntVar(&services, "services", 100, "services to create")
	schedule.Flags().IntVar(&replicas, "replicas", 1000, "replicas per service")
	schedule.Flags().BoolVar(&o.RunTasks, "run-tasks", false, "simulated nodes take their assignments and run their tasks (in memory) to RUNNING; also reports the time until all run")

	heartbeat := &cobra.Command{
		Use:   "heartbeat",
		Short: "Leader CPU and memory with many nodes heartbeating, then leader failover with them connected",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if window <= 0 {
				return fmt.Errorf("--window must be positive, got %s", window)
			}
			o.Nodes = heartbeatNodes
			ctx, cancel, cleanup, err := prepare(cmd)
			if err != nil {
				return err
			}
			defer cancel()
			defer cleanup()
			_, err = swarmbench.Heartbeat(ctx, o, window)
			return err
		},
	}
	heartbeat.Flags().IntVar(&heartbeatNodes, "nodes", 10000, "simulated nodes")
	heartbeat.Flags().DurationVar(&window, "window", 30*time.Second, "how long to measure the leader's CPU")

	root.AddCommand(schedule, heartbeat)
	return root
}

// findSwarmd returns the swarmd binary to run.
func findSwarmd(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "swarmd"); isFile(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("swarmd")
	if err != nil {
		return "", fmt.Errorf("no swarmd binary beside swarm-bench or in $PATH; pass --swarmd")
	}
	return p, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}
