package ca

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKeyReadWriterRoundTrip(t *testing.T) {
	root := newRoot(t)
	p := issue(t, root, "node1", worker, testOrg)
	stateDir := t.TempDir()
	k := NewKeyReadWriter(stateDir)
	if k.Dir() != filepath.Join(stateDir, "certificates") {
		t.Fatalf("Dir = %s", k.Dir())
	}
	if ok, err := k.Exists(); ok || err != nil {
		t.Fatalf("Exists before writing = %v, %v", ok, err)
	}
	if _, err := k.Load(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load before writing: %v, want fs.ErrNotExist", err)
	}
	sec, err := NewSecurityConfig(root, p.certPEM, p.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Save(sec); err != nil {
		t.Fatal(err)
	}
	if ok, err := k.Exists(); !ok || err != nil {
		t.Fatalf("Exists after writing = %v, %v", ok, err)
	}
	loaded, err := k.Load()
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Peer() != (Peer{NodeID: "node1", Role: RoleWorker, Org: testOrg}) {
		t.Errorf("loaded %+v", loaded.Peer())
	}
	if loaded.RootCA().Digest() != root.Digest() || loaded.RootCA().CanSign() {
		t.Error("loaded root differs or carries a key")
	}
	if !bytes.Equal(loaded.CertPEM(), p.certPEM) || !bytes.Equal(loaded.KeyPEM(), p.keyPEM) {
		t.Error("loaded pair differs")
	}

	// Modes: files 0600, directory 0700; only the three files, no
	// temporary leftovers, and the root's key is never written.
	st, err := os.Stat(k.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %o", st.Mode().Perm())
	}
	entries, err := os.ReadDir(k.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %o, want 600", e.Name(), info.Mode().Perm())
		}
	}
	if strings.Join(names, " ") != ".lock swarm-node.crt swarm-node.key swarm-root-ca.crt" {
		t.Errorf("files = %v", names)
	}
	rootFile, err := os.ReadFile(filepath.Join(k.Dir(), RootCACertFilename))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rootFile, []byte("PRIVATE KEY")) {
		t.Error("the root CA key was written to disk")
	}

	if err := k.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(k.Dir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("directory still there: %v", err)
	}
}

// An existing, too open directory is tightened.
func TestKeyReadWriterTightensDirectory(t *testing.T) {
	stateDir := t.TempDir()
	dir := filepath.Join(stateDir, CertificatesDir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	k := NewKeyReadWriter(stateDir)
	if err := k.WriteRootCA(newRoot(t)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %o, want 700", st.Mode().Perm())
	}
}

// Writes replace files by rename: a reader holding the old file keeps
// reading the old content, never a truncated or mixed one.
func TestKeyReadWriterAtomicReplace(t *testing.T) {
	root := newRoot(t)
	p1 := issue(t, root, "node1", worker, testOrg)
	p2 := issue(t, root, "node1", manager, testOrg)
	k := NewKeyReadWriter(t.TempDir())
	if err := k.Write(p1.certPEM, p1.keyPEM); err != nil {
		t.Fatal(err)
	}
	oldCert, err := os.Open(filepath.Join(k.Dir(), NodeCertFilename))
	if err != nil {
		t.Fatal(err)
	}
	defer oldCert.Close()
	oldInfo, err := oldCert.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Write(p2.certPEM, p2.keyPEM); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(oldCert)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, p1.certPEM) {
		t.Error("the old file was modified in place")
	}
	newInfo, err := os.Stat(filepath.Join(k.Dir(), NodeCertFilename))
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(oldInfo, newInfo) {
		t.Error("certificate file was not replaced by a new one")
	}
	cert, key, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert, p2.certPEM) || !bytes.Equal(key, p2.keyPEM) {
		t.Error("Read does not return the new pair")
	}
	if _, err := os.Stat(filepath.Join(k.Dir(), NodeKeyFilename+pendingKeySuffix)); !errors.Is(err, fs.ErrNotExist) {
		t.Error("pending key left behind")
	}
}

// A crash inside Write leaves a state Read recovers from, whichever step it
// interrupted.
func TestKeyReadWriterCrashRecovery(t *testing.T) {
	root := newRoot(t)
	p1 := issue(t, root, "node1", worker, testOrg)
	p2 := issue(t, root, "node1", manager, testOrg)
	for _, tc := range []struct {
		name  string
		crash func(t *testing.T, dir string) // applied after writing p1
		want  nodePair
	}{
		{"after the pending key", func(t *testing.T, dir string) {
			mustWrite(t, dir, NodeKeyFilename+pendingKeySuffix, p2.keyPEM)
		}, p1},
		{"after the certificate", func(t *testing.T, dir string) {
			mustWrite(t, dir, NodeKeyFilename+pendingKeySuffix, p2.keyPEM)
			mustWrite(t, dir, NodeCertFilename, p2.certPEM)
		}, p2},
		{"after the certificate, first write", func(t *testing.T, dir string) {
			mustWrite(t, dir, NodeKeyFilename+pendingKeySuffix, p2.keyPEM)
			mustWrite(t, dir, NodeCertFilename, p2.certPEM)
			if err := os.Remove(filepath.Join(dir, NodeKeyFilename)); err != nil {
				t.Fatal(err)
			}
		}, p2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := NewKeyReadWriter(t.TempDir())
			if err := k.WriteRootCA(root); err != nil {
				t.Fatal(err)
			}
			if err := k.Write(p1.certPEM, p1.keyPEM); err != nil {
				t.Fatal(err)
			}
			tc.crash(t, k.Dir())
			sec, err := k.Load()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sec.CertPEM(), tc.want.certPEM) || !bytes.Equal(sec.KeyPEM(), tc.want.keyPEM) {
				t.Error("recovered the wrong pair")
			}
			if _, err := os.Stat(filepath.Join(k.Dir(), NodeKeyFilename+pendingKeySuffix)); !errors.Is(err, fs.ErrNotExist) {
				t.Error("pending key left behind after recovery")
			}
			again, err := k.Load()
			if err != nil || !bytes.Equal(again.CertPEM(), tc.want.certPEM) {
				t.Errorf("second load: %v", err)
			}
		})
	}
}

func mustWrite(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestKeyReadWriterLoadValidates(t *testing.T) {
	root, other := newRoot(t), newRoot(t)
	p := issue(t, root, "node1", worker, testOrg)
	q := issue(t, root, "node2", worker, testOrg)
	foreign := issue(t, other, "node1", worker, testOrg)
	for _, tc := range []struct {
		name      string
		root      RootCA
		cert, key []byte
		want      string
	}{
		{"key of another certificate", root, p.certPEM, q.keyPEM, "private key does not match"},
		{"certificate of another root", root, foreign.certPEM, foreign.keyPEM, "unknown authority"},
		{"garbage certificate", root, []byte("garbage"), p.keyPEM, "node certificate and key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := NewKeyReadWriter(t.TempDir())
			if err := k.WriteRootCA(tc.root); err != nil {
				t.Fatal(err)
			}
			if err := k.Write(tc.cert, tc.key); err != nil {
				t.Fatal(err)
			}
			_, err := k.Load()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		old := issueAt(t, root, "node1", worker, testOrg, MinNodeCertExpiry, root.Certificate().NotBefore.Add(time.Second))
		k := NewKeyReadWriter(t.TempDir())
		if err := k.WriteRootCA(root); err != nil {
			t.Fatal(err)
		}
		if err := k.Write(old.certPEM, old.keyPEM); err != nil {
			t.Fatal(err)
		}
		if _, err := k.Load(); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("err = %v, want expired", err)
		}
	})
}

// TestKeyReadWriterConcurrentReaders replaces the pair again and again
// while another KeyReadWriter on the same directory (as another process
// would) loads it: every load sees a matching pair, and no write fails
// because a reader finished it first.
func TestKeyReadWriterConcurrentReaders(t *testing.T) {
	root := newRoot(t)
	pairs := []nodePair{issue(t, root, "node1", worker, testOrg), issue(t, root, "node1", worker, testOrg)}
	stateDir := t.TempDir()
	w := NewKeyReadWriter(stateDir)
	if err := w.WriteRootCA(root); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(pairs[0].certPEM, pairs[0].keyPEM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for i := range 40 {
			p := pairs[i%2]
			if err := w.Write(p.certPEM, p.keyPEM); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	r := NewKeyReadWriter(stateDir)
	for {
		if _, err := r.Load(); err != nil {
			t.Fatalf("load during writes: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("write during loads: %v", err)
			}
			return
		default:
		}
	}
}

// reverseSealer is a test KeySealer: it stores the key reversed behind a
// marker while seal is on, and opens such a key unless refuse is on.
type reverseSealer struct{ seal, refuse bool }

var errCannotOpen = errors.New("cannot open")

func reversed(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := len(b) - 1; i >= 0; i-- {
		out = append(out, b[i])
	}
	return out
}

func (s *reverseSealer) SealKey(keyPEM []byte) ([]byte, error) {
	if !s.seal {
		return keyPEM, nil
	}
	return append([]byte("SEALED:"), reversed(keyPEM)...), nil
}

func (s *reverseSealer) OpenKey(stored []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(stored, []byte("SEALED:"))
	if !ok {
		return stored, nil
	}
	if s.refuse {
		return nil, errCannotOpen
	}
	return reversed(rest), nil
}

// A sealer sees every key written and read: the file holds what it makes
// of the key, Read opens it, an error opening it is Read's and Load's and
// changes nothing, and RewriteKey follows a change of the sealer without
// touching the certificate.
func TestKeyReadWriterSealer(t *testing.T) {
	root := newRoot(t)
	p := issue(t, root, "node1", manager, testOrg)
	s := &reverseSealer{seal: true}
	stateDir := t.TempDir()
	k := NewKeyReadWriter(stateDir).WithSealer(s)
	sec, err := NewSecurityConfig(root, p.certPEM, p.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Save(sec); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(k.Dir(), NodeKeyFilename)
	certFile := filepath.Join(k.Dir(), NodeCertFilename)
	stored, _ := os.ReadFile(keyFile)
	if !bytes.HasPrefix(stored, []byte("SEALED:")) || bytes.Contains(stored, []byte("PRIVATE KEY")) {
		t.Fatalf("key stored in clear:\n%s", stored)
	}
	if loaded, err := k.Load(); err != nil || !bytes.Equal(loaded.KeyPEM(), p.keyPEM) {
		t.Fatalf("Load with the sealer: %v", err)
	}
	if _, err := NewKeyReadWriter(stateDir).Load(); err == nil {
		t.Fatal("a sealed key loaded without its sealer")
	}
	cert, _ := os.ReadFile(certFile)

	// The sealer cannot open the key: Read, Load and RewriteKey fail with
	// its error and nothing changes.
	s.refuse = true
	if _, _, err := k.Read(); !errors.Is(err, errCannotOpen) {
		t.Fatalf("Read: %v, want the sealer's error", err)
	}
	if _, err := k.Load(); !errors.Is(err, errCannotOpen) {
		t.Fatalf("Load: %v, want the sealer's error", err)
	}
	s.seal = false
	if err := k.RewriteKey(); !errors.Is(err, errCannotOpen) {
		t.Fatalf("RewriteKey: %v, want the sealer's error", err)
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(after, stored) {
		t.Fatal("a failed RewriteKey changed the key file")
	}
	s.refuse = false

	for _, tc := range []struct {
		name string
		seal bool
	}{
		{"in clear", false},
		{"sealed again", true},
		{"sealed, unchanged", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.seal = tc.seal
			if err := k.RewriteKey(); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(keyFile)
			if isClear := bytes.Equal(got, p.keyPEM); isClear == tc.seal {
				t.Fatalf("after RewriteKey the key is clear=%v, want %v", isClear, !tc.seal)
			}
			if _, keyPEM, err := k.Read(); err != nil || !bytes.Equal(keyPEM, p.keyPEM) {
				t.Fatalf("Read after RewriteKey: %v", err)
			}
			if after, _ := os.ReadFile(certFile); !bytes.Equal(after, cert) {
				t.Fatal("RewriteKey changed the certificate")
			}
		})
	}

	// A pending key is opened with the sealer too (a crash after the key
	// of a renewal was written) and moved in place as it is stored.
	p2 := issue(t, root, "node1", manager, testOrg)
	pending, _ := s.SealKey(p2.keyPEM)
	mustWrite(t, k.Dir(), NodeKeyFilename+pendingKeySuffix, pending)
	mustWrite(t, k.Dir(), NodeCertFilename, p2.certPEM)
	if _, keyPEM, err := k.Read(); err != nil || !bytes.Equal(keyPEM, p2.keyPEM) {
		t.Fatalf("Read completing a sealed pending key: %v", err)
	}
	if got, _ := os.ReadFile(keyFile); !bytes.Equal(got, pending) {
		t.Fatal("the pending sealed key was not moved in place as it was")
	}
}
