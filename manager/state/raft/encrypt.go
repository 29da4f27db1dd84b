package raft

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Encryption at rest of the raft log and snapshots.
//
// Everything diskStorage writes that may hold cluster objects (the Data of
// every log entry, the WAL metadata naming this member, the Data of every
// snapshot) is sealed with AES-256-GCM under the member's data encryption
// key (Config.DEK). A sealed record is an envelope:
//
//	"SWE1" | 12-byte random nonce | ciphertext+tag
//
// The magic is authenticated as additional data, so a later format can
// change it. Plaintext records are protobuf messages, which never start
// with "S" (0x53 would be field 10 as a group, which none of them has), so
// the magic tells the two apart. Data without the magic is read as
// plaintext: logs written
// before encryption, or with no key, keep working, and new writes are
// sealed. Only the disk is encrypted: raft's MemoryStorage and what is sent
// to peers stay plaintext (the transport is mutual TLS), so a snapshot a
// follower receives is sealed with the follower's own key when it saves it.

// DEKSize is the length of a data encryption key: AES-256.
const DEKSize = 32

const envelopeMagic = "SWE1"

// ErrWrongKey is returned when a sealed record does not open with the
// configured key, or no key is configured.
var ErrWrongKey = errors.New("cannot decrypt the raft log: wrong or missing key")

// cryptor seals and opens envelopes; a cryptor without a key passes data
// through and refuses to open sealed data.
type cryptor struct {
	aead cipher.AEAD
}

func newCryptor(dek []byte) (*cryptor, error) {
	if len(dek) == 0 {
		return &cryptor{}, nil
	}
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("raft: data encryption key must be %d bytes, got %d", DEKSize, len(dek))
	}
	block, err := aes.NewCipher(dek)
	if err != nil {
		return nil, fmt.Errorf("raft: data encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("raft: data encryption key: %w", err)
	}
	return &cryptor{aead: aead}, nil
}

// enabled reports whether writes are sealed.
func (c *cryptor) enabled() bool { return c != nil && c.aead != nil }

// seal returns plain in an envelope, in a new slice. Without a key, and for
// empty data (raft's empty entries hold nothing to hide), it returns plain.
func (c *cryptor) seal(plain []byte) ([]byte, error) {
	if !c.enabled() || len(plain) == 0 {
		return plain, nil
	}
	ns := c.aead.NonceSize()
	out := make([]byte, len(envelopeMagic)+ns, len(envelopeMagic)+ns+len(plain)+c.aead.Overhead())
	copy(out, envelopeMagic)
	nonce := out[len(envelopeMagic):]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("raft: encryption nonce: %w", err)
	}
	return c.aead.Seal(out, nonce, plain, []byte(envelopeMagic)), nil
}

// open returns the plaintext of an envelope, or data itself when it is not
// one (written before encryption). A sealed record that does not open with
// this key, or with no key, is ErrWrongKey.
func (c *cryptor) open(data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, []byte(envelopeMagic)) {
		return data, nil
	}
	if !c.enabled() {
		return nil, ErrWrongKey
	}
	rest := data[len(envelopeMagic):]
	ns := c.aead.NonceSize()
	if len(rest) < ns+c.aead.Overhead() {
		return nil, ErrWrongKey
	}
	plain, err := c.aead.Open(nil, rest[:ns], rest[ns:], []byte(envelopeMagic))
	if err != nil {
		return nil, ErrWrongKey
	}
	return plain, nil
}
