package manager

import (
	"context"

	"github.com/openswarm/swarmd/manager/allocator"
	"github.com/openswarm/swarmd/manager/scheduler"
)

// orchestration returns the leader's reconcilers of one term, fresh each
// time this manager starts leading: the allocator (NEW -> PENDING), the
// scheduler (PENDING -> ASSIGNED).
func (m *Manager) orchestration() []func(context.Context) error {
	log := m.cfg.Logger
	return []func(context.Context) error{
		allocator.New(m.store, allocator.WithLogger(log)).Run,
		scheduler.New(m.store, scheduler.WithLogger(log)).Run,
	}
}
