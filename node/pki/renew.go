package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"time"
)

// Renewal window: a certificate renews between these fractions of its
// lifetime (NotBefore to NotAfter). Halfway leaves the other half to retry
// through a leader election or a partition; the spread keeps the nodes of a
// cluster that joined together from renewing in the same second.
const (
	renewFrom = 1.0 / 2
	renewTo   = 2.0 / 3
)

// MinRenewDelay is the shortest wait RenewIn returns for a certificate not
// yet due, so that a clock that jumps cannot make a node renew in a loop.
const MinRenewDelay = time.Second

// RenewalTime returns when a certificate valid from notBefore to notAfter
// should be renewed: at 1/2 to 2/3 of its lifetime, the point chosen by
// spread in [0, 1) (callers derive it from the node ID, so each node keeps
// its own point). A certificate whose NotAfter is not after its NotBefore
// is due at once (notBefore).
func RenewalTime(notBefore, notAfter time.Time, spread float64) time.Time {
	life := notAfter.Sub(notBefore)
	if life <= 0 {
		return notBefore
	}
	if spread < 0 || spread >= 1 {
		spread = 0
	}
	frac := renewFrom + (renewTo-renewFrom)*spread
	return notBefore.Add(time.Duration(float64(life) * frac))
}

// RenewIn returns how long to wait at now before renewing a certificate
// valid from notBefore to notAfter (see RenewalTime): 0 when it is due (or
// expired), otherwise at least MinRenewDelay.
func RenewIn(notBefore, notAfter, now time.Time, spread float64) time.Duration {
	at := RenewalTime(notBefore, notAfter, spread)
	if !now.Before(at) {
		return 0
	}
	return max(at.Sub(now), MinRenewDelay)
}

// Spread maps a node ID to a point in [0, 1) for RenewalTime.
func Spread(nodeID string) float64 {
	var h uint32 = 2166136261 // FNV-1a
	for i := 0; i < len(nodeID); i++ {
		h ^= uint32(nodeID[i])
		h *= 16777619
	}
	return float64(h%1000) / 1000
}

// VerifyRejoin checks that a node asking to join under an existing node ID
// proves it is that node: oldCertPEM must be a node certificate for nodeID
// issued by one of roots (its expiry is not checked: a node that was away
// for long still holds its key), not revoked, and csrPEM must carry the
// same public key (SignCSR checks that the CSR is signed by it, which proves
// possession). It returns the old certificate's serial, which the caller
// revokes once the new certificate is issued.
func VerifyRejoin(oldCertPEM, csrPEM []byte, nodeID string, roots []*x509.Certificate, isRevoked func(serial string) bool) (string, error) {
	if len(oldCertPEM) == 0 {
		return "", fmt.Errorf("node ID %s: %w", nodeID, ErrNotRejoin)
	}
	old, err := ParseCertPEM(oldCertPEM)
	if err != nil {
		return "", fmt.Errorf("node ID %s: %w: %w", nodeID, ErrNotRejoin, err)
	}
	if old.Subject.CommonName != nodeID {
		return "", fmt.Errorf("node ID %s: %w: the certificate is for %q", nodeID, ErrNotRejoin, old.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	if _, err := old.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: old.NotAfter.Add(-time.Second), // the last moment it was valid
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "", fmt.Errorf("node ID %s: %w: the certificate is not from this cluster: %w", nodeID, ErrNotRejoin, err)
	}
	if isRevoked != nil && isRevoked(Serial(old)) {
		return "", fmt.Errorf("node ID %s: %w: its certificate %s is revoked", nodeID, ErrNotRejoin, Serial(old))
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != pemCSR {
		return "", fmt.Errorf("node ID %s: %w", nodeID, ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("node ID %s: %w: %w", nodeID, ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return "", fmt.Errorf("node ID %s: %w: %w", nodeID, ErrBadCSR, err)
	}
	if !bytes.Equal(csr.RawSubjectPublicKeyInfo, old.RawSubjectPublicKeyInfo) {
		return "", fmt.Errorf("node ID %s: %w: the CSR's key is not the certificate's", nodeID, ErrNotRejoin)
	}
	return Serial(old), nil
}

// CSRKeyFingerprint is the hex SHA-256 of the public key (SubjectPublicKeyInfo)
// of a CSR whose signature checks out: what the leader records for the key
// it certified at a join, so that a retried join can prove it is the same
// joiner (VerifyRetriedJoin).
func CSRKeyFingerprint(csrPEM []byte) (string, error) {
	csr, err := parseSignedCSR(csrPEM)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:]), nil
}

// VerifyRetriedJoin checks that csrPEM is for nodeID and signed by the key
// whose fingerprint the cluster recorded when it admitted nodeID (keyFP).
// It is how a joiner whose join was applied but whose reply was lost (a
// timeout, a leader change) gets in again: it never held the certificate
// VerifyRejoin wants, but it still holds the key the cluster certified.
func VerifyRetriedJoin(csrPEM []byte, nodeID, keyFP string) error {
	if keyFP == "" {
		return fmt.Errorf("node ID %s: %w", nodeID, ErrNotRejoin)
	}
	csr, err := parseSignedCSR(csrPEM)
	if err != nil {
		return fmt.Errorf("node ID %s: %w", nodeID, err)
	}
	if csr.Subject.CommonName != nodeID {
		return fmt.Errorf("node ID %s: %w: the CSR is for %q", nodeID, ErrNotRejoin, csr.Subject.CommonName)
	}
	sum := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	if hex.EncodeToString(sum[:]) != keyFP {
		return fmt.Errorf("node ID %s: %w: the CSR's key is not the one the cluster certified", nodeID, ErrNotRejoin)
	}
	return nil
}

// parseSignedCSR decodes a PEM CSR and checks its self-signature.
func parseSignedCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != pemCSR {
		return nil, ErrBadCSR
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	return csr, nil
}
