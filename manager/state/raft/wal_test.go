package raft_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/openswarm/swarmd/manager/state/raft/raftest"
)

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lastWAL returns the newest log segment of a member and where its data
// ends (segments are preallocated with zeros).
func lastWAL(t *testing.T, dir string) (string, int) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no log segments in %s: %v", dir, err)
	}
	sort.Strings(segs)
	b, err := os.ReadFile(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	return segs[len(segs)-1], end
}

func TestTornWALTailIsRepaired(t *testing.T) {
	var logs lockedBuffer
	c := raftest.New(t, 1, raftest.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	m := c.WaitLeader()
	createServices(t, m, "svc", 20)
	c.Stop(m)

	// Cut the last record in half, as a crash in the middle of a write would.
	seg, end := lastWAL(t, m.Dir)
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(end - 5)); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	if err := c.Restart(m); err != nil {
		t.Fatalf("restart after a torn tail: %v", err)
	}
	c.WaitLeader()
	// Every transaction was acknowledged after its fsync, so only the torn
	// record (the last hard state or entry) can be missing.
	if got := countServices(m); got < 19 {
		t.Fatalf("recovered %d services, want at least 19 of 20", got)
	}
	out := logs.String()
	if !strings.Contains(out, "torn record") || !strings.Contains(out, "raft log repaired") {
		t.Fatalf("repair was not logged:\n%s", out)
	}
	createServices(t, m, "after", 2)
}

func TestCorruptWALIsRefused(t *testing.T) {
	c := raftest.New(t, 1, raftest.Options{})
	m := c.WaitLeader()
	createServices(t, m, "svc", 20)
	c.Stop(m)

	// Flip a byte in the middle of the log: not a torn tail but damage; the
	// member must refuse to start rather than start with less.
	seg, end := lastWAL(t, m.Dir)
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[end/2] ^= 0xff
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	err = c.Restart(m)
	if err == nil {
		t.Fatal("member started from a corrupt log")
	}
	if !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("unclear error for a corrupt log: %v", err)
	}
}
