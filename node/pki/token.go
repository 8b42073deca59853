package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Token layout: SHOAL-<version>-<fingerprint>-<secret>. The fingerprint
// and the secret are lower-case RFC 4648 base32 without padding.
const (
	// TokenPrefix starts every join token.
	TokenPrefix = "SHOAL"
	// TokenVersion is the only token version this package reads and writes.
	TokenVersion = 1
	// FingerprintLen is the length of a Fingerprint: 32 bytes in base32.
	FingerprintLen = 52
	// SecretLen is the length of a NewSecret: 20 random bytes (160 bits).
	SecretLen = 32

	secretBytes = 20
)

// Token is a parsed join token.
type Token struct {
	// Version is the token format version; always TokenVersion today.
	Version int
	// CAFingerprint pins the cluster CA (see Fingerprint), lower case.
	CAFingerprint string
	// Secret proves the joiner was given the token, lower case. The
	// cluster stores only HashSecret of it.
	Secret string
}

// String formats t as FormatToken does.
func (t Token) String() string {
	return fmt.Sprintf("%s-%d-%s-%s", TokenPrefix, t.Version, t.CAFingerprint, t.Secret)
}

// FormatToken returns the join token SHOAL-1-<caFingerprint>-<secret>. The
// arguments are lower-cased; they are not otherwise checked (ParseToken is
// the gate).
func FormatToken(caFingerprint, secret string) string {
	return Token{Version: TokenVersion, CAFingerprint: strings.ToLower(caFingerprint), Secret: strings.ToLower(secret)}.String()
}

// NewSecret returns a new random join secret: 160 bits as SecretLen
// lower-case base32 characters.
func NewSecret() string {
	var b [secretBytes]byte
	// crypto/rand.Read never returns an error (it crashes the program
	// if the OS cannot provide randomness).
	_, _ = rand.Read(b[:])
	return strings.ToLower(fingerprintEncoding.EncodeToString(b[:]))
}

// ParseToken parses a join token. Surrounding white space is ignored and the
// base32 parts are accepted in either case (they are returned in lower case);
// the prefix must be "SHOAL" and the version 1. Every refusal wraps
// ErrMalformedToken and says what is wrong without echoing the secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, "-")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: want 4 dash-separated parts SHOAL-1-<fingerprint>-<secret>, got %d", ErrMalformedToken, len(parts))
	}
	if parts[0] != TokenPrefix {
		return Token{}, fmt.Errorf("%w: does not start with %q", ErrMalformedToken, TokenPrefix+"-")
	}
	v, err := strconv.Atoi(parts[1])
	if err != nil || strconv.Itoa(v) != parts[1] {
		return Token{}, fmt.Errorf("%w: version %q is not a number", ErrMalformedToken, parts[1])
	}
	if v != TokenVersion {
		return Token{}, fmt.Errorf("%w: unsupported version %d (this shoal reads version %d)", ErrMalformedToken, v, TokenVersion)
	}
	fp, err := checkBase32(parts[2], FingerprintLen)
	if err != nil {
		return Token{}, fmt.Errorf("%w: CA fingerprint: %w", ErrMalformedToken, err)
	}
	secret, err := checkBase32(parts[3], SecretLen)
	if err != nil {
		return Token{}, fmt.Errorf("%w: secret: %w", ErrMalformedToken, err)
	}
	return Token{Version: v, CAFingerprint: fp, Secret: secret}, nil
}

// checkBase32 checks that s is exactly n characters of unpadded base32 and
// returns it in lower case.
func checkBase32(s string, n int) (string, error) {
	if len(s) != n {
		return "", fmt.Errorf("%d characters, want %d", len(s), n)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return "", fmt.Errorf("character %d is not base32 (letters a-z and digits 2-7)", i+1)
		}
	}
	s = strings.ToLower(s)
	if _, err := fingerprintEncoding.DecodeString(strings.ToUpper(s)); err != nil {
		return "", fmt.Errorf("not base32: %w", err)
	}
	return s, nil
}

// HashSecret returns the hex SHA-256 of a join secret, which is what the
// cluster stores in Raft. The secret is hashed as given; pass the lower-case
// form ParseToken and NewSecret return.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// VerifySecret reports whether secret hashes to hash (from HashSecret). The
// comparison takes constant time in the contents.
func VerifySecret(secret, hash string) bool {
	got := HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(strings.ToLower(hash))) == 1
}
