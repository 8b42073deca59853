package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"time"
)

const (
	// CAValidity is the lifetime of a cluster CA made by NewCA.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultNodeCertValidity is the lifetime of a node certificate when
	// SignCSR is given a zero validity, and the one IssueNodeCert uses.
	// Certificates renew themselves at 1/2 to 2/3 of it (RenewalTime).
	DefaultNodeCertValidity = 30 * 24 * time.Hour
	// MinNodeCertValidity is the shortest lifetime SignCSR accepts.
	MinNodeCertValidity = time.Minute
	// ClockSkew is how far before "now" certificates become valid, so that
	// a node whose clock lags a little accepts a fresh certificate.
	ClockSkew = 5 * time.Minute
	// ServerName is the DNS SAN of every node certificate and the name
	// clients verify: nodes are addressed by IP, identified by common name.
	ServerName = "shoal"
	// NodeOU is the organizational unit of every node certificate.
	NodeOU = "shoal-node"
	// Organization is the organization of the CA and node certificates.
	Organization = "shoal"

	caCommonNamePrefix = "shoal-ca "
	pemCertificate     = "CERTIFICATE"
	pemPrivateKey      = "PRIVATE KEY"
	pemECPrivateKey    = "EC PRIVATE KEY"
	pemCSR             = "CERTIFICATE REQUEST"
)

// fingerprintEncoding is RFC 4648 base32, standard alphabet, no padding; the
// output is lower-cased.
var fingerprintEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// CA is the cluster certificate authority: its certificate and private key.
// It is safe for concurrent use; it is immutable after creation.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// NewCA makes a self-signed ECDSA P-256 CA for the cluster clusterID, valid
// from now-ClockSkew for CAValidity. The cluster ID is recorded in the
// subject (CN "shoal-ca <id>", OU <id>).
func NewCA(clusterID string, now time.Time) (*CA, error) {
	if clusterID == "" {
		return nil, fmt.Errorf("new CA: empty cluster ID")
	}
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %s: %w", clusterID, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %s: %w", clusterID, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         caCommonNamePrefix + clusterID,
			Organization:       []string{Organization},
			OrganizationalUnit: []string{clusterID},
		},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// One intermediate below the root: the next CA, cross-signed by
		// this one during a rotation (CrossSign). A path length of zero
		// would make cross-signed chains invalid.
		MaxPathLen: 1,
		// SubjectKeyId is filled in by x509.CreateCertificate for CAs.
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %s: create certificate: %w", clusterID, err)
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %s: %w", clusterID, err)
	}
	return LoadCA(encodeCert(der), keyPEM)
}

// LoadCA rebuilds a CA from the PEM its CertPEM and KeyPEM returned. It
// checks that the certificate is a CA and that the key belongs to it.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("load CA %q: %w", cert.Subject.CommonName, ErrNotCA)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA %q: %w", cert.Subject.CommonName, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load CA %q: %w", cert.Subject.CommonName, ErrKeyMismatch)
	}
	return &CA{
		cert:    cert,
		key:     key,
		certPEM: bytes.Clone(certPEM),
		keyPEM:  bytes.Clone(keyPEM),
	}, nil
}

// CertPEM returns the CA certificate in PEM. The caller may keep it; it is a copy.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// KeyPEM returns the CA private key in PEM (PKCS#8). It is secret: it goes
// into Raft only sealed (Seal) and is never written to disk in the clear.
// The caller may keep it; it is a copy.
func (ca *CA) KeyPEM() []byte { return bytes.Clone(ca.keyPEM) }

// Cert returns the parsed CA certificate. The caller must not modify it.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// ClusterID returns the cluster ID recorded in the CA subject by NewCA, or
// "" for a CA made elsewhere.
func (ca *CA) ClusterID() string {
	if len(ca.cert.Subject.OrganizationalUnit) == 0 {
		return ""
	}
	return ca.cert.Subject.OrganizationalUnit[0]
}

// Pool returns a new certificate pool holding only this CA, for ServerTLS
// and ClientTLS.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return pool
}

// Fingerprint returns the SHA-256 of the CA certificate DER, as the join
// token carries it (see package Fingerprint).
func (ca *CA) Fingerprint() string { return Fingerprint(ca.cert.Raw) }

// Fingerprint returns the SHA-256 of a DER certificate encoded in lower-case
// RFC 4648 base32 (standard alphabet) without padding: 52 characters.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return strings.ToLower(fingerprintEncoding.EncodeToString(sum[:]))
}

// FingerprintPEM returns the Fingerprint of the first certificate in certPEM.
// A joining node uses it to check that the CA the leader sent back is the
// one its token pinned.
func FingerprintPEM(certPEM []byte) (string, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	return Fingerprint(cert.Raw), nil
}

// NewKey makes a new ECDSA P-256 private key, the only key type Shoal uses.
func NewKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate P-256 key: %w", err)
	}
	return key, nil
}

// EncodeKey returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// ParseKeyPEM decodes an ECDSA private key from a PKCS#8 "PRIVATE KEY" or a
// SEC 1 "EC PRIVATE KEY" PEM block.
func ParseKeyPEM(keyPEM []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("parse private key: %w: no PEM block", ErrBadPEM)
	}
	switch block.Type {
	case pemECPrivateKey:
		key, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse EC private key: %w", err)
		}
		return key, nil
	case pemPrivateKey:
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
		}
		key, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("parse private key: %T is not an ECDSA key: %w", k, ErrBadPEM)
		}
		return key, nil
	default:
		return nil, fmt.Errorf("parse private key: %w: block type %q", ErrBadPEM, block.Type)
	}
}

// ParseCertPEM decodes the first "CERTIFICATE" block of certPEM.
func ParseCertPEM(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, fmt.Errorf("parse certificate: %w: no PEM block", ErrBadPEM)
	}
	if block.Type != pemCertificate {
		return nil, fmt.Errorf("parse certificate: %w: block type %q", ErrBadPEM, block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// Serial returns a certificate's serial number as Shoal records it in node
// records and the revocation list: lower-case hex without leading zeros.
func Serial(cert *x509.Certificate) string { return cert.SerialNumber.Text(16) }

// SerialPEM returns the Serial of the first certificate in certPEM.
func SerialPEM(certPEM []byte) (string, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return "", err
	}
	return Serial(cert), nil
}

// CertExpiry returns the NotAfter of the first certificate in certPEM, so
// the agent can renew before it passes.
func CertExpiry(certPEM []byte) (time.Time, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der})
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("random serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// CrossSign returns next's certificate re-issued by this CA: same subject,
// same public key and key ID, signed by this CA's key (PEM). During a CA
// rotation, nodes present it between their new certificate and the new CA,
// so that nodes still trusting only this CA accept the new certificates.
// It fails with ErrNotCA when this CA's path length forbids an
// intermediate (CAs made before cross-signing existed).
func (ca *CA) CrossSign(next *x509.Certificate, now time.Time) ([]byte, error) {
	if ca.cert.MaxPathLen == 0 && ca.cert.MaxPathLenZero {
		return nil, fmt.Errorf("cross-sign %q: %w: path length 0 allows no intermediate", next.Subject.CommonName, ErrNotCA)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("cross-sign %q: %w", next.Subject.CommonName, err)
	}
	notAfter := next.NotAfter
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               next.Subject,
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              notAfter,
		KeyUsage:              next.KeyUsage,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          next.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, next.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("cross-sign %q: %w", next.Subject.CommonName, err)
	}
	return encodeCert(der), nil
}
