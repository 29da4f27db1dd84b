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
//
// With a KeySealer (WithSealer) the node key is stored sealed: Write and
// RewriteKey store what the sealer makes of it, Read opens what is stored
// with it. The certificate and the root CA certificate stay in clear.
type KeyReadWriter struct {
	dir    string
	sealer KeySealer
}

// KeySealer protects the node key at rest. SealKey returns what is stored
// for a clear PEM key (the key itself when nothing is to be sealed);
// OpenKey returns the clear PEM key of what is stored, or an error when it
// cannot open it (a clear key is returned as it is). Both may be called
// concurrently.
type KeySealer interface {
	SealKey(keyPEM []byte) ([]byte, error)
	OpenKey(stored []byte) ([]byte, error)
}

// NewKeyReadWriter returns a KeyReadWriter for stateDir/certificates.
func NewKeyReadWriter(stateDir string) *KeyReadWriter {
	return &KeyReadWriter{dir: filepath.Join(stateDir, CertificatesDir)}
}

// WithSealer returns a KeyReadWriter of the same directory that stores the
// node key through s (nil: in clear, and read as it is).
func (k *KeyReadWriter) WithSealer(s KeySealer) *KeyReadWriter {
	return &KeyReadWriter{dir: k.dir, sealer: s}
}

// seal is what is stored for keyPEM.
func (k *KeyReadWriter) seal(keyPEM []byte) ([]byte, error) {
	if k.sealer == nil {
		return keyPEM, nil
	}
	return k.sealer.SealKey(keyPEM)
}

// open is the clear key of what is stored.
func (k *KeyReadWriter) open(stored []byte) ([]byte, error) {
	if k.sealer == nil {
		return stored, nil
	}
	return k.sealer.OpenKey(stored)
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
	stored, err := k.seal(keyPEM)
	if err != nil {
		return fmt.Errorf("write node key: %w", err)
	}
	pending := NodeKeyFilename + pendingKeySuffix
	if err := atomicfile.WriteFile(k.path(pending), stored, fileMode); err != nil {
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

// Read returns the stored node certificate and key (opened with the
// sealer), completing a Write a crash interrupted. A missing file is an
// error wrapping fs.ErrNotExist; a key the sealer cannot open is an error
// wrapping the sealer's. It does not validate them: see Load.
func (k *KeyReadWriter) Read() (certPEM, keyPEM []byte, err error) {
	unlock, err := k.lock()
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	return k.read()
}

// read is Read with the lock held.
func (k *KeyReadWriter) read() (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(k.path(NodeCertFilename))
	if err != nil {
		return nil, nil, fmt.Errorf("read node certificate: %w", err)
	}
	pending := NodeKeyFilename + pendingKeySuffix
	keyPEM, err = k.readKey(NodeKeyFilename)
	if err == nil && keyMatches(certPEM, keyPEM) {
		// A pending key left over from before the certificate was
		// replaced is stale.
		if rmErr := os.Remove(k.path(pending)); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("remove stale node key: %w", rmErr)
		}
		return certPEM, keyPEM, nil
	}
	newKey, pErr := k.readKey(pending)
	if pErr == nil && keyMatches(certPEM, newKey) {
		if err := atomicfile.Rename(k.path(pending), k.path(NodeKeyFilename)); err != nil {
			return nil, nil, fmt.Errorf("complete node key write: %w", err)
		}
		return certPEM, newKey, nil
	}
	if err != nil {
		return nil, nil, err
	}
	// Neither key matches: let validation report it.
	return certPEM, keyPEM, nil
}

// readKey reads and opens the key file name.
func (k *KeyReadWriter) readKey(name string) ([]byte, error) {
	stored, err := os.ReadFile(k.path(name))
	if err != nil {
		return nil, fmt.Errorf("read node key: %w", err)
	}
	keyPEM, err := k.open(stored)
	if err != nil {
		return nil, fmt.Errorf("open node key %s: %w", k.path(name), err)
	}
	return keyPEM, nil
}

// RewriteKey stores the node key again as the sealer now seals it (after
// the sealer changed: sealed with a new key, or in clear), after checking
// that it opens and matches the certificate. The file is replaced
// atomically: a crash leaves the old or the new form, never neither.
func (k *KeyReadWriter) RewriteKey() error {
	unlock, err := k.lock()
	if err != nil {
		return fmt.Errorf("rewrite node key: %w", err)
	}
	defer unlock()
	certPEM, keyPEM, err := k.read()
	if err != nil {
		return fmt.Errorf("rewrite node key: %w", err)
	}
	if !keyMatches(certPEM, keyPEM) {
		return fmt.Errorf("rewrite node key: the key in %s does not match the certificate", k.dir)
	}
	stored, err := k.seal(keyPEM)
	if err != nil {
		return fmt.Errorf("rewrite node key: %w", err)
	}
	if err := atomicfile.WriteFile(k.path(NodeKeyFilename), stored, fileMode); err != nil {
		return fmt.Errorf("rewrite node key: %w", err)
	}
	return nil
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
