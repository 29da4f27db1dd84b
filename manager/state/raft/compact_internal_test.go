package raft

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestLogCompactedBySize: a member whose log in memory outgrows
// maxLogBytes compacts it past its last snapshot, keeping about
// keepLogBytes; members joining afterwards, which need the entries
// compacted away, get a snapshot taken for them and catch up.
func TestLogCompactedBySize(t *testing.T) {
	small := func(n *Node) { n.maxLogBytes, n.keepLogBytes = 8<<10, 2<<10 }
	m1 := startSMWith(t, t.TempDir(), "127.0.0.1:0", "", small)
	defer m1.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m1.n.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	propose := func(from *smMember, start, n int) {
		t.Helper()
		for i := start; i < start+n; i++ {
			id := fmt.Sprintf("%04d-%s", i, strings.Repeat("x", 500))
			if err := from.n.ProposeValue(ctx, task(id)); err != nil {
				t.Fatalf("propose %d: %v", i, err)
			}
		}
	}
	propose(m1, 0, 100) // about 50 KB
	first, _ := m1.n.storage.FirstIndex()
	last, _ := m1.n.storage.LastIndex()
	if first < 50 {
		t.Fatalf("log in memory starts at %d (last %d): not compacted", first, last)
	}
	ents, err := m1.n.storage.Entries(first, last+1, ^uint64(0))
	if err != nil {
		t.Fatal(err)
	}
	var held int
	for _, e := range ents {
		held += len(e.GetData())
	}
	if held > 8<<10+1024 {
		t.Fatalf("log in memory holds %d bytes, bound %d", held, 8<<10)
	}

	m2 := startSMWith(t, t.TempDir(), "127.0.0.1:0", m1.n.cfg.Addr, small)
	defer m2.stop()
	eventually(t, "the joined member catches up", func() bool { return len(m2.sm.list()) == 100 })
	propose(m2, 100, 50)
	m3 := startSMWith(t, t.TempDir(), "127.0.0.1:0", m1.n.cfg.Addr, small)
	defer m3.stop()
	want := fmt.Sprint(m1.sm.list())
	for _, m := range []*smMember{m2, m3} {
		eventually(t, "members converge", func() bool { return len(m.sm.list()) == 150 })
		if got := fmt.Sprint(m.sm.list()); got != want {
			t.Fatalf("member applied %.80s..., leader %.80s...", got, want)
		}
	}
}
