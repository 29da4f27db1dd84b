package node

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/store"
)

func TestUnlockKeyFormat(t *testing.T) {
	key := bytes.Repeat([]byte{0xfe}, 32)
	s := FormatUnlockKey(key)
	if len(s) < 10 || s[:9] != "SWMKEY-1-" {
		t.Fatalf("FormatUnlockKey = %q", s)
	}
	got, err := ParseUnlockKey(s)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ParseUnlockKey(%q) = %x, %v", s, got, err)
	}
	for _, bad := range []string{"", "SWMKEY-1-", "SWMTKN-1-abc", "SWMKEY-1-!!!"} {
		if _, err := ParseUnlockKey(bad); err == nil || err.Error() != "invalid key string" {
			t.Errorf("ParseUnlockKey(%q) = %v, want invalid key string", bad, err)
		}
	}
}

// TestRaftDEKSealing: a sealed DEK opens with its key only, is reported
// locked, and rotation keeps the previous key working until the DEK is
// resealed with the new one; autolock off writes it in clear again.
func TestRaftDEKSealing(t *testing.T) {
	dir := t.TempDir()
	dek, err := loadRaftDEK(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if locked, err := IsLocked(dir); err != nil || locked {
		t.Fatalf("clear DEK: IsLocked = %v, %v", locked, err)
	}
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	n := &Node{cfg: Config{StateDir: dir}, log: slog.New(slog.DiscardHandler)}
	withKey := func(k []byte) *api.Cluster {
		c := &api.Cluster{Id: "c"}
		if k != nil {
			c.UnlockKeys = []*api.EncryptionKey{{Subsystem: managerUnlockSubsystem, Key: k}}
		}
		return c
	}
	sealed := n.reseal(withKey(k1), dek, nil)
	if !bytes.Equal(sealed, k1) {
		t.Fatalf("reseal returned %x", sealed)
	}
	b, _ := os.ReadFile(raftDEKPath(dir))
	if bytes.Contains(b, []byte(FormatUnlockKey(dek))) || bytes.Contains(b, dek) {
		t.Fatal("sealed file holds the DEK in clear")
	}
	if locked, err := IsLocked(dir); err != nil || !locked {
		t.Fatalf("sealed DEK: IsLocked = %v, %v", locked, err)
	}
	if _, err := loadRaftDEK(dir, nil); !errors.Is(err, ErrLocked) {
		t.Fatalf("no key: %v, want ErrLocked", err)
	}
	if _, err := loadRaftDEK(dir, k2); !errors.Is(err, ErrInvalidUnlockKey) {
		t.Fatalf("wrong key: %v, want ErrInvalidUnlockKey", err)
	}
	if got, err := loadRaftDEK(dir, k1); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("right key: %x, %v", got, err)
	}
	if after, _ := os.ReadFile(raftDEKPath(dir)); !bytes.Equal(after, b) {
		t.Fatal("a refused key changed the file")
	}

	// Rotated to k2: the same key again changes nothing; until resealed k1
	// still opens the DEK.
	if again := n.reseal(withKey(k1), dek, sealed); !bytes.Equal(again, k1) {
		t.Fatal("reseal with the same key")
	}
	if err := CheckUnlockKey(dir, k1); err != nil {
		t.Fatalf("previous key before reseal: %v", err)
	}
	sealed = n.reseal(withKey(k2), dek, sealed)
	if err := CheckUnlockKey(dir, k2); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if err := CheckUnlockKey(dir, k1); !errors.Is(err, ErrInvalidUnlockKey) {
		t.Fatalf("previous key after reseal: %v", err)
	}

	// Autolock off: in clear again, any key (or none) opens it.
	if sealed = n.reseal(withKey(nil), dek, sealed); sealed != nil {
		t.Fatal("reseal without a key")
	}
	if locked, _ := IsLocked(dir); locked {
		t.Fatal("still sealed with autolock off")
	}
	if got, err := loadRaftDEK(dir, nil); err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("clear again: %x, %v", got, err)
	}
}

// startLocked starts a node from cfg and returns why it stopped.
func startLocked(t *testing.T, cfg Config) error {
	t.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	select {
	case <-n.Ready():
		_ = n.Stop(ctx)
		t.Fatal("a locked manager became ready")
	case <-n.Done():
	case <-ctx.Done():
		t.Fatal("node neither ready nor stopped")
	}
	return n.Err(ctx)
}

// waitLocked waits until the node's DEK in stateDir is (or is no longer)
// sealed.
func waitLocked(t *testing.T, stateDir string, want bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		locked, err := IsLocked(stateDir)
		if err == nil && locked == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("IsLocked = %v, %v; want %v", locked, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitTLSKeySealed waits until the node's TLS key in stateDir is sealed
// with key alone (nil: in clear).
func waitTLSKeySealed(t *testing.T, stateDir string, key []byte) {
	t.Helper()
	var want [][]byte
	if key != nil {
		want = [][]byte{key}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(nodeKeyPath(stateDir))
		if err == nil && sealedAs(b, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS key not sealed with %d key(s): %v", len(want), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *testCluster) setAutolock(on, rotate bool) {
	c.t.Helper()
	cl := c.cluster()
	if cl.Spec.EncryptionConfig == nil {
		cl.Spec.EncryptionConfig = &api.EncryptionConfig{}
	}
	cl.Spec.EncryptionConfig.AutoLockManagers = on
	if _, err := c.control().UpdateCluster(c.ctx(), &api.UpdateClusterRequest{ClusterId: cl.GetId(), ClusterVersion: cl.GetMeta().GetVersion(),
		Spec: cl.GetSpec(), Rotation: &api.KeyRotation{ManagerUnlockKey: rotate}}); err != nil {
		c.t.Fatalf("autolock %v: %v", on, err)
	}
}

func (c *testCluster) unlockKey(name string) []byte {
	c.t.Helper()
	var key []byte
	c.nodes[name].node.Manager().Store().View(func(tx store.ReadTx) {
		cs, _ := store.FindClusters(tx, store.All)
		if len(cs) > 0 {
			key = ManagerUnlockKey(cs[0])
		}
	})
	return key
}

// TestAutolockedManagerRestartsLocked: with autolock on, a restarted
// manager stays locked without the key, refuses a wrong key, and with the
// key opens its raft log again; a rotated key reseals the DEK.
func TestAutolockedManagerRestartsLocked(t *testing.T) {
	c := newTestCluster(t, "127.0.0.184")
	resp, err := c.control().CreateSecret(c.ctx(), &api.CreateSecretRequest{Spec: &api.SecretSpec{
		Annotations: &api.Annotations{Name: "s1"}, Data: []byte("data")}})
	if err != nil {
		t.Fatal(err)
	}
	stateDir := c.nodes["m1"].cfg.StateDir
	c.setAutolock(true, false)
	waitLocked(t, stateDir, true)
	k1 := c.unlockKey("m1")
	if len(k1) == 0 {
		t.Fatal("no unlock key with autolock on")
	}
	if err := CheckUnlockKey(stateDir, k1); err != nil {
		t.Fatalf("DEK not sealed with the cluster's key: %v", err)
	}
	waitTLSKeySealed(t, stateDir, k1)

	// Rotation: the DEK follows the new key.
	c.setAutolock(true, true)
	k2 := c.unlockKey("m1")
	if bytes.Equal(k1, k2) {
		t.Fatal("key not rotated")
	}
	deadline := time.Now().Add(20 * time.Second)
	for CheckUnlockKey(stateDir, k2) != nil {
		if time.Now().After(deadline) {
			t.Fatal("DEK not resealed with the rotated key")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitTLSKeySealed(t, stateDir, k2)

	c.stop("m1")
	cfg := c.nodes["m1"].cfg
	cfg.Init = false
	if err := startLocked(t, cfg); !errors.Is(err, ErrLocked) {
		t.Fatalf("restart without the key: %v, want ErrLocked", err)
	}
	cfg.UnlockKey = k1
	if err := startLocked(t, cfg); !errors.Is(err, ErrInvalidUnlockKey) {
		t.Fatalf("restart with the previous key: %v, want ErrInvalidUnlockKey", err)
	}
	if err := CheckUnlockKey(stateDir, k2); err != nil {
		t.Fatalf("a refused key changed the DEK: %v", err)
	}

	c.nodes["m1"].cfg.UnlockKey = k2
	c.start("m1", "127.0.0.184", Config{})
	got, err := c.control().GetSecret(c.ctx(), &api.GetSecretRequest{SecretId: resp.GetSecret().GetId()})
	if err != nil || got.GetSecret().GetSpec().GetAnnotations().GetName() != "s1" {
		t.Fatalf("secret after unlock: %v, %v", got, err)
	}

	// Autolock off: the DEK is in clear again and the node restarts alone.
	c.setAutolock(false, false)
	waitLocked(t, stateDir, false)
	waitTLSKeySealed(t, stateDir, nil)
	c.stop("m1")
	c.nodes["m1"].cfg.UnlockKey = nil
	c.start("m1", "127.0.0.184", Config{})
}

// TestRotationWhileManagerDown: a manager that was down while the unlock
// key was rotated keeps its key material sealed with the previous key: the
// new key does not open it, the previous one does, and once it has caught
// up it reseals its raft DEK and TLS key with the new key, which opens it
// from then on.
func TestRotationWhileManagerDown(t *testing.T) {
	c := newTestCluster(t, "127.0.0.191")
	c.join("m2", "127.0.0.192", true)
	c.join("m3", "127.0.0.193", true)
	c.setAutolock(true, false)
	k1 := c.unlockKey("m1")
	for _, name := range []string{"m1", "m2", "m3"} {
		waitTLSKeySealed(t, c.nodes[name].cfg.StateDir, k1)
	}
	m3 := c.nodes["m3"].cfg.StateDir
	c.stop("m3")

	c.setAutolock(true, true)
	k2 := c.unlockKey("m1")
	if bytes.Equal(k1, k2) {
		t.Fatal("key not rotated")
	}
	for _, name := range []string{"m1", "m2"} {
		waitTLSKeySealed(t, c.nodes[name].cfg.StateDir, k2)
	}
	if err := CheckUnlockKey(m3, k1); err != nil {
		t.Fatalf("the down manager's material with the previous key: %v", err)
	}
	cfg := c.nodes["m3"].cfg
	cfg.Init, cfg.JoinAddr, cfg.JoinToken, cfg.UnlockKey = false, "", "", k2
	if err := startLocked(t, cfg); !errors.Is(err, ErrInvalidUnlockKey) {
		t.Fatalf("the new key on the down manager: %v, want ErrInvalidUnlockKey", err)
	}

	c.nodes["m3"].cfg.UnlockKey = k1
	c.start("m3", "127.0.0.193", Config{})
	waitTLSKeySealed(t, m3, k2)
	deadline := time.Now().Add(20 * time.Second)
	for CheckUnlockKey(m3, k2) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the caught-up manager's DEK not resealed with the new key")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := CheckUnlockKey(m3, k1); !errors.Is(err, ErrInvalidUnlockKey) {
		t.Fatalf("the previous key after the reseal: %v", err)
	}

	c.stop("m3")
	c.nodes["m3"].cfg.UnlockKey = k2
	c.start("m3", "127.0.0.193", Config{})
	if got := c.unlockKey("m3"); !bytes.Equal(got, k2) {
		t.Fatal("m3 restarted with the new key does not see it")
	}

	// Demoted, m3 is a worker: its TLS key is in clear again, nothing is
	// locked, and it restarts without the key.
	c.updateNode("m3", func(s *api.NodeSpec) { s.DesiredRole = api.NodeRole_NODE_ROLE_WORKER })
	poll(t, 60*time.Second, "m3 demoted, its key material in clear", func() bool {
		b, err := os.ReadFile(nodeKeyPath(m3))
		locked, lerr := IsLocked(m3)
		return c.nodes["m3"].node.Manager() == nil && err == nil && sealedAs(b, nil) && lerr == nil && !locked
	})
	c.stop("m3")
	c.nodes["m3"].cfg.UnlockKey = nil
	c.start("m3", "127.0.0.193", Config{})
}
