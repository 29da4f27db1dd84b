package node

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/internal/atomicfile"
	"github.com/openswarm/swarmd/manager"
	"github.com/openswarm/swarmd/manager/state/store"
)

// Autolock: with the cluster's EncryptionConfig.AutoLockManagers on, the
// control API keeps a managers' unlock key in the cluster object
// (Cluster.unlock_keys, subsystem "swarm-manager"), and every manager keeps
// its raft DEK sealed with a key derived from it (HKDF-SHA256, then
// AES-256-GCM), in the PEM block's headers and bytes. A manager that
// restarts with a sealed DEK cannot open its raft log until it is given the
// unlock key (Config.UnlockKey): it is locked.

const (
	// unlockKeyPrefix is docker's prefix of a human-readable unlock key.
	unlockKeyPrefix = "SWMKEY-1-"
	// managerUnlockSubsystem names the managers' key among the cluster's
	// unlock keys (as the control API names it).
	managerUnlockSubsystem = "swarm-manager"
	// sealHeader names how a sealed raft DEK is sealed.
	sealHeader    = "Swarmd-Sealed"
	sealAlgorithm = "hkdf-sha256+aes-256-gcm"
	sealInfo      = "swarmd raft DEK seal v1"
)

// ErrLocked: the node's key material is sealed with the swarm's unlock key
// and the node was started without it.
var ErrLocked = errors.New("node: the swarm is locked; its unlock key is needed")

// ErrInvalidUnlockKey: the unlock key given does not open the node's key
// material.
var ErrInvalidUnlockKey = errors.New("node: invalid unlock key")

// FormatUnlockKey is docker's human-readable form of an unlock key,
// "SWMKEY-1-<base64>".
func FormatUnlockKey(key []byte) string {
	return unlockKeyPrefix + base64.RawStdEncoding.EncodeToString(key)
}

// ParseUnlockKey reads a key in FormatUnlockKey's form.
func ParseUnlockKey(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), unlockKeyPrefix)
	if !ok {
		return nil, errors.New("invalid key string")
	}
	key, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(key) == 0 {
		return nil, errors.New("invalid key string")
	}
	return key, nil
}

// ManagerUnlockKey is the managers' unlock key of a cluster object (nil
// while autolock is off).
func ManagerUnlockKey(c *api.Cluster) []byte {
	for _, k := range c.GetUnlockKeys() {
		if k.GetSubsystem() == managerUnlockSubsystem {
			return k.GetKey()
		}
	}
	return nil
}

// sealAEAD is the cipher of an unlock key.
func sealAEAD(unlockKey []byte) (cipher.AEAD, error) {
	kek, err := hkdf.Key(sha256.New, unlockKey, nil, sealInfo, 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// encodeRaftDEK is the raft-dek file of dek: in clear without an unlock
// key, else sealed with it.
func encodeRaftDEK(dek, unlockKey []byte) ([]byte, error) {
	if len(unlockKey) == 0 {
		return pem.EncodeToMemory(&pem.Block{Type: raftDEKPEMType, Bytes: dek}), nil
	}
	aead, err := sealAEAD(unlockKey)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := aead.Seal(nonce, nonce, dek, []byte(raftDEKPEMType))
	return pem.EncodeToMemory(&pem.Block{Type: raftDEKPEMType, Headers: map[string]string{sealHeader: sealAlgorithm}, Bytes: out}), nil
}

// openRaftDEK opens a sealed block's bytes with unlockKey.
func openRaftDEK(blk *pem.Block, unlockKey []byte) ([]byte, error) {
	if alg := blk.Headers[sealHeader]; alg != sealAlgorithm {
		return nil, fmt.Errorf("sealed with %q (headers %v); this version cannot unlock it", alg, blk.Headers)
	}
	if len(unlockKey) == 0 {
		return nil, ErrLocked
	}
	aead, err := sealAEAD(unlockKey)
	if err != nil {
		return nil, err
	}
	if len(blk.Bytes) < aead.NonceSize() {
		return nil, ErrInvalidUnlockKey
	}
	nonce, ct := blk.Bytes[:aead.NonceSize()], blk.Bytes[aead.NonceSize():]
	dek, err := aead.Open(nil, nonce, ct, []byte(raftDEKPEMType))
	if err != nil {
		return nil, ErrInvalidUnlockKey
	}
	return dek, nil
}

// writeRaftDEK saves dek, sealed with unlockKey if there is one, atomically:
// the key the file was sealed with opens it until the new file is in place.
func writeRaftDEK(stateDir string, dek, unlockKey []byte) error {
	b, err := encodeRaftDEK(dek, unlockKey)
	if err != nil {
		return fmt.Errorf("node: seal raft encryption key: %w", err)
	}
	if err := atomicfile.WriteFile(raftDEKPath(stateDir), b, 0o600); err != nil {
		return fmt.Errorf("node: save raft encryption key: %w", err)
	}
	return nil
}

// IsLocked reports whether the node in stateDir keeps its raft DEK sealed
// with an unlock key: it starts only with that key (Config.UnlockKey).
func IsLocked(stateDir string) (bool, error) {
	b, err := os.ReadFile(raftDEKPath(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("node: read raft encryption key: %w", err)
	}
	blk, _ := pem.Decode(b)
	return blk != nil && len(blk.Headers) != 0, nil
}

// CheckUnlockKey reports whether unlockKey opens the node's key material
// in stateDir: nil if it does (or nothing is sealed), ErrInvalidUnlockKey
// if it does not, ErrLocked without a key. It changes nothing.
func CheckUnlockKey(stateDir string, unlockKey []byte) error {
	path := raftDEKPath(stateDir)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node: read raft encryption key: %w", err)
	}
	_, err = parseRaftDEK(path, b, unlockKey)
	return err
}

// followUnlockKey keeps the raft DEK sealed with the cluster's managers'
// unlock key while the manager runs: when autolock is switched on or off,
// or the key rotated, it writes the DEK again (sealed with the new key, or
// in clear). sealedWith is the key the file is sealed with now.
func (n *Node) followUnlockKey(ctx context.Context, m *manager.Manager, dek, sealedWith []byte) {
	select {
	case <-m.Ready():
	case <-ctx.Done():
		return
	}
	for ctx.Err() == nil {
		var cur *api.Cluster
		ch, cancel, err := m.Store().ViewAndWatch(func(tx store.ReadTx) error {
			cs, err := store.FindClusters(tx, store.All)
			if len(cs) > 0 {
				cur = cs[0]
			}
			return err
		}, store.MatchKind(store.KindCluster))
		if err != nil {
			n.log.Warn("node: watch the unlock key", "error", err)
			return
		}
		sealedWith = n.reseal(cur, dek, sealedWith)
		closed := false
		for !closed {
			select {
			case ev, ok := <-ch:
				c, isCluster := ev.Object.(*api.Cluster)
				switch {
				case !ok || ev.Action == store.EventRestore:
					closed = true // (re)subscribe and re-read the store
				case isCluster && ev.Action != store.EventRemove:
					sealedWith = n.reseal(c, dek, sealedWith)
				}
			case <-ctx.Done():
				cancel()
				return
			}
		}
		cancel()
		// A closed watch (a slow watcher, the store closing as the
		// manager stops): subscribe again after a pause.
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reseal writes the DEK again if c's unlock key is not the one it is
// sealed with, and returns the key it is sealed with afterwards.
func (n *Node) reseal(c *api.Cluster, dek, sealedWith []byte) []byte {
	if c == nil {
		return sealedWith
	}
	want := ManagerUnlockKey(c)
	if string(want) == string(sealedWith) {
		return sealedWith
	}
	if err := writeRaftDEK(n.cfg.StateDir, dek, want); err != nil {
		n.log.Error("node: reseal the raft encryption key", "error", err)
		return sealedWith
	}
	n.log.Info("node: raft encryption key resealed", "autolock", len(want) != 0)
	return want
}
