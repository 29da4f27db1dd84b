package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/openswarm/swarmd/internal/atomicfile"
)

// Files under <state-dir>/certificates.
const (
	CertificatesDir    = "certificates"
	RootCACertFilename = "swarm-root-ca.crt"
	NodeCertFilename   = "swarm-node.crt"
	NodeKeyFilename    = "swarm-node.key"
	// pendingKeySuffix marks a key written ahead of its certificate (see
	// KeyReadWriter.Write).
	pendingKeySuffix = ".new"
	// lockFilename is the advisory lock (flock) that Read and Write hold,
	// so a reader in any process never sees half of a pair being replaced.
	lockFilename = ".lock"

	fileMode = 0o600
	dirMode  = 0o700
)

// KeyReadWriter keeps a node's TLS material in <state-dir>/certificates:
// the root CA certificate (never its key), the node certificate and the
// node key, all mode 0600 in a 0700 directory, each written atomically
// (temporary file, fsync, rename, fsync of the directory).
//
// The certificate and key are two files, so a new pair is written in an
// order that a crash at any point leaves readable: the key goes to
// swarm-node.key.new, then the certificate replaces swarm-node.crt, then the
// key is renamed over swarm-node.key. Read finishes an interrupted Write.
// Read and Write hold an exclusive flock on certificates/.lock, so readers
// and writers in different processes (or with different KeyReadWriters)
// take turns.
type KeyReadWriter struct {
	dir string
}

// NewKeyReadWriter returns a KeyReadWriter for stateDir/certificates.
func NewKeyReadWriter(stateDir string) *KeyReadWriter {
	return &KeyReadWriter{dir: filepath.Join(stateDir, CertificatesDir)}
}

// Dir returns the certificates directory.
func (k *KeyReadWriter) Dir() string { return k.dir }

func (k *KeyReadWriter) path(name string) string { return filepath.Join(k.dir, name) }

// Exists reports whether a node certificate has been stored.
func (k *KeyReadWriter) Exists() (bool, error) {
	_, err := os.Stat(k.path(NodeCertFilename))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (k *KeyReadWriter) mkdir() error {
	if err := os.MkdirAll(k.dir, dirMode); err != nil {
		return err
	}
	return os.Chmod(k.dir, dirMode)
}

// lock takes the directory's exclusive advisory lock; the returned
// function releases it. When the directory does not exist there is nothing
// to protect and nothing is locked.
func (k *KeyReadWriter) lock() (func(), error) {
	f, err := os.OpenFile(k.path(lockFilename), os.O_CREATE|os.O_RDWR, fileMode)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", k.dir, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", k.dir, err)
	}
	return func() { _ = f.Close() }, nil
}

// WriteRootCA stores the root CA certificate (only: the key stays in the
// cluster store).
func (k *KeyReadWriter) WriteRootCA(root RootCA) error {
	if root.IsZero() {
		return errors.New("write root CA: empty root CA")
	}
	if err := k.mkdir(); err != nil {
		return fmt.Errorf("write root CA: %w", err)
	}
	if err := atomicfile.WriteFile(k.path(RootCACertFilename), root.CertPEM(), fileMode); err != nil {
		return fmt.Errorf("write root CA: %w", err)
	}
	return nil
}

// ReadRootCA reads the stored root CA certificate. A missing file is an
// error wrapping fs.ErrNotExist.
func (k *KeyReadWriter) ReadRootCA() (RootCA, error) {
	data, err := os.ReadFile(k.path(RootCACertFilename))
	if err != nil {
		return RootCA{}, fmt.Errorf("read root CA: %w", err)
	}
	root, err := NewRootCA(data, nil)
	if err != nil {
		return RootCA{}, fmt.Errorf("read root CA %s: %w", k.path(RootCACertFilename), err)
	}
	return root, nil
}

// Write stores a node certificate and its key (see the type's comment for
// the crash-safe order).
func (k *KeyReadWriter) Write(certPEM, keyPEM []byte) error {
	if err := k.mkdir(); err != nil {
		return fmt.Errorf("write node certificate: %w", err)
	}
	unlock, err := k.lock()
	if err != nil {
		return fmt.Errorf("write node certificate: %w", err)
	}
	defer unlock()
	pending := NodeKeyFilename + pendingKeySuffix
	if err := atomicfile.WriteFile(k.path(pending), keyPEM, fileMode); err != nil {
		return fmt.Errorf("write node key: %w", err)
	}
	if err := atomicfile.WriteFile(k.path(NodeCertFilename), certPEM, fileMode); err != nil {
		return fmt.Errorf("write node certificate: %w", err)
	}
	if err := atomicfile.Rename(k.path(pending), k.path(NodeKeyFilename)); err != nil {
		return fmt.Errorf("write node key: %w", err)
	}
	return nil
}

// Read returns the stored node certificate and key, completing a Write a
// crash interrupted. A missing file is an error wrapping fs.ErrNotExist. It
// does not validate them: see Load.
func (k *KeyReadWriter) Read() (certPEM, keyPEM []byte, err error) {
	unlock, err := k.lock()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	certPEM, err = os.ReadFile(k.path(NodeCertFilename))
	if err != nil {
		return nil, nil, fmt.Errorf("read node certificate: %w", err)
	}
	pending := NodeKeyFilename + pendingKeySuffix
	keyPEM, err = os.ReadFile(k.path(NodeKeyFilename))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("read node key: %w", err)
	}
	if err == nil && keyMatches(certPEM, keyPEM) {
		// A pending key left over from before the certificate was
		// replaced is stale.
		if rmErr := os.Remove(k.path(pending)); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("remove stale node key: %w", rmErr)
		}
		return certPEM, keyPEM, nil
	}
	newKey, pErr := os.ReadFile(k.path(pending))
	if pErr == nil && keyMatches(certPEM, newKey) {
		if err := atomicfile.Rename(k.path(pending), k.path(NodeKeyFilename)); err != nil {
			return nil, nil, fmt.Errorf("complete node key write: %w", err)
		}
		return certPEM, newKey, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read node key: %w", err)
	}
	// Neither key matches: let validation report it.
	return certPEM, keyPEM, nil
}

// keyMatches reports whether keyPEM is the private key of certPEM's leaf.
func keyMatches(certPEM, keyPEM []byte) bool {
	leaf, _, err := parseCertificatePEM(certPEM)
	if err != nil {
		return false
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return false
	}
	return publicKeysEqual(key.Public(), leaf.PublicKey)
}

// Load reads the root CA and the node certificate and key and validates
// them together (ValidateKeyPair at the current time): the certificate
// matches the key and chains to the root.
func (k *KeyReadWriter) Load() (*SecurityConfig, error) {
	root, err := k.ReadRootCA()
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := k.Read()
	if err != nil {
		return nil, err
	}
	sec, err := NewSecurityConfig(root, certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", k.dir, err)
	}
	return sec, nil
}

// Save writes sec's root CA, certificate and key.
func (k *KeyReadWriter) Save(sec *SecurityConfig) error {
	if err := k.WriteRootCA(sec.RootCA()); err != nil {
		return err
	}
	return k.Write(sec.CertPEM(), sec.KeyPEM())
}

// Remove deletes the certificates directory (leaving the swarm).
func (k *KeyReadWriter) Remove() error {
	if err := os.RemoveAll(k.dir); err != nil {
		return fmt.Errorf("remove %s: %w", k.dir, err)
	}
	return atomicfile.SyncDir(filepath.Dir(k.dir))
}
