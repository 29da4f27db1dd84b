package node

import (
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/openswarm/swarmd/ca"
	"github.com/openswarm/swarmd/manager/state/raft"
)

const (
	// raftDEKFilename holds, beside the node's TLS material, the data
	// encryption key of the manager's raft log and snapshots.
	raftDEKFilename = "raft-dek"
	raftDEKPEMType  = "SWARM RAFT DEK"
)

// raftDEKPath is <state-dir>/certificates/raft-dek.
func raftDEKPath(stateDir string) string {
	return filepath.Join(stateDir, ca.CertificatesDir, raftDEKFilename)
}

// loadRaftDEK returns the data encryption key the manager's raft log and
// snapshots are sealed with (raft.Config.DEK). It is the one place the key
// comes from: the first time a manager starts on this node it creates
// DEKSize random bytes in <state-dir>/certificates/raft-dek (a PEM block,
// mode 0600, written atomically); afterwards it reads that file, so
// restarts and force-new-cluster open the log with the same key. The key
// goes with the certificates when the node leaves (EraseState); a node
// demoted to worker keeps it for its next promotion (its raft directory is
// removed, so there is nothing to decrypt meanwhile; a sealed one is
// removed with the raft directory, and a promotion makes a new one).
//
// A damaged file is an error, never a reason to make a new key: a new key
// could not open the existing log.
//
// With autolock the file is sealed with the cluster's unlock key (see
// lock.go): unlockKey opens it (ErrLocked without one, ErrInvalidUnlockKey
// for a wrong one), and a new key is written sealed with it.
func loadRaftDEK(stateDir string, unlockKey []byte) ([]byte, error) {
	path := raftDEKPath(stateDir)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseRaftDEK(path, b, unlockKey)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("node: read raft encryption key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("node: raft encryption key: %w", err)
	}
	dek := make([]byte, raft.DEKSize)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("node: generate raft encryption key: %w", err)
	}
	if err := writeRaftDEK(stateDir, dek, unlockKey); err != nil {
		return nil, err
	}
	return dek, nil
}

func parseRaftDEK(path string, b []byte, unlockKey []byte) ([]byte, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != raftDEKPEMType {
		return nil, fmt.Errorf("node: raft encryption key %s is not a %q PEM block", path, raftDEKPEMType)
	}
	dek := blk.Bytes
	if len(blk.Headers) != 0 {
		var err error
		if dek, err = openRaftDEK(blk, unlockKey); err != nil {
			if errors.Is(err, ErrLocked) || errors.Is(err, ErrInvalidUnlockKey) {
				return nil, err
			}
			return nil, fmt.Errorf("node: raft encryption key %s: %w", path, err)
		}
	}
	if len(dek) != raft.DEKSize {
		return nil, fmt.Errorf("node: raft encryption key %s holds %d bytes, want %d", path, len(dek), raft.DEKSize)
	}
	return dek, nil
}
