package node

import (
	"context"
	"time"

	"github.com/openswarm/swarmd/ca"
)

// Restarting a manager whose raft member stopped on its own: its log could
// not be written (disk full, I/O errors) or read. The node's agent keeps
// running meanwhile, and the member comes back with its own log once the
// cause is gone, without a restart of swarmd.
const (
	managerRestartFirst = 500 * time.Millisecond
	managerRestartMax   = 10 * time.Second
	// managerRestartStable: a manager that ran this long before it
	// stopped again starts over from managerRestartFirst.
	managerRestartStable = time.Minute
)

// managerRestarts counts restarts of the manager that followed each other
// closely.
type managerRestarts struct {
	attempt   int
	lastReady time.Time
}

// managerRestartDelay is the pause before the attempt-th (from 0) start of
// the manager again: doubling from managerRestartFirst, at most
// managerRestartMax.
func managerRestartDelay(attempt int) time.Duration {
	d := managerRestartFirst
	for range attempt {
		d *= 2
		if d >= managerRestartMax {
			return managerRestartMax
		}
	}
	return d
}

// restartManager starts the manager again after it stopped with cause and
// returns it once it is ready (or ctx ends). Each attempt pauses longer than
// the one before, unless the manager had been running for
// managerRestartStable.
func (n *Node) restartManager(ctx context.Context, sec *ca.SecurityConfig, cause error, managers []string, rs *managerRestarts) (*managerRun, error) {
	if time.Since(rs.lastReady) > managerRestartStable {
		rs.attempt = 0
	}
	for ; ; rs.attempt++ {
		delay := managerRestartDelay(rs.attempt)
		n.log.Error("node: manager stopped; starting it again", "error", cause, "attempt", rs.attempt+1, "delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		mr, err := n.startManager(ctx, sec, nil, managers)
		if err != nil {
			cause = err
			continue
		}
		select {
		case <-mr.m.Ready():
			n.log.Info("node: manager running again", "attempt", rs.attempt+1)
			rs.attempt++
			rs.lastReady = time.Now()
			return mr, nil
		case <-mr.exited:
			cause = mr.err
		case <-ctx.Done():
			mr.stop()
			return nil, ctx.Err()
		}
	}
}
