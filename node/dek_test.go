package node

import (
	"bytes"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openswarm/swarmd/api"
	"github.com/openswarm/swarmd/manager/state/raft"
)

func TestRaftDEKCreatedOnceAndReused(t *testing.T) {
	dir := t.TempDir()
	dek, err := loadRaftDEK(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(dek) != raft.DEKSize || bytes.Equal(dek, make([]byte, raft.DEKSize)) {
		t.Fatalf("DEK = %x, want %d random bytes", dek, raft.DEKSize)
	}
	fi, err := os.Stat(raftDEKPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("DEK file mode %v, want 0600", fi.Mode().Perm())
	}
	if filepath.Dir(raftDEKPath(dir)) != filepath.Join(dir, "certificates") {
		t.Fatalf("DEK kept in %s, not with the certificates", raftDEKPath(dir))
	}
	for i := 0; i < 2; i++ {
		again, err := loadRaftDEK(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, dek) {
			t.Fatalf("load %d returned another key", i+2)
		}
	}
	other, err := loadRaftDEK(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other, dek) {
		t.Fatal("two nodes got the same key")
	}
}

func TestRaftDEKDamagedIsNotReplaced(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"empty", "", "PEM block"},
		{"garbage", "not a key", "PEM block"},
		{"wrong type", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: make([]byte, raft.DEKSize)})), "PEM block"},
		{"short", string(pem.EncodeToMemory(&pem.Block{Type: raftDEKPEMType, Bytes: make([]byte, 16)})), "holds 16 bytes"},
		{"sealed", string(pem.EncodeToMemory(&pem.Block{Type: raftDEKPEMType, Headers: map[string]string{"kek-sealed": "v1"},
			Bytes: make([]byte, 60)})), "sealed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := raftDEKPath(dir)
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := loadRaftDEK(dir, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load = %v, want an error about %q", err, tc.want)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != tc.content {
				t.Fatalf("damaged key file was replaced (%v)", err)
			}
		})
	}
}

// TestManagerRaftStateEncrypted: a secret created on a manager never
// reaches its raft directory in clear, and the manager restarts from its
// encrypted log.
func TestManagerRaftStateEncrypted(t *testing.T) {
	const marker = "NODE-SECRET-MARKER-51c2e8"
	c := newTestCluster(t, "127.0.0.183")
	resp, err := c.control().CreateSecret(c.ctx(), &api.CreateSecretRequest{Spec: &api.SecretSpec{
		Annotations: &api.Annotations{Name: "s1"}, Data: []byte(marker)}})
	if err != nil {
		t.Fatal(err)
	}
	c.stop("m1")
	stateDir := c.nodes["m1"].cfg.StateDir
	if _, err := os.Stat(raftDEKPath(stateDir)); err != nil {
		t.Fatalf("no raft DEK: %v", err)
	}
	err = filepath.WalkDir(filepath.Join(stateDir, "raft"), func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("secret in clear in %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.start("m1", "127.0.0.183", Config{})
	got, err := c.control().GetSecret(c.ctx(), &api.GetSecretRequest{SecretId: resp.GetSecret().GetId()})
	if err != nil {
		t.Fatalf("secret lost after restart: %v", err)
	}
	if got.GetSecret().GetSpec().GetAnnotations().GetName() != "s1" {
		t.Fatalf("secret after restart = %v", got.GetSecret())
	}
}
