package raft

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// secretMarker stands for a swarm secret: it must never reach the disk in
// clear when a DEK is configured.
const secretMarker = "TOP-SECRET-MARKER-7f3a9c"

func newDEK(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, DEKSize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// diskHolds reports whether any file under dir contains marker.
func diskHolds(t testing.TB, dir, marker string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(marker)) {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestEnvelope(t *testing.T) {
	key, other := newDEK(t), newDEK(t)
	plain := []byte("a secret: " + secretMarker)
	tests := []struct {
		name     string
		sealKey  []byte
		openKey  []byte
		data     []byte
		want     []byte
		wrongKey bool
	}{
		{name: "round trip", sealKey: key, openKey: key, data: plain, want: plain},
		{name: "empty data stays empty", sealKey: key, openKey: key, data: nil, want: nil},
		{name: "wrong key", sealKey: key, openKey: other, data: plain, wrongKey: true},
		{name: "missing key", sealKey: key, openKey: nil, data: plain, wrongKey: true},
		{name: "plaintext passes through a key", sealKey: nil, openKey: key, data: plain, want: plain},
		{name: "plaintext without key", sealKey: nil, openKey: nil, data: plain, want: plain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := newCryptor(tt.sealKey)
			if err != nil {
				t.Fatal(err)
			}
			oc, err := newCryptor(tt.openKey)
			if err != nil {
				t.Fatal(err)
			}
			in := bytes.Clone(tt.data)
			sealed, err := sc.seal(in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(in, tt.data) {
				t.Fatal("seal changed its input")
			}
			if tt.sealKey != nil && len(tt.data) > 0 {
				if !bytes.HasPrefix(sealed, []byte(envelopeMagic)) || bytes.Contains(sealed, tt.data) {
					t.Fatalf("sealed data is not an envelope or holds the plaintext: %q", sealed)
				}
				again, _ := sc.seal(in)
				if bytes.Equal(again, sealed) {
					t.Fatal("two seals of the same data are equal: nonce reused")
				}
			}
			got, err := oc.open(sealed)
			if tt.wrongKey {
				if !errors.Is(err, ErrWrongKey) {
					t.Fatalf("open = %v, want ErrWrongKey", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("open = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnvelopeTamperedOrTruncated(t *testing.T) {
	c, err := newCryptor(newDEK(t))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := c.seal([]byte(secretMarker))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, data := range map[string][]byte{
		"flipped bit": flipped,
		"truncated":   sealed[:len(envelopeMagic)+5],
		"magic only":  []byte(envelopeMagic),
	} {
		if _, err := c.open(data); !errors.Is(err, ErrWrongKey) {
			t.Errorf("%s: open = %v, want ErrWrongKey", name, err)
		}
	}
}

func TestDEKLengthIsValidated(t *testing.T) {
	for _, n := range []int{1, 16, 31, 33} {
		_, err := NewNode(Config{NodeID: "n", Addr: "127.0.0.1:1", Dir: t.TempDir(), DEK: make([]byte, n)})
		if err == nil || !strings.Contains(err.Error(), "data encryption key") {
			t.Errorf("DEK of %d bytes: NewNode error = %v", n, err)
		}
	}
	if _, err := NewNode(Config{NodeID: "n", Addr: "127.0.0.1:1", Dir: t.TempDir(), DEK: make([]byte, DEKSize)}); err != nil {
		t.Errorf("DEK of %d bytes: %v", DEKSize, err)
	}
}

// testEntries returns normal entries lo..hi holding the marker, and a conf
// change at lo.
func testEntries(t *testing.T, lo, hi uint64) []*raftpb.Entry {
	t.Helper()
	var ents []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		e := &raftpb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(i), Type: raftpb.EntryType_EntryNormal.Enum(),
			Data: []byte(fmt.Sprintf("entry %d %s", i, secretMarker))}
		if i == lo {
			cc, err := proto.Marshal(&raftpb.ConfChange{Type: raftpb.ConfChangeType_ConfChangeAddNode.Enum(), NodeId: proto.Uint64(1),
				Context: []byte("member context " + secretMarker)})
			if err != nil {
				t.Fatal(err)
			}
			e.Type, e.Data = raftpb.EntryType_EntryConfChange.Enum(), cc
		}
		ents = append(ents, e)
	}
	return ents
}

func cloneEntries(ents []*raftpb.Entry) []*raftpb.Entry {
	out := make([]*raftpb.Entry, len(ents))
	for i, e := range ents {
		out[i] = proto.Clone(e).(*raftpb.Entry)
	}
	return out
}

func openDisk(t *testing.T, dir string, dek []byte) *diskStorage {
	t.Helper()
	d, err := newDiskStorage(dir, 1, dek, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// writeLog creates a log in dir (self named with the marker), saves
// entries 1..10 and a snapshot at 5, and closes it.
func writeLog(t *testing.T, dir string, dek []byte) []*raftpb.Entry {
	t.Helper()
	d := openDisk(t, dir, dek)
	if err := d.create(&api.RaftMember{RaftId: 7, NodeId: "node-" + secretMarker, Addr: "10.0.0.1:4242"}); err != nil {
		t.Fatal(err)
	}
	ents := testEntries(t, 1, 10)
	orig := cloneEntries(ents)
	if err := d.save(&raftpb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(7), Commit: proto.Uint64(10)}, ents); err != nil {
		t.Fatal(err)
	}
	sn := &raftpb.Snapshot{Data: []byte("snapshot " + secretMarker), Metadata: &raftpb.SnapshotMetadata{
		Index: proto.Uint64(5), Term: proto.Uint64(1), ConfState: &raftpb.ConfState{Voters: []uint64{7}}}}
	snOrig := proto.Clone(sn)
	if err := d.saveSnapshot(sn); err != nil {
		t.Fatal(err)
	}
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	// What raft handed over is shared with MemoryStorage and peers: it
	// must stay plaintext.
	for i := range ents {
		if !proto.Equal(ents[i], orig[i]) {
			t.Fatalf("save changed entry %d: %v", i+1, ents[i])
		}
	}
	if !proto.Equal(sn, snOrig) {
		t.Fatal("saveSnapshot changed the snapshot")
	}
	return orig
}

func loadLog(t *testing.T, dir string, dek []byte) *loaded {
	t.Helper()
	d := openDisk(t, dir, dek)
	l, err := d.load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.close() })
	return l
}

func checkLoaded(t *testing.T, l *loaded, want []*raftpb.Entry) {
	t.Helper()
	if l.self.GetRaftId() != 7 || l.self.GetNodeId() != "node-"+secretMarker {
		t.Fatalf("self = %v", l.self)
	}
	if l.snapshot == nil || string(l.snapshot.GetData()) != "snapshot "+secretMarker {
		t.Fatalf("snapshot = %v", l.snapshot)
	}
	if len(l.entries) != len(want) {
		t.Fatalf("loaded %d entries, want %d", len(l.entries), len(want))
	}
	for i := range want {
		if !proto.Equal(l.entries[i], want[i]) {
			t.Fatalf("entry %d = %v, want %v", i, l.entries[i], want[i])
		}
	}
}

func TestDiskStorageEncryptsEverythingItWrites(t *testing.T) {
	dir := t.TempDir()
	dek := newDEK(t)
	ents := writeLog(t, dir, dek)
	if files := diskHolds(t, dir, secretMarker); len(files) > 0 {
		t.Fatalf("plaintext marker on disk in %v", files)
	}
	checkLoaded(t, loadLog(t, dir, dek), ents[5:]) // entries after the snapshot at 5
}

func TestDiskStorageWrongKey(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, newDEK(t))
	for name, dek := range map[string][]byte{"wrong key": newDEK(t), "no key": nil} {
		d := openDisk(t, dir, dek)
		_, err := d.load()
		if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "cannot decrypt the raft log: wrong or missing key") ||
			!strings.Contains(err.Error(), dir) {
			t.Fatalf("%s: load = %v, want ErrWrongKey naming %s", name, err, dir)
		}
		if d.wal != nil {
			t.Fatalf("%s: log left open after a failed load", name)
		}
	}
}

func TestPlaintextLogReadableWithKey(t *testing.T) {
	dir := t.TempDir()
	ents := writeLog(t, dir, nil)
	if len(diskHolds(t, dir, secretMarker)) == 0 {
		t.Fatal("no plaintext marker in a log written without a key: the disk scan proves nothing")
	}
	dek := newDEK(t)
	d := openDisk(t, dir, dek)
	l, err := d.load()
	if err != nil {
		t.Fatal(err)
	}
	checkLoaded(t, l, ents[5:])
	// New writes to the old log are sealed; old and new read back together.
	more := testEntries(t, 11, 12)
	moreOrig := cloneEntries(more)
	if err := d.save(&raftpb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(7), Commit: proto.Uint64(12)}, more); err != nil {
		t.Fatal(err)
	}
	if err := d.close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range diskHolds(t, dir, "entry 11 "+secretMarker) {
		t.Fatalf("entry written with a key is in clear in %s", f)
	}
	checkLoaded(t, loadLog(t, dir, dek), append(ents[5:], moreOrig...))
}

// encMember is a raft member with a DEK and the minimal state machine.
type encMember struct {
	dir, addr string
	dek       []byte
	n         *Node
	sm        *logSM
	srv       *grpc.Server
}

func (m *encMember) start(t *testing.T, listen, join string) error {
	return m.startForce(t, listen, join, false)
}

func (m *encMember) startForce(t *testing.T, listen, join string, force bool) error {
	t.Helper()
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	m.addr = lis.Addr().String()
	n, err := NewNode(Config{NodeID: m.dir, Addr: m.addr, Dir: m.dir, JoinAddr: join, DEK: m.dek, ForceNewCluster: force,
		TickInterval: 10 * time.Millisecond, SnapshotInterval: 10, LogEntriesForSlowFollowers: 2,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		_ = lis.Close()
		return err
	}
	srv := grpc.NewServer()
	n.Register(srv)
	go func() { _ = srv.Serve(lis) }()
	sm := &logSM{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Start(ctx, sm); err != nil {
		srv.Stop()
		return err
	}
	m.n, m.sm, m.srv = n, sm, srv
	return nil
}

func (m *encMember) stop() {
	if m.n == nil {
		return
	}
	m.n.Stop()
	m.srv.Stop()
	m.n = nil
}

func TestEncryptedClusterSnapshotCatchUp(t *testing.T) {
	var ms []*encMember
	for i := 0; i < 3; i++ {
		m := &encMember{dir: t.TempDir(), dek: newDEK(t)}
		ms = append(ms, m)
		t.Cleanup(m.stop)
	}
	m1, m2, m3 := ms[0], ms[1], ms[2]
	if err := m1.start(t, "127.0.0.1:0", ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m1.n.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*encMember{m2, m3} {
		if err := m.start(t, "127.0.0.1:0", m1.addr); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "three voters", func() bool { return len(m1.n.Voters()) == 3 })
	propose := func(from int, to int) {
		for i := from; i < to; i++ {
			if err := m1.n.ProposeValue(ctx, task(fmt.Sprintf("%s-%d", secretMarker, i))); err != nil {
				t.Fatalf("propose %d: %v", i, err)
			}
		}
	}
	propose(0, 5)
	eventually(t, "m3 to apply the first tasks", func() bool { return len(m3.sm.list()) == 5 })
	m3.stop()
	// Past several snapshots and compactions: m3 can only catch up from a
	// snapshot, which the leader sends in clear and m3 seals with its key.
	propose(5, 40)
	if err := m3.start(t, m3.addr, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, "m3 to catch up", func() bool { return len(m3.sm.list()) == 40 })
	if m3.n.SnapshotsReceived() == 0 {
		t.Fatal("m3 caught up without a snapshot; the test did not exercise snapshot transfer")
	}
	propose(40, 45) // entries after the snapshot, on every disk
	for _, m := range ms {
		eventually(t, "every member to apply everything", func() bool { return len(m.sm.list()) == 45 })
	}
	m3.stop()
	// m3's disk opens with its own key only: what it saved from the
	// leader's snapshot was sealed with m3's DEK, not the leader's.
	d := openDisk(t, m3.dir, m1.dek)
	if _, err := d.load(); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("m3's log opened with m1's key: %v", err)
	}
	// Restarted while its peers run (see the report: a member restarting
	// while a peer is down can race its transport against raft), m3 reads
	// its encrypted snapshot and log back.
	if err := m3.start(t, m3.addr, ""); err != nil {
		t.Fatalf("restart m3 from its encrypted disk: %v", err)
	}
	propose(45, 50)
	for _, m := range ms {
		eventually(t, "every member to apply everything after m3's restart", func() bool { return len(m.sm.list()) == 50 })
	}
	for _, m := range ms {
		m.stop()
	}
	for i, m := range ms {
		if files := diskHolds(t, m.dir, secretMarker); len(files) > 0 {
			t.Fatalf("member %d: plaintext marker on disk in %v", i+1, files)
		}
	}
}

func TestEncryptedForceNewClusterAndRestart(t *testing.T) {
	m := &encMember{dir: t.TempDir(), dek: newDEK(t)}
	t.Cleanup(m.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	propose := func(from, to int) {
		t.Helper()
		if err := m.n.WaitForLeader(ctx); err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			if err := m.n.ProposeValue(ctx, task(fmt.Sprintf("%s-%d", secretMarker, i))); err != nil {
				t.Fatalf("propose %d: %v", i, err)
			}
		}
	}
	if err := m.start(t, "127.0.0.1:0", ""); err != nil {
		t.Fatal(err)
	}
	propose(0, 25) // past two snapshots
	m.stop()
	if err := m.startForce(t, m.addr, "", true); err != nil {
		t.Fatalf("force a new cluster from an encrypted disk: %v", err)
	}
	eventually(t, "the forced member to hold every task", func() bool { return len(m.sm.list()) == 25 })
	propose(25, 30)
	m.stop()
	if files := diskHolds(t, m.dir, secretMarker); len(files) > 0 {
		t.Fatalf("plaintext marker on disk in %v", files)
	}
	if err := m.start(t, m.addr, ""); err != nil {
		t.Fatalf("restart from an encrypted disk: %v", err)
	}
	eventually(t, "the restarted member to hold every task", func() bool { return len(m.sm.list()) == 30 })
	m.stop()
	if _, err := openDisk(t, m.dir, newDEK(t)).load(); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("load with another key = %v, want ErrWrongKey", err)
	}
}
