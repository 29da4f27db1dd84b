package raft

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/internal/atomicfile"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	raftpb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// diskStorage keeps the raft log (etcd's WAL: CRC-framed records, fsync'd
// before raft may act on them) and snapshots under <state-dir>/raft. With a
// data encryption key it seals, on their way to disk, the Data of every
// entry and snapshot and the WAL metadata, and opens them on load (see
// encrypt.go); what it returns and what callers hand it stay plaintext.
type diskStorage struct {
	dir      string
	log      *slog.Logger
	zl       *zap.Logger
	wal      *wal.WAL
	snapshot *snap.Snapshotter
	keepSnap int
	crypt    *cryptor
}

// loaded is what a member finds on disk at start.
type loaded struct {
	self      *api.RaftMember
	snapshot  *raftpb.Snapshot
	hardState *raftpb.HardState
	entries   []*raftpb.Entry
}

// newDiskStorage prepares the storage in dir; dek is the data encryption
// key (nil: no encryption).
func newDiskStorage(dir string, keepSnap int, dek []byte, log *slog.Logger) (*diskStorage, error) {
	if keepSnap < 1 {
		keepSnap = 1
	}
	c, err := newCryptor(dek)
	if err != nil {
		return nil, err
	}
	return &diskStorage{dir: dir, log: log, zl: zap.NewNop(), keepSnap: keepSnap, crypt: c}, nil
}

// decryptErr names the raft directory a record failed to open in.
func (d *diskStorage) decryptErr(what string, err error) error {
	return fmt.Errorf("%w (raft directory %s, %s)", err, d.dir, what)
}

func (d *diskStorage) walDir() string  { return filepath.Join(d.dir, "wal") }
func (d *diskStorage) snapDir() string { return filepath.Join(d.dir, "snap") }

// exists reports whether a raft log was written here before.
func (d *diskStorage) exists() bool { return wal.Exist(d.walDir()) }

// create writes a new, empty log that records who this member is.
func (d *diskStorage) create(self *api.RaftMember) error {
	if err := os.MkdirAll(d.snapDir(), 0o700); err != nil {
		return fmt.Errorf("create raft snapshot dir: %w", err)
	}
	meta, err := proto.Marshal(self)
	if err != nil {
		return fmt.Errorf("encode raft member: %w", err)
	}
	if meta, err = d.crypt.seal(meta); err != nil {
		return err
	}
	w, err := wal.Create(d.zl, d.walDir(), meta)
	if err != nil {
		return fmt.Errorf("create raft log: %w", err)
	}
	d.wal = w
	d.snapshot = snap.New(d.zl, d.snapDir())
	return nil
}

// load opens the log written before, repairing a torn tail: a record cut
// short by a crash is dropped with everything after it, and the log says so.
// Any other damage (a CRC mismatch inside the log) refuses to start.
func (d *diskStorage) load() (*loaded, error) {
	if err := os.MkdirAll(d.snapDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create raft snapshot dir: %w", err)
	}
	d.snapshot = snap.New(d.zl, d.snapDir())
	walSnaps, err := wal.ValidSnapshotEntries(d.zl, d.walDir())
	if err != nil {
		return nil, fmt.Errorf("raft log in %s is damaged and was not repaired (restore the state directory from a backup, or remove it and join again): %w", d.walDir(), err)
	}
	sn, err := d.snapshot.LoadNewestAvailable(walSnaps)
	if err != nil && !errors.Is(err, snap.ErrNoSnapshot) {
		return nil, fmt.Errorf("load raft snapshot: %w", err)
	}
	walSnap := &walpb.Snapshot{}
	if sn != nil {
		walSnap = &walpb.Snapshot{
			Index:     proto.Uint64(sn.GetMetadata().GetIndex()),
			Term:      proto.Uint64(sn.GetMetadata().GetTerm()),
			ConfState: sn.GetMetadata().GetConfState(),
		}
	}
	meta, hs, ents, err := d.readWAL(walSnap, true)
	if err != nil {
		return nil, err
	}
	if err := d.openLoaded(&meta, sn, ents); err != nil {
		_ = d.close()
		return nil, err
	}
	self := &api.RaftMember{}
	if err := proto.Unmarshal(meta, self); err != nil || self.GetRaftId() == 0 {
		return nil, fmt.Errorf("raft log metadata does not name this member (%v)", err)
	}
	return &loaded{self: self, snapshot: sn, hardState: hs, entries: ents}, nil
}

// openLoaded decrypts, in place, what load read: the WAL metadata, the
// snapshot's data and every entry's data. Plaintext records (written before
// encryption) pass through.
func (d *diskStorage) openLoaded(meta *[]byte, sn *raftpb.Snapshot, ents []*raftpb.Entry) error {
	var err error
	if *meta, err = d.crypt.open(*meta); err != nil {
		return d.decryptErr("log metadata", err)
	}
	if sn != nil {
		if sn.Data, err = d.crypt.open(sn.GetData()); err != nil {
			return d.decryptErr(fmt.Sprintf("snapshot at index %d", sn.GetMetadata().GetIndex()), err)
		}
	}
	for _, e := range ents {
		if e.Data, err = d.crypt.open(e.GetData()); err != nil {
			return d.decryptErr(fmt.Sprintf("entry %d", e.GetIndex()), err)
		}
	}
	return nil
}

func (d *diskStorage) readWAL(walSnap *walpb.Snapshot, repair bool) ([]byte, *raftpb.HardState, []*raftpb.Entry, error) {
	w, err := wal.Open(d.zl, d.walDir(), walSnap)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open raft log: %w", err)
	}
	meta, hs, ents, err := w.ReadAll()
	if err == nil {
		d.wal = w
		return meta, hs, ents, nil
	}
	_ = w.Close()
	if !repair || !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, nil, nil, fmt.Errorf("raft log in %s is damaged and was not repaired (restore the state directory from a backup, or remove it and join again): %w", d.walDir(), err)
	}
	d.log.Warn("raft log ends with a torn record; truncating it to the last complete record",
		"dir", d.walDir(), "error", err)
	if !wal.Repair(d.zl, d.walDir()) {
		return nil, nil, nil, fmt.Errorf("raft log in %s has a torn tail that could not be repaired: %w", d.walDir(), err)
	}
	meta, hs, ents, err = d.readWAL(walSnap, false)
	if err != nil {
		return nil, nil, nil, err
	}
	last := walSnap.GetIndex()
	if len(ents) > 0 {
		last = ents[len(ents)-1].GetIndex()
	}
	d.log.Warn("raft log repaired: recovered every complete record; the torn one was saved beside it as .broken",
		"dir", d.walDir(), "last_index", last, "commit", hs.GetCommit())
	return meta, hs, ents, nil
}

// save appends entries and the hard state; it fsyncs when raft says the
// write must be durable before anything is acknowledged.
func (d *diskStorage) save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	ents, err := d.sealEntries(ents)
	if err != nil {
		return err
	}
	if err := d.wal.Save(hs, ents); err != nil {
		return fmt.Errorf("write raft log: %w", err)
	}
	return nil
}

// sealEntries returns copies of ents with their data sealed; ents are
// shared with raft's MemoryStorage and messages to peers, so they are never
// changed. Without a key it returns ents.
func (d *diskStorage) sealEntries(ents []*raftpb.Entry) ([]*raftpb.Entry, error) {
	if !d.crypt.enabled() || len(ents) == 0 {
		return ents, nil
	}
	out := make([]*raftpb.Entry, len(ents))
	for i, e := range ents {
		data, err := d.crypt.seal(e.GetData())
		if err != nil {
			return nil, err
		}
		out[i] = &raftpb.Entry{Term: e.Term, Index: e.Index, Type: e.Type, Data: data}
	}
	return out, nil
}

// saveSnapshot writes a snapshot file (its data sealed, in a copy: sn stays
// plaintext for MemoryStorage), then records it in the log.
func (d *diskStorage) saveSnapshot(sn *raftpb.Snapshot) error {
	onDisk := sn
	if d.crypt.enabled() {
		data, err := d.crypt.seal(sn.GetData())
		if err != nil {
			return err
		}
		onDisk = &raftpb.Snapshot{Metadata: sn.GetMetadata(), Data: data}
	}
	if err := d.snapshot.SaveSnap(onDisk); err != nil {
		return fmt.Errorf("write raft snapshot: %w", err)
	}
	ws := &walpb.Snapshot{
		Index:     proto.Uint64(sn.GetMetadata().GetIndex()),
		Term:      proto.Uint64(sn.GetMetadata().GetTerm()),
		ConfState: sn.GetMetadata().GetConfState(),
	}
	if err := d.wal.SaveSnapshot(ws); err != nil {
		return fmt.Errorf("record raft snapshot in log: %w", err)
	}
	if err := d.wal.ReleaseLockTo(sn.GetMetadata().GetIndex()); err != nil {
		return fmt.Errorf("release raft log segments: %w", err)
	}
	return nil
}

// purge removes snapshot files beyond the newest keepSnap and log segments
// that only hold entries older than the oldest snapshot kept.
func (d *diskStorage) purge() error {
	snaps, err := listSuffix(d.snapDir(), ".snap")
	if err != nil {
		return err
	}
	if len(snaps) > d.keepSnap {
		for _, name := range snaps[:len(snaps)-d.keepSnap] {
			if err := os.Remove(filepath.Join(d.snapDir(), name)); err != nil {
				return fmt.Errorf("purge raft snapshot: %w", err)
			}
		}
		snaps = snaps[len(snaps)-d.keepSnap:]
	}
	if len(snaps) == 0 {
		return nil
	}
	var term, oldest uint64
	if _, err := fmt.Sscanf(snaps[0], "%016x-%016x.snap", &term, &oldest); err != nil {
		return nil
	}
	segs, err := listSuffix(d.walDir(), ".wal")
	if err != nil {
		return err
	}
	// A segment may go when the next one starts at or before the oldest
	// snapshot kept: everything in it is covered by that snapshot.
	for i := 0; i+1 < len(segs); i++ {
		var seq, next uint64
		if _, err := fmt.Sscanf(segs[i+1], "%016x-%016x.wal", &seq, &next); err != nil || next > oldest {
			break
		}
		if err := os.Remove(filepath.Join(d.walDir(), segs[i])); err != nil {
			return fmt.Errorf("purge raft log segment: %w", err)
		}
	}
	return nil
}

func (d *diskStorage) close() error {
	if d.wal == nil {
		return nil
	}
	err := d.wal.Close()
	d.wal = nil
	return err
}

func listSuffix(dir, suffix string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, de := range des {
		if strings.HasSuffix(de.Name(), suffix) {
			out = append(out, de.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

const removedFile = "removed"

// writeRemovedMarker records, atomically and durably, that the member whose
// state is in dir was removed from its cluster.
func writeRemovedMarker(dir string) error {
	if err := atomicfile.WriteFile(filepath.Join(dir, removedFile), []byte("this raft member was removed from its cluster\n"), 0o600); err != nil {
		return fmt.Errorf("write removal marker: %w", err)
	}
	return nil
}

func removedMarker(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, removedFile))
	return err == nil
}
