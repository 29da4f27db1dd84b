package restart

import (
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/orchestrator"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Defaults and bounds of restart policies.
const (
	// DefaultDelay is the restart delay of a policy that sets none.
	DefaultDelay = 5 * time.Second
	// MaxBackoffFactor bounds the growing delay: consecutive restarts wait
	// Delay, 2×Delay, 4×Delay, then 8×Delay each.
	MaxBackoffFactor = 8
	// MaxBackoff bounds the growing delay in absolute terms (a policy whose
	// own delay is longer keeps its delay).
	MaxBackoff = 5 * time.Minute
	// ResetAfter is how long a replacement has to run, beyond its delay,
	// for its stop to count as a new failure rather than one more in a
	// row: the backoff starts over.
	ResetAfter = time.Minute
)

// backoffEntries is how many restarts in a row the backoff can tell
// apart (1, 2, 4, 8 times the delay).
const backoffEntries = 4

// Policy is a task's restart policy with the defaults filled in.
type Policy struct {
	Condition   api.RestartPolicy_Condition
	Delay       time.Duration
	MaxAttempts uint64        // 0: unlimited
	Window      time.Duration // 0: attempts count forever
}

// PolicyOf returns t's restart policy. Without one, a service task
// restarts on any stop and a job task on failure; a job task never
// restarts once it completed (ANY means ON_FAILURE for jobs).
func PolicyOf(t *api.Task) Policy {
	job := t.GetJobIteration() != nil
	p := Policy{Condition: api.RestartPolicy_ANY, Delay: DefaultDelay}
	if rp := t.GetSpec().GetRestart(); rp != nil {
		p.Condition = rp.GetCondition()
		if rp.Delay != nil {
			p.Delay = max(rp.GetDelay().AsDuration(), 0)
		}
		p.MaxAttempts = rp.GetMaxAttempts()
		p.Window = max(rp.GetWindow().AsDuration(), 0)
	}
	if job && p.Condition == api.RestartPolicy_ANY {
		p.Condition = api.RestartPolicy_ON_FAILURE
	}
	return p
}

// maxDelay is the longest delay p's backoff grows to.
func (p Policy) maxDelay() time.Duration {
	if p.Delay >= MaxBackoff {
		return p.Delay
	}
	return min(p.Delay*MaxBackoffFactor, MaxBackoff)
}

// delay is the wait before the nth restart in a row (n >= 1).
func (p Policy) delay(n int) time.Duration {
	d, ceiling := p.Delay, p.maxDelay()
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// stoppedOnItsOwn reports whether t ended by itself (exited, failed,
// rejected) rather than being stopped by a manager (SHUTDOWN) or lost.
func stoppedOnItsOwn(t *api.Task) bool {
	switch t.GetStatus().GetState() {
	case api.TaskState_TASK_STATE_COMPLETE, api.TaskState_TASK_STATE_FAILED, api.TaskState_TASK_STATE_REJECTED:
		return true
	}
	return false
}

// allows reports whether p lets the task t, which stopped, be replaced,
// and if not why. The decision is taken at t's stop (its status
// timestamp, as the agent reported it), so it comes out the same whenever
// it is asked: attempts count the restarts of t's history in the window
// ending there (a task without timestamp has none in a bounded window).
func allows(p Policy, t *api.Task) (bool, string) {
	switch p.Condition {
	case api.RestartPolicy_NONE:
		return false, "restart condition none"
	case api.RestartPolicy_ON_FAILURE:
		if t.GetStatus().GetState() == api.TaskState_TASK_STATE_COMPLETE {
			return false, "task completed; restart condition on-failure"
		}
	}
	if p.MaxAttempts == 0 {
		return true, ""
	}
	at := t.GetStatus().GetTimestamp().AsTime()
	if attempts(t.GetRestartHistory(), at, p.Window) >= p.MaxAttempts {
		return false, "restart attempts used up"
	}
	return true, ""
}

// attempts counts the restarts of history in the window ending at at
// (all of them for a zero window).
func attempts(history []*timestamppb.Timestamp, at time.Time, window time.Duration) uint64 {
	if window == 0 {
		return uint64(len(history))
	}
	n := uint64(0)
	for _, h := range history {
		if ht := h.AsTime(); ht.After(at.Add(-window)) && !ht.After(at) {
			n++
		}
	}
	return n
}

// inARow counts the restarts at the end of history that followed each
// other closely enough (within the longest delay plus ResetAfter) to be
// one crash loop, up to backoffEntries; 0 for an empty history.
func inARow(p Policy, history []*timestamppb.Timestamp) int {
	if len(history) == 0 {
		return 0
	}
	n, gap := 1, p.maxDelay()+ResetAfter
	for i := len(history) - 1; i > 0 && n < backoffEntries; i-- {
		if history[i].AsTime().Sub(history[i-1].AsTime()) > gap {
			break
		}
		n++
	}
	return n
}

// trim returns the newest entries of history that later decisions
// under p need, from now on: those the window (and max attempts) can
// still count and those the backoff looks at.
func trim(p Policy, history []*timestamppb.Timestamp, now time.Time) []*timestamppb.Timestamp {
	keep := min(len(history), backoffEntries)
	if p.MaxAttempts > 0 {
		counted := 0
		for i := len(history) - 1; i >= 0; i-- {
			if p.Window > 0 && !history[i].AsTime().After(now.Add(-p.Window)) {
				break
			}
			counted++
		}
		keep = max(keep, min(counted, int(min(p.MaxAttempts, uint64(len(history))))))
	}
	return history[len(history)-keep:]
}

// StartAt returns when the replacement t may start: its last restart
// plus the delay its policy gives that many restarts in a row. ok is
// false when t has no restart history (nothing to wait for).
func StartAt(t *api.Task) (at time.Time, ok bool) {
	h := t.GetRestartHistory()
	if len(h) == 0 {
		return time.Time{}, false
	}
	p := PolicyOf(t)
	return h[len(h)-1].AsTime().Add(p.delay(inARow(p, h))), true
}

// sameRun reports whether t was made from s's current spec and, for
// jobs, belongs to its current iteration: the run its restart history
// counts for.
func sameRun(s *api.Service, t *api.Task) bool {
	return proto.Equal(s.GetSpecVersion(), t.GetSpecVersion()) &&
		proto.Equal(s.GetJobStatus().GetJobIteration(), t.GetJobIteration())
}

// GaveUp reports whether the restart policy left t's slot (or node)
// empty on purpose: t, of s's current spec (and job iteration), stopped
// on its own, was shut down, and its policy allowed no replacement at its
// stop. The orchestrators do not refill such a slot; a spec update (or a
// new job iteration) starts afresh. A task shut down for other reasons
// (node down or drained, update, scale down) never counts.
func GaveUp(s *api.Service, t *api.Task) bool {
	if s == nil || t.GetDesiredState() != api.TaskState_TASK_STATE_SHUTDOWN || !stoppedOnItsOwn(t) || !sameRun(s, t) {
		return false
	}
	ok, _ := allows(PolicyOf(t), t)
	return !ok
}

// SlotGaveUp reports whether the slot (or node) whose tasks are given
// was left empty by the restart policy: none of them is runnable and one
// GaveUp.
func SlotGaveUp(s *api.Service, tasks []*api.Task) bool {
	gaveUp := false
	for _, t := range tasks {
		if orchestrator.IsRunnable(t) {
			return false
		}
		gaveUp = gaveUp || GaveUp(s, t)
	}
	return gaveUp
}
