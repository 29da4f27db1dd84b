package node

import (
	"bytes"
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
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
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
//
// The manager's TLS key (certificates/swarm-node.key) is sealed the same
// way (its own HKDF info), as one or more "SWARMD SEALED NODE KEY" PEM
// blocks, each the whole clear key PEM sealed with one unlock key: a locked
// manager's state dir holds neither its raft DEK nor its TLS key in clear.
// The key is sealed with two unlock keys only while they change: the DEK
// and the TLS key are two files, and the key sealed with both the old and
// the new unlock key is written before the DEK and rewritten with the new
// key alone after it, so a crash at any point leaves both files opening
// with one and the same key (see reseal). Workers are never sealed.

const (
	// unlockKeyPrefix is docker's prefix of a human-readable unlock key.
	unlockKeyPrefix = "SWMKEY-1-"
	// managerUnlockSubsystem names the managers' key among the cluster's
	// unlock keys (as the control API names it).
	managerUnlockSubsystem = "swarm-manager"
	// sealHeader names how a sealed block (raft DEK, TLS key) is sealed.
	sealHeader    = "Swarmd-Sealed"
	sealAlgorithm = "hkdf-sha256+aes-256-gcm"
	sealInfo      = "swarmd raft DEK seal v1"
	// nodeKeyPEMType and nodeKeySealInfo: the sealed TLS key.
	nodeKeyPEMType  = "SWARMD SEALED NODE KEY"
	nodeKeySealInfo = "swarmd node key seal v1"
	// maxOpenKeys bounds the unlock keys a node keeps to open its TLS
	// key (the current one and those before it in this process).
	maxOpenKeys = 4
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

// sealAEAD is the cipher of an unlock key for info's purpose.
func sealAEAD(unlockKey []byte, info string) (cipher.AEAD, error) {
	kek, err := hkdf.Key(sha256.New, unlockKey, nil, info, 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// sealBlock is plain sealed with unlockKey in a PEM block of type typ
// (the type is authenticated too).
func sealBlock(typ, info string, plain, unlockKey []byte) ([]byte, error) {
	aead, err := sealAEAD(unlockKey, info)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := aead.Seal(nonce, nonce, plain, []byte(typ))
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: map[string]string{sealHeader: sealAlgorithm}, Bytes: out}), nil
}

// openBlock opens a block sealBlock made: ErrLocked without a key,
// ErrInvalidUnlockKey when unlockKey does not open it.
func openBlock(blk *pem.Block, info string, unlockKey []byte) ([]byte, error) {
	if alg := blk.Headers[sealHeader]; alg != sealAlgorithm {
		return nil, fmt.Errorf("sealed with %q (headers %v); this version cannot unlock it", alg, blk.Headers)
	}
	if len(unlockKey) == 0 {
		return nil, ErrLocked
	}
	aead, err := sealAEAD(unlockKey, info)
	if err != nil {
		return nil, err
	}
	if len(blk.Bytes) < aead.NonceSize() {
		return nil, ErrInvalidUnlockKey
	}
	nonce, ct := blk.Bytes[:aead.NonceSize()], blk.Bytes[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, ct, []byte(blk.Type))
	if err != nil {
		return nil, ErrInvalidUnlockKey
	}
	return plain, nil
}

// encodeRaftDEK is the raft-dek file of dek: in clear without an unlock
// key, else sealed with it.
func encodeRaftDEK(dek, unlockKey []byte) ([]byte, error) {
	if len(unlockKey) == 0 {
		return pem.EncodeToMemory(&pem.Block{Type: raftDEKPEMType, Bytes: dek}), nil
	}
	return sealBlock(raftDEKPEMType, sealInfo, dek, unlockKey)
}

// openRaftDEK opens a sealed block's bytes with unlockKey.
func openRaftDEK(blk *pem.Block, unlockKey []byte) ([]byte, error) {
	return openBlock(blk, sealInfo, unlockKey)
}

// sealNodeKey is the stored form of a clear TLS key PEM: itself without
// unlock keys, else one sealed block per key.
func sealNodeKey(keyPEM []byte, unlockKeys [][]byte) ([]byte, error) {
	var out []byte
	for _, k := range unlockKeys {
		b, err := sealBlock(nodeKeyPEMType, nodeKeySealInfo, keyPEM, k)
		if err != nil {
			return nil, fmt.Errorf("node: seal the TLS key: %w", err)
		}
		out = append(out, b...)
	}
	if out == nil {
		return keyPEM, nil
	}
	return out, nil
}

// nodeKeyBlocks are the sealed blocks of a stored TLS key; none for a
// key in clear.
func nodeKeyBlocks(stored []byte) []*pem.Block {
	var blocks []*pem.Block
	for {
		blk, rest := pem.Decode(stored)
		if blk == nil || blk.Type != nodeKeyPEMType {
			return blocks
		}
		blocks = append(blocks, blk)
		stored = rest
	}
}

// openNodeKey is the clear TLS key PEM of a stored one: a key in clear as
// it is, a sealed one opened with any of unlockKeys (ErrLocked without
// any, ErrInvalidUnlockKey when none opens it).
func openNodeKey(stored []byte, unlockKeys [][]byte) ([]byte, error) {
	blocks := nodeKeyBlocks(stored)
	if len(blocks) == 0 {
		return stored, nil
	}
	err := ErrLocked
	for _, blk := range blocks {
		for _, k := range unlockKeys {
			plain, oerr := openBlock(blk, nodeKeySealInfo, k)
			if oerr == nil {
				return plain, nil
			}
			if err == ErrLocked || !errors.Is(oerr, ErrInvalidUnlockKey) {
				err = oerr
			}
		}
	}
	return nil, err
}

// sealedAs reports whether a stored TLS key is sealed with exactly
// unlockKeys, in that order (in clear: none).
func sealedAs(stored []byte, unlockKeys [][]byte) bool {
	blocks := nodeKeyBlocks(stored)
	if len(blocks) != len(unlockKeys) {
		return false
	}
	for i, blk := range blocks {
		if _, err := openBlock(blk, nodeKeySealInfo, unlockKeys[i]); err != nil {
			return false
		}
	}
	return true
}

// keySealer is the ca.KeySealer of a node's TLS key: it seals with the
// unlock keys set last (none: in clear) and opens with those and the ones
// set before them. Its zero value is ready; start gives it the key the
// node was started with.
type keySealer struct {
	mu      sync.Mutex
	started bool
	seal    [][]byte
	open    [][]byte
}

// start seals with unlockKey until set says otherwise (once: later calls
// change nothing).
func (s *keySealer) start(unlockKey []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return
	}
	s.started = true
	if len(unlockKey) != 0 {
		s.seal = [][]byte{unlockKey}
		s.open = [][]byte{unlockKey}
	}
}

// set seals with unlockKeys from now on (empty ones are skipped; none: in
// clear); the keys set before still open.
func (s *keySealer) set(unlockKeys ...[]byte) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started = true
	s.seal = nil
	for _, k := range unlockKeys {
		if len(k) != 0 {
			s.seal = append(s.seal, k)
		}
	}
	open := slices.Clone(s.seal)
	for _, k := range s.open {
		if !slices.ContainsFunc(open, func(o []byte) bool { return bytes.Equal(o, k) }) {
			open = append(open, k)
		}
	}
	s.open = open[:min(len(open), max(maxOpenKeys, len(s.seal)))]
	return slices.Clone(s.seal)
}

// SealKey implements ca.KeySealer.
func (s *keySealer) SealKey(keyPEM []byte) ([]byte, error) {
	s.mu.Lock()
	keys := slices.Clone(s.seal)
	s.mu.Unlock()
	return sealNodeKey(keyPEM, keys)
}

// OpenKey implements ca.KeySealer.
func (s *keySealer) OpenKey(stored []byte) ([]byte, error) {
	s.mu.Lock()
	keys := slices.Clone(s.open)
	s.mu.Unlock()
	return openNodeKey(stored, keys)
}

// keyReadWriter is the node's ca.KeyReadWriter: the TLS key goes through
// the node's keySealer.
func (n *Node) keyReadWriter() *ca.KeyReadWriter {
	n.keys.start(n.cfg.UnlockKey)
	return ca.NewKeyReadWriter(n.cfg.StateDir).WithSealer(&n.keys)
}

// nodeKeyPath is <state-dir>/certificates/swarm-node.key.
func nodeKeyPath(stateDir string) string {
	return filepath.Join(stateDir, ca.CertificatesDir, ca.NodeKeyFilename)
}

// sealTLSKey makes the node seal its TLS key with unlockKeys (none: keep
// it in clear) from now on, and rewrites the stored key unless it is
// sealed so already. Without certificates there is nothing to seal.
func (n *Node) sealTLSKey(unlockKeys ...[]byte) error {
	krw := n.keyReadWriter()
	keys := n.keys.set(unlockKeys...)
	stored, err := os.ReadFile(nodeKeyPath(n.cfg.StateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil && sealedAs(stored, keys) {
		return nil
	}
	if err := krw.RewriteKey(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("node: seal the TLS key: %w", err)
	}
	return nil
}

// unsealTLSKey writes the TLS key in clear again and stops sealing it: a
// demoted manager is a worker, and workers are never sealed.
func (n *Node) unsealTLSKey() error { return n.sealTLSKey() }

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

// IsLocked reports whether the node in stateDir keeps its raft DEK or its
// TLS key sealed with an unlock key: it starts only with that key
// (Config.UnlockKey).
func IsLocked(stateDir string) (bool, error) {
	b, err := os.ReadFile(raftDEKPath(stateDir))
	switch {
	case err == nil:
		if blk, _ := pem.Decode(b); blk != nil && len(blk.Headers) != 0 {
			return true, nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("node: read raft encryption key: %w", err)
	}
	b, err = os.ReadFile(nodeKeyPath(stateDir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("node: read the TLS key: %w", err)
	}
	return len(nodeKeyBlocks(b)) != 0, nil
}

// CheckUnlockKey reports whether unlockKey opens the node's key material
// in stateDir (its raft DEK and its TLS key): nil if it does (or nothing
// is sealed), ErrInvalidUnlockKey if it does not, ErrLocked without a key.
// It changes nothing.
func CheckUnlockKey(stateDir string, unlockKey []byte) error {
	path := raftDEKPath(stateDir)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if _, err := parseRaftDEK(path, b, unlockKey); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("node: read raft encryption key: %w", err)
	}
	b, err = os.ReadFile(nodeKeyPath(stateDir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("node: read the TLS key: %w", err)
	}
	var keys [][]byte
	if len(unlockKey) != 0 {
		keys = [][]byte{unlockKey}
	}
	if _, err := openNodeKey(b, keys); err != nil {
		if errors.Is(err, ErrLocked) || errors.Is(err, ErrInvalidUnlockKey) {
			return err
		}
		return fmt.Errorf("node: TLS key %s: %w", nodeKeyPath(stateDir), err)
	}
	return nil
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
	err := store.FollowCluster(ctx, m.Store(), func(c *api.Cluster) {
		sealedWith = n.reseal(c, dek, sealedWith)
	})
	if err != nil && ctx.Err() == nil {
		n.log.Warn("node: watch the unlock key", "error", err)
	}
}

// reseal makes the DEK and the TLS key sealed with c's unlock key (in
// clear without one) if they are not, and returns the key the DEK is
// sealed with afterwards. The order keeps one key opening both files at
// every step: the TLS key is first sealed with both the new and the old
// key, then the DEK with the new key, then the TLS key with the new key
// alone. A step that fails is tried again on the next change of the
// cluster object.
func (n *Node) reseal(c *api.Cluster, dek, sealedWith []byte) []byte {
	if c == nil {
		return sealedWith
	}
	want := ManagerUnlockKey(c)
	if string(want) == string(sealedWith) {
		// The TLS key may lag (a crash between the steps below).
		if err := n.sealTLSKey(want); err != nil {
			n.log.Error("node: reseal the TLS key", "error", err)
		}
		return sealedWith
	}
	if err := n.sealTLSKey(want, sealedWith); err != nil {
		n.log.Error("node: reseal the TLS key", "error", err)
		return sealedWith
	}
	if err := writeRaftDEK(n.cfg.StateDir, dek, want); err != nil {
		n.log.Error("node: reseal the raft encryption key", "error", err)
		return sealedWith
	}
	if err := n.sealTLSKey(want); err != nil {
		n.log.Error("node: reseal the TLS key", "error", err)
	}
	n.log.Info("node: raft encryption key and TLS key resealed", "autolock", len(want) != 0)
	return want
}
