//go:build integration

package faults

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/openswarm/swarmd/integration/testbed"
)

// Log messages of manager/state/raft/storage.go.
const (
	walRefused  = "is damaged and was not repaired"
	walNoRepair = "has a torn tail that could not be repaired"
	walRepaired = "raft log repaired"
)

// logSinceStart returns h's swarmd log since its last start.
func logSinceStart(h *testbed.Host) string {
	log := h.LogTail(5000)
	if i := strings.LastIndex(log, "=== testbed:"); i >= 0 {
		log = log[i:]
	}
	return log
}

// quiet drops the engine API's error lines from a log.
func quiet(log string) string {
	var keep []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "engine API error") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// TestCorruptedWALTail stops a follower while clients write, overwrites the
// tail of its raft log's records with garbage and starts it again. Either it
// refuses to start, saying its raft log is damaged (its node stops; swarmd
// may keep serving its Engine API, answering that it is no manager), and
// serves no register while the two others go on;
// or it repairs the tail, says so, and catches up; then the leader is
// killed and restarted, so that the repaired log takes part in an election:
// the history stays linearizable and all three read the same values.
// Starting silently, or serving other values, fails.
func TestCorruptedWALTail(t *testing.T) {
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 1))
	c := newCluster(t)
	n := 1 + rng.IntN(64)
	faultAt := time.Duration(4000+rng.IntN(2000)) * time.Millisecond
	var f *testbed.Host
	var refused, started bool
	hs := c.runFault(s, faultAt, 4*time.Second, 90*time.Second, func(*history) {
		lead := c.leader()
		var followers []*testbed.Host
		for _, h := range c.hosts {
			if h != lead {
				followers = append(followers, h)
			}
		}
		f = followers[rng.IntN(len(followers))]
		t.Logf("stop follower %s (leader %s)", f.Name, lead.Name)
		if err := f.StopSwarmd(c.ctx); err != nil {
			t.Error(err)
			return
		}
		if err := f.CorruptWALTail(n); err != nil {
			t.Error(err)
			return
		}
		t0 := time.Now()
		if err := f.StartSwarmd(c.ctx); err != nil {
			t.Logf("start %s: %v", f.Name, err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if !f.SwarmdRunning() {
				refused = true
				t.Logf("%s's swarmd exited %s after its start", f.Name, time.Since(t0).Round(time.Millisecond))
				return
			}
			if log := logSinceStart(f); strings.Contains(log, walRefused) || strings.Contains(log, walNoRepair) {
				refused = true
				t.Logf("%s's node stopped %s after its start (swarmd still serves its Engine API)", f.Name, time.Since(t0).Round(time.Millisecond))
				return
			}
			if c.leaderSeenBy(f) != "" && c.managerUp(f) {
				started = true
				t.Logf("%s is a Reachable manager again %s after its start", f.Name, time.Since(t0).Round(time.Millisecond))
				// Reads through f are served by the leader: make the
				// repaired log count by killing the leader, so that f
				// takes part in the next election (and may win it).
				time.Sleep(2 * time.Second)
				lead := c.leader()
				t.Logf("kill -9 leader %s's swarmd for 3 s", lead.Name)
				if err := lead.Kill(); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(3 * time.Second)
				t.Logf("leader with %s down: %s", lead.Name, c.leaderSeenBy(f))
				if err := lead.StartSwarmd(c.ctx); err != nil {
					t.Error(err)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%s neither exited nor came back as a Reachable manager within 30 s; its log since the start, without API errors:\n%s",
					f.Name, quiet(logSinceStart(f)))
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if t.Failed() || f == nil {
		t.FailNow()
	}
	log := logSinceStart(f)
	damaged := strings.Contains(log, walRefused) || strings.Contains(log, walNoRepair)
	repaired := strings.Contains(log, walRepaired)
	switch {
	case refused:
		if !damaged || repaired {
			t.Fatalf("%s's swarmd exited without saying its raft log is damaged (%q); log since start:\n%s", f.Name, walRefused, log)
		}
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, walRefused) || strings.Contains(line, walNoRepair) {
				t.Logf("outcome: refused to start: %s", line)
				break
			}
		}
		// It serves no register (nothing stale), as a manager or not.
		if f.SwarmdRunning() {
			for key := range registers {
				ctx, cancel := context.WithTimeout(c.ctx, reqTimeout)
				svc, _, err := c.cli[f].ServiceInspectWithRaw(ctx, c.svcs[key], swarm.ServiceInspectOptions{})
				cancel()
				if err == nil {
					t.Errorf("%s refused its raft log but serves reg%d = %q", f.Name, key, svc.Spec.Labels[label])
				} else {
					t.Logf("%s: read reg%d: %v", f.Name, key, err)
				}
			}
			out, err := f.Docker(c.ctx, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.Error}}")
			if err != nil || !strings.HasPrefix(out, "error ") || !(strings.Contains(out, walRefused) || strings.Contains(out, walNoRepair)) {
				t.Errorf("%s: docker info: want local node state error with the damaged raft log, got %q (%v)", f.Name, out, err)
			} else {
				t.Logf("%s: docker info: %s", f.Name, out)
			}
		}
		// The two others go on: one leader between them, and they serve
		// every register.
		var rest []*testbed.Host
		for _, h := range c.hosts {
			if h != f {
				rest = append(rest, h)
			}
		}
		c.hosts = rest
	case started:
		if !repaired || damaged {
			t.Fatalf("%s started over a corrupted raft log without saying it repaired it (%q); log since start:\n%s", f.Name, walRepaired, log)
		}
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, walRepaired) {
				t.Logf("outcome: repaired and rejoined: %s", line)
				break
			}
		}
	}
	t.Logf("leader at the end: %s", c.oneLeader())
	c.raftSettled()
	c.finalReads(hs)
	check(t, hs)
	checkFinalValues(t, hs)
}
