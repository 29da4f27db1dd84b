package manager

import (
	"context"
	"errors"
	"sync"

	"github.com/openswarm/swarmd/manager/state/store"
)

// runLeadership starts the leader's duties whenever this manager leads and
// stops them as soon as it does not.
func (m *Manager) runLeadership(ctx context.Context) {
	var duties *running
	defer func() { duties.stop() }()
	for {
		changed := m.raft.LeaderChanged()
		leading := m.raft.IsLeader()
		switch {
		case leading && duties == nil:
			m.log.Info("manager: leading the cluster; starting leader duties")
			duties = start(ctx, m.lead)
		case !leading && duties != nil:
			m.log.Info("manager: no longer leading; stopping leader duties")
			duties.stop()
			duties = nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// running is a function running in its own goroutine until stopped.
type running struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func start(ctx context.Context, f func(context.Context)) *running {
	ctx, cancel := context.WithCancel(ctx)
	r := &running{cancel: cancel}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); f(ctx) }()
	return r
}

// stop cancels the function and waits for it; a nil running is stopped.
func (r *running) stop() {
	if r == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
}

// lead runs the leader's duties until ctx ends.
func (m *Manager) lead(ctx context.Context) {
	if err := m.bootstrap(ctx); err != nil && ctx.Err() == nil {
		m.log.Error("manager: bootstrap the cluster", "error", err)
	}
	var wg sync.WaitGroup
	for _, duty := range m.leaderDuties() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := duty(ctx); err != nil && ctx.Err() == nil {
				m.log.Error("manager: leader duty failed", "error", err)
			}
		}()
	}
	wg.Wait()
}

// bootstrap writes the first objects of a new cluster into an empty store.
func (m *Manager) bootstrap(ctx context.Context) error {
	b := m.cfg.Bootstrap
	if b == nil {
		return nil
	}
	err := m.store.Update(ctx, func(tx store.Tx) error {
		if store.GetCluster(tx, b.Cluster.GetId()) != nil {
			return nil
		}
		if err := tx.Create(b.Cluster); err != nil {
			return err
		}
		if b.Node != nil && store.GetNode(tx, b.Node.GetId()) == nil {
			return tx.Create(b.Node)
		}
		return nil
	})
	if errors.Is(err, store.ErrExist) {
		err = nil
	}
	if err == nil && b.Stored != nil {
		b.Stored()
	}
	return err
}
