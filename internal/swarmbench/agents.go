package swarmbench

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/openswarm/swarmd/agent"
	"github.com/openswarm/swarmd/agent/exec/testexec"
	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
)

// Agents are simulated nodes: each joined the swarm through the CA with
// the worker token and keeps a real agent session (heartbeats) with the
// managers. Without runTasks a node has no worker: it does not ask for
// assignments and runs no task. With it, each node has a worker with an
// in-memory task DB and the in-memory executor (agent/exec/testexec): it
// takes its assignments and runs its tasks to RUNNING, reporting each
// state, as a real node does (without containers).
type Agents struct {
	list   []*agent.Agent
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartAgents joins n nodes through joinAddr, parallel at a time, and
// starts their agents against managers.
func StartAgents(ctx context.Context, n, parallel int, joinAddr, token string, managers []string, runTasks bool) (*Agents, error) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &Agents{list: make([]*agent.Agent, n), cancel: cancel}
	quiet := slog.New(slog.DiscardHandler)
	var (
		next  atomic.Int64
		errMu sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				ag, err := newAgent(ctx, i, joinAddr, token, managers, runTasks, quiet)
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					return
				}
				a.list[i] = ag
				a.wg.Add(1)
				go func() { defer a.wg.Done(); _ = ag.Run(runCtx) }()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		a.Stop()
		return nil, first
	}
	return a, ctx.Err()
}

func newAgent(ctx context.Context, i int, joinAddr, token string, managers []string, runTasks bool, log *slog.Logger) (*agent.Agent, error) {
	sec, err := ca.Join(ctx, joinAddr, token, api.NodeRole_NODE_ROLE_WORKER)
	if err != nil {
		return nil, fmt.Errorf("join node %d: %w", i, err)
	}
	creds, err := sec.ClientCredentials(ca.ManagerServerName)
	if err != nil {
		return nil, err
	}
	desc := &api.NodeDescription{
		Hostname:  fmt.Sprintf("sim-%05d", i),
		Platform:  &api.Platform{Os: "linux", Architecture: "x86_64"},
		Resources: &api.Resources{NanoCpus: 4e9, MemoryBytes: 8 << 30},
	}
	cfg := agent.Config{
		Remotes:     agent.NewRemotes(uint64(i)+1, managers...),
		Credentials: creds,
		Description: func() *api.NodeDescription { return desc },
		Logger:      log,
	}
	if runTasks {
		cfg.Executor = testexec.New(desc)
	}
	return agent.New(cfg)
}

// Len is the number of simulated nodes.
func (a *Agents) Len() int { return len(a.list) }

// Connected counts the agents whose current session is with manager addr.
func (a *Agents) Connected(addr string) int {
	n := 0
	for _, ag := range a.list {
		if ag != nil && ag.Manager() == addr {
			n++
		}
	}
	return n
}

// Stop ends every agent's session and waits for them.
func (a *Agents) Stop() {
	a.cancel()
	a.wg.Wait()
}
