package pki

// Sealing: the cluster CA key and the join secret go into the replicated
// Raft log, which every node (voter or not) stores in full. They are
// therefore sealed with a key-encryption key (KEK) that only voters hold, in
// their data directory (mode 0600), and that voters hand to newly promoted
// voters over mutual TLS. A sealed blob is
//
//	version (1 byte) | nonce (12 bytes) | AES-256-GCM ciphertext and tag
//
// The nonce is drawn when sealing, before the command is proposed, so the
// state machine applying the command stays a pure function of the log. The
// additional data names what the blob is (the CA key or the join secret of
// one cluster), so a sealed join secret cannot be passed off as a CA key.

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// KEKSize is the size of a key-encryption key: AES-256.
const KEKSize = 32

const (
	sealVersion  = 1
	sealNonceLen = 12
)

// NewKEK returns a new random key-encryption key.
func NewKEK() []byte {
	k := make([]byte, KEKSize)
	// crypto/rand.Read never returns an error (it crashes the program
	// if the OS cannot provide randomness).
	_, _ = rand.Read(k)
	return k
}

// KEKID names a KEK without revealing it: the first 8 bytes of a domain
// separated SHA-256, in hex. The cluster record keeps it so that a voter
// can tell whether the KEK it holds is the one the sealed blobs need.
func KEKID(kek []byte) string {
	h := sha256.New()
	h.Write([]byte("shoal kek id\x00"))
	h.Write(kek)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Seal encrypts plaintext under kek with AES-256-GCM, binding it to aad.
// It draws a fresh random nonce; the result embeds it.
func Seal(kek, plaintext, aad []byte) ([]byte, error) {
	gcm, err := newGCM(kek)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := make([]byte, 1+sealNonceLen, 1+sealNonceLen+len(plaintext)+gcm.Overhead())
	out[0] = sealVersion
	_, _ = rand.Read(out[1 : 1+sealNonceLen])
	return gcm.Seal(out, out[1:1+sealNonceLen], plaintext, aad), nil
}

// Open decrypts what Seal returned. A wrong KEK, wrong aad or altered blob
// gives an error wrapping ErrUnseal.
func Open(kek, sealed, aad []byte) ([]byte, error) {
	gcm, err := newGCM(kek)
	if err != nil {
		return nil, fmt.Errorf("open sealed data: %w", err)
	}
	if len(sealed) < 1+sealNonceLen+gcm.Overhead() {
		return nil, fmt.Errorf("open sealed data: %w: %d bytes is too short", ErrUnseal, len(sealed))
	}
	if sealed[0] != sealVersion {
		return nil, fmt.Errorf("open sealed data: %w: unknown version %d", ErrUnseal, sealed[0])
	}
	pt, err := gcm.Open(nil, sealed[1:1+sealNonceLen], sealed[1+sealNonceLen:], aad)
	if err != nil {
		return nil, fmt.Errorf("open sealed data: %w (wrong key-encryption key?)", ErrUnseal)
	}
	return pt, nil
}

func newGCM(kek []byte) (cipher.AEAD, error) {
	if len(kek) != KEKSize {
		return nil, fmt.Errorf("key-encryption key has %d bytes, want %d", len(kek), KEKSize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
