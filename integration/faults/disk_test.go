//go:build integration

package faults

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestFollowerDiskFull fills the state directory of a follower (a small
// tmpfs) while clients on all three managers read and write, with
// snapshots every 50 entries so that the follower must write new files. The
// follower stops taking part (its raft log cannot be written), the two
// others go on writing, and once space returns the follower comes back as
// a Reachable manager by itself, with every acknowledged write: the history
// stays linearizable and the final reads agree.
func TestFollowerDiskFull(t *testing.T) {
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 1))
	// The raft log preallocates 64 MiB segments and keeps a spare one:
	// 192 MiB leaves room for a few snapshots before the filler.
	c, _ := newClusterOpts(t, clusterOpts{stateDirSize: map[int]int64{2: 192 << 20}})
	f := c.hosts[2]
	if lead := c.leader(); lead == f {
		t.Logf("%s leads; demoting it from the lead is not needed: filling its disk must also work", f.Name)
	}
	c.docker(c.hosts[0], "swarm", "update", "--snapshot-interval", "50")
	faultAt := time.Duration(3000+rng.IntN(2000)) * time.Millisecond
	full := time.Duration(6000+rng.IntN(3000)) * time.Millisecond
	var filledAt, freedAt int64
	hs := c.runFault(s, faultAt, 4*time.Second, 2*time.Minute, func(hs *history) {
		n, err := f.FillStateDir()
		if err != nil {
			t.Error(err)
			return
		}
		filledAt = hs.now()
		t.Logf("filled %s's state dir (%d MiB) for %s", f.Name, n>>20, full)
		time.Sleep(full)
		if err := f.FreeStateDir(); err != nil {
			t.Error(err)
			return
		}
		freedAt = hs.now()
		c.eventually(60*time.Second, f.Name+" a Reachable manager again", func() bool { return c.managerUp(f) })
		t.Logf("measure: %s a Reachable manager %s after space returned", f.Name, time.Duration(hs.now()-freedAt).Round(time.Millisecond))
	})
	log := logSinceStart(f)
	if !strings.Contains(log, "no space left on device") {
		t.Errorf("%s's log says nothing of the full disk; the fault did not reach swarmd:\n%s", f.Name, quiet(f.LogTail(60)))
	}
	// The two others kept writing while the follower's disk was full.
	var during int
	for _, op := range hs.finish() {
		in, out := op.Input.(regInput), op.Output.(regOutput)
		if in.Write && !out.Unknown && op.Call > filledAt && op.Return < freedAt {
			during++
		}
	}
	t.Logf("writes acknowledged while %s's disk was full: %d", f.Name, during)
	if during == 0 {
		t.Errorf("no write acknowledged while %s's disk was full", f.Name)
	}
	t.Logf("exactly one leader at the end: %s", c.oneLeader())
	c.raftSettled()
	c.finalReads(hs)
	check(t, hs)
	checkFinalValues(t, hs)
}
