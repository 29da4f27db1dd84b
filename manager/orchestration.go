package manager

import (
	"context"

	"github.com/openswarm/swarmd/manager/allocator"
	"github.com/openswarm/swarmd/manager/orchestrator/constraintenforcer"
	"github.com/openswarm/swarmd/manager/orchestrator/global"
	"github.com/openswarm/swarmd/manager/orchestrator/jobs"
	"github.com/openswarm/swarmd/manager/orchestrator/replicated"
	"github.com/openswarm/swarmd/manager/orchestrator/restart"
	"github.com/openswarm/swarmd/manager/orchestrator/taskreaper"
	"github.com/openswarm/swarmd/manager/orchestrator/update"
	"github.com/openswarm/swarmd/manager/scheduler"
)

// orchestration returns the leader's reconcilers of one term, made fresh
// each time this manager starts leading, each starting from what the
// store says: the allocator (NEW -> PENDING), the scheduler (PENDING ->
// ASSIGNED), the orchestrators (services and jobs -> tasks) with the
// restart and update supervisors they share, the constraint enforcer and
// the task reaper.
func (m *Manager) orchestration() []func(context.Context) error {
	log := m.cfg.Logger
	updates := update.NewSupervisor(m.store, update.WithLogger(log))
	restarts := restart.New(m.store, restart.WithLogger(log))
	// The scheduler also places the tasks the orchestrators create, which
	// are then written once, ASSIGNED, instead of PENDING then ASSIGNED.
	sched := scheduler.New(m.store, scheduler.WithLogger(log))
	return []func(context.Context) error{
		allocator.New(m.store, allocator.WithLogger(log)).Run,
		sched.Run,
		restarts.Run,
		replicated.New(m.store, updates, restarts, replicated.WithLogger(log), replicated.WithPlacer(sched)).Run,
		global.New(m.store, updates, restarts, global.WithLogger(log), global.WithPlacer(sched)).Run,
		jobs.New(m.store, restarts, jobs.WithLogger(log), jobs.WithPlacer(sched)).Run,
		constraintenforcer.New(m.store, restarts, constraintenforcer.WithLogger(log)).Run,
		taskreaper.New(m.store, taskreaper.WithLogger(log)).Run,
		func(ctx context.Context) error {
			// Updates run under the orchestrators' contexts; Stop waits
			// for them to end when the term does.
			<-ctx.Done()
			updates.Stop()
			return nil
		},
	}
}
