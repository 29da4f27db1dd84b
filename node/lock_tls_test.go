package node

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/ca"
)

// managerPair is a manager certificate and its clear key.
func managerPair(t *testing.T) *ca.SecurityConfig {
	t.Helper()
	root, err := ca.CreateRootCA("swarm-ca")
	if err != nil {
		t.Fatal(err)
	}
	return issuePair(t, root)
}

// issuePair is a new manager key and certificate of root.
func issuePair(t *testing.T, root ca.RootCA) *ca.SecurityConfig {
	t.Helper()
	csr, key, err := ca.GenerateNodeKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.IssueNodeCertificate(context.Background(), csr, "node1", api.NodeRole_NODE_ROLE_MANAGER, "cluster1", 0)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := ca.NewSecurityConfig(root, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

// assertNoClearKey fails when stored holds a private key in clear: a PEM
// block naming a private key, or the key's bytes anywhere.
func assertNoClearKey(t *testing.T, stored, keyPEM []byte) {
	t.Helper()
	blk, _ := pem.Decode(keyPEM)
	if bytes.Contains(stored, blk.Bytes) || bytes.Contains(stored, keyPEM) {
		t.Fatal("the stored key holds the private key in clear")
	}
	n := 0
	for rest := stored; ; n++ {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if strings.Contains(b.Type, "PRIVATE KEY") || b.Type != nodeKeyPEMType || b.Headers[sealHeader] != sealAlgorithm {
			t.Fatalf("stored block %q headers %v, want a sealed %q", b.Type, b.Headers, nodeKeyPEMType)
		}
	}
	if n == 0 {
		t.Fatal("the stored key holds no sealed block")
	}
}

// TestNodeKeySeal: a sealed TLS key holds no clear key, opens with any of
// its unlock keys only (ErrInvalidUnlockKey for another, ErrLocked
// without one) and round trips; in clear it is read as it is.
func TestNodeKeySeal(t *testing.T) {
	keyPEM := managerPair(t).KeyPEM()
	k1, k2, k3 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	cases := []struct {
		name    string
		sealed  [][]byte
		open    [][]byte
		wantErr error
	}{
		{"clear, no key", nil, nil, nil},
		{"clear, any key", nil, [][]byte{k1}, nil},
		{"sealed, right key", [][]byte{k1}, [][]byte{k1}, nil},
		{"sealed, right key after a wrong one", [][]byte{k1}, [][]byte{k2, k1}, nil},
		{"sealed, wrong key", [][]byte{k1}, [][]byte{k2}, ErrInvalidUnlockKey},
		{"sealed, no key", [][]byte{k1}, nil, ErrLocked},
		{"sealed twice, new key", [][]byte{k2, k1}, [][]byte{k2}, nil},
		{"sealed twice, old key", [][]byte{k2, k1}, [][]byte{k1}, nil},
		{"sealed twice, other key", [][]byte{k2, k1}, [][]byte{k3}, ErrInvalidUnlockKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stored, err := sealNodeKey(keyPEM, tc.sealed)
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.sealed) == 0 {
				if !bytes.Equal(stored, keyPEM) {
					t.Fatal("no unlock key, yet the key is not stored in clear")
				}
			} else {
				assertNoClearKey(t, stored, keyPEM)
				if len(nodeKeyBlocks(stored)) != len(tc.sealed) {
					t.Fatalf("%d sealed blocks, want %d", len(nodeKeyBlocks(stored)), len(tc.sealed))
				}
			}
			if !sealedAs(stored, tc.sealed) {
				t.Fatal("sealedAs does not recognise the keys it was sealed with")
			}
			got, err := openNodeKey(stored, tc.open)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("open: %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && !bytes.Equal(got, keyPEM) {
				t.Fatal("the opened key differs")
			}
		})
	}

	// A raft DEK's seal does not open a TLS key's (and a tampered block
	// opens with nothing).
	dekFile, err := encodeRaftDEK(bytes.Repeat([]byte{9}, 32), k1)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(dekFile)
	blk.Type = nodeKeyPEMType
	if _, err := openNodeKey(pem.EncodeToMemory(blk), [][]byte{k1}); !errors.Is(err, ErrInvalidUnlockKey) {
		t.Fatalf("a DEK block opened as a TLS key: %v", err)
	}
	stored, _ := sealNodeKey(keyPEM, [][]byte{k1})
	blk, _ = pem.Decode(stored)
	blk.Bytes[len(blk.Bytes)-1] ^= 1
	if _, err := openNodeKey(pem.EncodeToMemory(blk), [][]byte{k1}); !errors.Is(err, ErrInvalidUnlockKey) {
		t.Fatalf("a tampered block: %v", err)
	}
	blk.Headers[sealHeader] = "rot13"
	if _, err := openNodeKey(pem.EncodeToMemory(blk), [][]byte{k1}); err == nil || errors.Is(err, ErrInvalidUnlockKey) {
		t.Fatalf("an unknown seal: %v, want an error naming it", err)
	}
}

// lockedDir is a manager's state dir with its certificates and a raft
// DEK, all in clear, and a node on it; renew issues a new pair of the
// same root.
func lockedDir(t *testing.T) (n *Node, sec *ca.SecurityConfig, dek []byte, renew func() *ca.SecurityConfig) {
	t.Helper()
	dir := t.TempDir()
	root, err := ca.CreateRootCA("swarm-ca")
	if err != nil {
		t.Fatal(err)
	}
	sec = issuePair(t, root)
	if err := ca.NewKeyReadWriter(dir).Save(sec); err != nil {
		t.Fatal(err)
	}
	if dek, err = loadRaftDEK(dir, nil); err != nil {
		t.Fatal(err)
	}
	return testNode(dir, nil), sec, dek, func() *ca.SecurityConfig { return issuePair(t, root) }
}

func testNode(dir string, unlockKey []byte) *Node {
	return &Node{cfg: Config{StateDir: dir, UnlockKey: unlockKey}, log: slog.New(slog.DiscardHandler)}
}

func clusterWithKey(k []byte) *api.Cluster {
	c := &api.Cluster{Id: "c"}
	if k != nil {
		c.UnlockKeys = []*api.EncryptionKey{{Subsystem: managerUnlockSubsystem, Key: k}}
	}
	return c
}

// opens checks what opens a state dir: each key of good opens both the
// DEK and the TLS key (as CheckUnlockKey and a node started with it see
// them), each of bad is refused with ErrInvalidUnlockKey.
func opens(t *testing.T, dir string, sec *ca.SecurityConfig, dek []byte, good, bad [][]byte) {
	t.Helper()
	for _, k := range good {
		if err := CheckUnlockKey(dir, k); err != nil {
			t.Fatalf("CheckUnlockKey(%x): %v", k[:1], err)
		}
		if got, err := loadRaftDEK(dir, k); err != nil || !bytes.Equal(got, dek) {
			t.Fatalf("raft DEK with %x: %v", k[:1], err)
		}
		loaded, err := testNode(dir, k).keyReadWriter().Load()
		if err != nil || !bytes.Equal(loaded.KeyPEM(), sec.KeyPEM()) {
			t.Fatalf("TLS key with %x: %v", k[:1], err)
		}
	}
	for _, k := range bad {
		if err := CheckUnlockKey(dir, k); !errors.Is(err, ErrInvalidUnlockKey) {
			t.Fatalf("CheckUnlockKey(%x): %v, want ErrInvalidUnlockKey", k[:1], err)
		}
	}
}

// TestTLSKeyFollowsUnlockKey: with autolock on, the manager's TLS key is
// sealed with the unlock key like its raft DEK; a locked node cannot load
// it without the key or with a wrong one; a renewal writes the new key
// sealed; a rotation reseals both with the new key; autolock off writes
// both in clear again; a demotion writes the TLS key in clear.
func TestTLSKeyFollowsUnlockKey(t *testing.T) {
	n, sec, dek, renew := lockedDir(t)
	dir := n.cfg.StateDir
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	keyFile := nodeKeyPath(dir)

	sealed := n.reseal(clusterWithKey(k1), dek, nil)
	if !bytes.Equal(sealed, k1) {
		t.Fatalf("reseal returned %x", sealed)
	}
	stored, _ := os.ReadFile(keyFile)
	assertNoClearKey(t, stored, sec.KeyPEM())
	if !sealedAs(stored, [][]byte{k1}) {
		t.Fatal("TLS key not sealed with the unlock key alone")
	}
	if locked, err := IsLocked(dir); err != nil || !locked {
		t.Fatalf("IsLocked = %v, %v", locked, err)
	}
	opens(t, dir, sec, dek, [][]byte{k1}, [][]byte{k2})
	if _, err := testNode(dir, nil).keyReadWriter().Load(); !errors.Is(err, ErrLocked) {
		t.Fatalf("load without the key: %v, want ErrLocked", err)
	}
	if _, err := testNode(dir, k2).keyReadWriter().Load(); !errors.Is(err, ErrInvalidUnlockKey) {
		t.Fatalf("load with a wrong key: %v, want ErrInvalidUnlockKey", err)
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(after, stored) {
		t.Fatal("a refused key changed the TLS key file")
	}

	// A renewal's write goes through the same sealer.
	renewed := renew()
	if err := n.keyReadWriter().Write(renewed.CertPEM(), renewed.KeyPEM()); err != nil {
		t.Fatal(err)
	}
	stored, _ = os.ReadFile(keyFile)
	assertNoClearKey(t, stored, renewed.KeyPEM())
	sec = renewed

	// Rotation: both follow the new key, the old one no longer opens.
	if sealed = n.reseal(clusterWithKey(k2), dek, sealed); !bytes.Equal(sealed, k2) {
		t.Fatalf("reseal returned %x", sealed)
	}
	stored, _ = os.ReadFile(keyFile)
	if !sealedAs(stored, [][]byte{k2}) {
		t.Fatal("TLS key not resealed with the new key alone")
	}
	opens(t, dir, sec, dek, [][]byte{k2}, [][]byte{k1})

	// Autolock off: both in clear, nothing locked.
	if sealed = n.reseal(clusterWithKey(nil), dek, sealed); sealed != nil {
		t.Fatalf("reseal returned %x", sealed)
	}
	if stored, _ = os.ReadFile(keyFile); !bytes.Equal(stored, sec.KeyPEM()) {
		t.Fatal("TLS key not in clear with autolock off")
	}
	if locked, err := IsLocked(dir); err != nil || locked {
		t.Fatalf("IsLocked = %v, %v with autolock off", locked, err)
	}
	if _, err := ca.NewKeyReadWriter(dir).Load(); err != nil {
		t.Fatalf("load in clear: %v", err)
	}

	// On again, then demoted: the TLS key in clear, the sealed DEK gone.
	sealed = n.reseal(clusterWithKey(k1), dek, sealed)
	if err := n.removeRaftState(); err != nil {
		t.Fatal(err)
	}
	if stored, _ = os.ReadFile(keyFile); !bytes.Equal(stored, sec.KeyPEM()) {
		t.Fatal("a demoted node's TLS key is still sealed")
	}
	if locked, err := IsLocked(dir); err != nil || locked {
		t.Fatalf("IsLocked = %v, %v after demotion", locked, err)
	}
	// A worker's renewal writes in clear.
	if err := n.keyReadWriter().Write(renewed.CertPEM(), renewed.KeyPEM()); err != nil {
		t.Fatal(err)
	}
	if stored, _ = os.ReadFile(keyFile); !bytes.Equal(stored, renewed.KeyPEM()) {
		t.Fatal("a worker's renewed key is sealed")
	}
	_ = sealed
}

// TestResealCrashStates: the DEK and the TLS key are two files; a crash
// between any two steps of a reseal leaves a state dir that one key opens
// whole, and the next reseal completes it.
func TestResealCrashStates(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	cases := []struct {
		name       string
		from, to   []byte // the DEK's key before, the cluster's now
		tls        [][]byte
		dek        []byte
		good, bad  [][]byte
		wantLocked bool
	}{
		{"on, after the TLS key", nil, k1, [][]byte{k1}, nil, [][]byte{k1}, [][]byte{k2}, true},
		{"on, after the DEK", nil, k1, [][]byte{k1}, k1, [][]byte{k1}, [][]byte{k2}, true},
		{"rotation, after the TLS key", k1, k2, [][]byte{k2, k1}, k1, [][]byte{k1}, [][]byte{k2}, true},
		{"rotation, after the DEK", k1, k2, [][]byte{k2, k1}, k2, [][]byte{k2}, [][]byte{k1}, true},
		{"off, TLS key in clear first", k1, nil, nil, k1, [][]byte{k1}, [][]byte{k2}, true},
		{"off, after the DEK", k1, nil, [][]byte{k1}, nil, [][]byte{k1}, [][]byte{k2}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, sec, dek, _ := lockedDir(t)
			dir := n.cfg.StateDir
			stored, err := sealNodeKey(sec.KeyPEM(), tc.tls)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(nodeKeyPath(dir), stored, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := writeRaftDEK(dir, dek, tc.dek); err != nil {
				t.Fatal(err)
			}
			if locked, err := IsLocked(dir); err != nil || locked != tc.wantLocked {
				t.Fatalf("IsLocked = %v, %v", locked, err)
			}
			opens(t, dir, sec, dek, tc.good, tc.bad)

			// Unlocked with the key that opens it, the node reseals to the
			// cluster's key: that key alone opens both afterwards.
			unlocked := testNode(dir, tc.good[0])
			if _, err := unlocked.keyReadWriter().Load(); err != nil {
				t.Fatal(err)
			}
			sealedWith := tc.dek
			if got := unlocked.reseal(clusterWithKey(tc.to), dek, sealedWith); !bytes.Equal(got, tc.to) {
				t.Fatalf("reseal returned %x", got)
			}
			stored, _ = os.ReadFile(nodeKeyPath(dir))
			want := [][]byte{}
			if tc.to != nil {
				want = append(want, tc.to)
			}
			if !sealedAs(stored, want) {
				t.Fatal("TLS key not sealed with the cluster's key alone")
			}
			if tc.to == nil {
				if locked, _ := IsLocked(dir); locked {
					t.Fatal("still locked with autolock off")
				}
				return
			}
			old := tc.from
			if old == nil {
				old = k2
			}
			opens(t, dir, sec, dek, [][]byte{tc.to}, [][]byte{old})
		})
	}
}

// TestPreviousUnlockKeyOpensLaggingManager: a manager that was down while
// the key was rotated still has its key material sealed with the previous
// key; that key opens it, the new one does not yet, and once the node
// sees the rotated key it reseals both files with it.
func TestPreviousUnlockKeyOpensLaggingManager(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	n, sec, dek, renew := lockedDir(t)
	dir := n.cfg.StateDir
	n.reseal(clusterWithKey(k1), dek, nil)
	// The cluster rotated to k2 meanwhile; the node restarts.
	opens(t, dir, sec, dek, [][]byte{k1}, [][]byte{k2})
	restarted := testNode(dir, k1)
	if _, err := restarted.keyReadWriter().Load(); err != nil {
		t.Fatal(err)
	}
	// Its own log still names k1 at first: nothing to do.
	if got := restarted.reseal(clusterWithKey(k1), dek, k1); !bytes.Equal(got, k1) {
		t.Fatalf("reseal returned %x", got)
	}
	opens(t, dir, sec, dek, [][]byte{k1}, [][]byte{k2})
	// Caught up: k2 only.
	if got := restarted.reseal(clusterWithKey(k2), dek, k1); !bytes.Equal(got, k2) {
		t.Fatalf("reseal returned %x", got)
	}
	opens(t, dir, sec, dek, [][]byte{k2}, [][]byte{k1})
	// A renewal after the reseal seals the new key with k2.
	renewed := renew()
	if err := restarted.keyReadWriter().Write(renewed.CertPEM(), renewed.KeyPEM()); err != nil {
		t.Fatal(err)
	}
	stored, _ := os.ReadFile(nodeKeyPath(dir))
	if !sealedAs(stored, [][]byte{k2}) {
		t.Fatal("a renewed key is not sealed with the current key")
	}
}

// TestKeySealerKeepsFewKeys: the keys that open the TLS key are the ones
// it is sealed with and a few before them, the newest first.
func TestKeySealerKeepsFewKeys(t *testing.T) {
	var s keySealer
	s.start([]byte{0})
	for i := 1; i <= 6; i++ {
		s.set([]byte{byte(i)}, nil)
	}
	if len(s.open) != maxOpenKeys || s.open[0][0] != 6 || s.open[maxOpenKeys-1][0] != 3 {
		t.Fatalf("open keys %v", s.open)
	}
	if len(s.seal) != 1 || s.seal[0][0] != 6 {
		t.Fatalf("seal keys %v", s.seal)
	}
	s.start([]byte{9}) // started already: no change
	if s.seal[0][0] != 6 {
		t.Fatal("start after set changed the keys")
	}
	if got := s.set(); len(got) != 0 || len(s.open) != maxOpenKeys {
		t.Fatalf("set() = %v, open %v", got, s.open)
	}
}

// TestResealDEKWriteFails: when the DEK cannot be written, the TLS key
// still opens with the key the DEK is sealed with, the reseal reports the
// old key, and the next one completes.
func TestResealDEKWriteFails(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	n, sec, dek, _ := lockedDir(t)
	dir := n.cfg.StateDir
	sealed := n.reseal(clusterWithKey(k1), dek, nil)
	good, _ := os.ReadFile(raftDEKPath(dir))
	// A directory in the DEK's place: its atomic replacement fails.
	if err := os.Remove(raftDEKPath(dir)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(raftDEKPath(dir), "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if got := n.reseal(clusterWithKey(k2), dek, sealed); !bytes.Equal(got, k1) {
		t.Fatalf("a failed reseal returned %x, want the old key", got)
	}
	if err := os.RemoveAll(raftDEKPath(dir)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(raftDEKPath(dir), good, 0o600); err != nil {
		t.Fatal(err)
	}
	opens(t, dir, sec, dek, [][]byte{k1}, [][]byte{bytes.Repeat([]byte{3}, 32)})
	if got := n.reseal(clusterWithKey(k2), dek, sealed); !bytes.Equal(got, k2) {
		t.Fatalf("reseal returned %x", got)
	}
	opens(t, dir, sec, dek, [][]byte{k2}, [][]byte{k1})
}
