package raft_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/openswarm/swarmd/manager/state/raft/raftest"
)

// TestSetSnapshotPolicy changes the snapshot interval of running members
// (as `docker swarm update --snapshot-interval` does): snapshots follow the
// new interval, not the one the members started with.
func TestSetSnapshotPolicy(t *testing.T) {
	snaps := func(m *raftest.Member) int {
		files, _ := filepath.Glob(filepath.Join(m.Dir, "snap", "*.snap"))
		return len(files)
	}
	c := raftest.New(t, 3, raftest.Options{SnapshotInterval: 100000})
	l := c.WaitLeader()
	createServices(t, l, "before", 30)
	c.WaitConverged()
	for _, m := range c.Running() {
		if n := snaps(m); n != 0 {
			t.Fatalf("%s: %d snapshots before 100000 entries", m.Name, n)
		}
	}
	for _, m := range c.Running() {
		m.Node.SetSnapshotPolicy(10, 2)
	}
	createServices(t, l, "after", 30)
	c.WaitConverged()
	raftest.Eventually(t, 10*time.Second, "every member snapshots at the new interval", func() bool {
		for _, m := range c.Running() {
			if snaps(m) == 0 {
				return false
			}
		}
		return true
	})
}
