package update

import (
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultMonitor is how long a new task is watched for failure after it
// reached RUNNING when the update config does not say.
const DefaultMonitor = 5 * time.Second

// The UpdateStatus messages, as the docker CLI prints them.
const (
	msgUpdating          = "update in progress"
	msgCompleted         = "update completed"
	msgRollbackCompleted = "rollback completed"
	msgPausedPrefix      = "update paused due to failure or early termination of task "
	msgRollbackPaused    = "rollback paused due to failure or early termination of task "
	msgRolledBackPrefix  = "update rolled back due to failure or early termination of task "
)

// config is the update config an update of s follows.
type config struct {
	parallelism   int // 0: every slot at once
	delay         time.Duration
	monitor       time.Duration
	failureAction api.UpdateConfig_FailureAction
	maxFailures   float32
	order         api.UpdateConfig_UpdateOrder
	rollingBack   bool
}

// configFor returns the config an update of s follows: the Rollback config
// while a rollback runs (UpdateStatus ROLLBACK_STARTED), the Update config
// otherwise. A missing config means parallelism 1, no delay, monitor 5s,
// failure action PAUSE, ratio 0, STOP_FIRST; a missing monitor means 5s.
func configFor(s *api.Service) config {
	rollingBack := s.GetUpdateStatus().GetState() == api.UpdateStatus_ROLLBACK_STARTED
	uc := s.GetSpec().GetUpdate()
	if rollingBack {
		uc = s.GetSpec().GetRollback()
	}
	if uc == nil {
		return config{parallelism: 1, monitor: DefaultMonitor, rollingBack: rollingBack}
	}
	c := config{
		parallelism:   int(uc.GetParallelism()),
		delay:         uc.GetDelay().AsDuration(),
		monitor:       DefaultMonitor,
		failureAction: uc.GetFailureAction(),
		maxFailures:   uc.GetMaxFailureRatio(),
		order:         uc.GetOrder(),
		rollingBack:   rollingBack,
	}
	if uc.GetMonitor() != nil {
		c.monitor = uc.GetMonitor().AsDuration()
	}
	if c.delay < 0 {
		c.delay = 0
	}
	if c.monitor < 0 {
		c.monitor = 0
	}
	return c
}

// isFailure reports whether t, a task an update started, ended in a way
// that counts against the update: it stopped (COMPLETE, SHUTDOWN, FAILED,
// REJECTED, ...) while it was still meant to run. A job task that
// completes has succeeded; a task asked to stop (desired state past
// COMPLETE) ended as asked, whatever state it reports.
func isFailure(t *api.Task, runState api.TaskState) bool {
	st := t.GetStatus().GetState()
	if st <= api.TaskState_TASK_STATE_RUNNING || !orchestrator.IsRunnable(t) {
		return false
	}
	return st != api.TaskState_TASK_STATE_COMPLETE || runState != api.TaskState_TASK_STATE_COMPLETE
}

// inMonitor reports whether a failure at now falls in the task's watch:
// before it was seen running (runningSince zero) or within monitor after.
func inMonitor(runningSince, now time.Time, monitor time.Duration) bool {
	return runningSince.IsZero() || now.Sub(runningSince) <= monitor
}

// ratioExceeded reports whether failures out of total slots exceed the
// max failure ratio. The ratio is computed in float32, the precision the
// ratio was given in, so that 1 failure of 10 does not exceed 0.1.
func ratioExceeded(failures, total int, maxRatio float32) bool {
	if failures == 0 {
		return false
	}
	if total <= 0 {
		return true
	}
	return float32(failures)/float32(total) > maxRatio
}

// haltKind is what an update does once its failures exceed the ratio.
type haltKind int

const (
	haltNone     haltKind = iota // go on (failure action CONTINUE)
	haltPause                    // stop, UpdateStatus PAUSED or ROLLBACK_PAUSED
	haltRollback                 // stop and roll the service back
)

// onFailure returns what an update does when its failures exceed the
// ratio: a rollback is never rolled back, it pauses.
func onFailure(c config) haltKind {
	switch c.failureAction {
	case api.UpdateConfig_CONTINUE:
		return haltNone
	case api.UpdateConfig_ROLLBACK:
		if c.rollingBack {
			return haltPause
		}
		return haltRollback
	}
	return haltPause
}

// isPaused reports whether st is a paused update or rollback: the
// orchestrators must not restart it.
func isPaused(st *api.UpdateStatus) bool {
	s := st.GetState()
	return s == api.UpdateStatus_PAUSED || s == api.UpdateStatus_ROLLBACK_PAUSED
}

// inProgress reports whether st says an update or rollback is running.
func inProgress(st *api.UpdateStatus) bool {
	s := st.GetState()
	return s == api.UpdateStatus_UPDATING || s == api.UpdateStatus_ROLLBACK_STARTED
}

// The status transitions. Each changes s in place and reports whether it
// changed anything; they are applied to the service as read in the write
// transaction.

// markStarted records that an update started at now, unless s already has
// an UpdateStatus: a rollback (ROLLBACK_STARTED) or an update a previous
// leader started keeps its own, with its StartedAt.
func markStarted(s *api.Service, now time.Time) bool {
	if s.GetUpdateStatus() != nil {
		return false
	}
	s.UpdateStatus = &api.UpdateStatus{
		State:     api.UpdateStatus_UPDATING,
		StartedAt: timestamppb.New(now),
		Message:   msgUpdating,
	}
	return true
}

// markCompleted records that the update (COMPLETED) or rollback
// (ROLLBACK_COMPLETED) in progress finished at now.
func markCompleted(s *api.Service, now time.Time) bool {
	st := s.GetUpdateStatus()
	switch st.GetState() {
	case api.UpdateStatus_UPDATING:
		st.State, st.Message = api.UpdateStatus_COMPLETED, msgCompleted
	case api.UpdateStatus_ROLLBACK_STARTED:
		st.State, st.Message = api.UpdateStatus_ROLLBACK_COMPLETED, msgRollbackCompleted
	default:
		return false
	}
	st.CompletedAt = timestamppb.New(now)
	return true
}

// markPaused records that the update (PAUSED) or rollback
// (ROLLBACK_PAUSED) stopped because of task taskID.
func markPaused(s *api.Service, taskID string, now time.Time) bool {
	st := s.GetUpdateStatus()
	switch st.GetState() {
	case api.UpdateStatus_PAUSED, api.UpdateStatus_ROLLBACK_PAUSED:
		return false
	case api.UpdateStatus_ROLLBACK_STARTED:
		st.State, st.Message = api.UpdateStatus_ROLLBACK_PAUSED, msgRollbackPaused+taskID
		return true
	}
	if st == nil {
		st = &api.UpdateStatus{StartedAt: timestamppb.New(now)}
		s.UpdateStatus = st
	}
	st.State, st.Message = api.UpdateStatus_PAUSED, msgPausedPrefix+taskID
	st.CompletedAt = nil
	return true
}

// markRolledBack puts s's previous spec back because of task taskID: Spec
// and PreviousSpec swap, the spec version becomes the version s was read
// at (as a manual rollback does), and UpdateStatus says ROLLBACK_STARTED
// with the update's StartedAt. The orchestrators then update the service
// to its old spec with the Rollback config. A service without a previous
// spec is paused instead.
func markRolledBack(s *api.Service, taskID string, now time.Time) bool {
	if s.GetPreviousSpec() == nil {
		return markPaused(s, taskID, now)
	}
	s.Spec, s.PreviousSpec = s.PreviousSpec, s.Spec
	s.SpecVersion = &api.Version{Index: s.GetMeta().GetVersion().GetIndex()}
	startedAt := s.GetUpdateStatus().GetStartedAt()
	if startedAt == nil {
		startedAt = timestamppb.New(now)
	}
	s.UpdateStatus = &api.UpdateStatus{
		State:     api.UpdateStatus_ROLLBACK_STARTED,
		StartedAt: startedAt,
		Message:   msgRolledBackPrefix + taskID,
	}
	return true
}
