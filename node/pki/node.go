package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/shoal-org/shoal/api/atomicfile"
)

// File names inside a node's PKI directory (WriteKeyPair, WriteCACert).
const (
	CertFile = "node.crt"
	KeyFile  = "node.key"
	CAFile   = "ca.crt"
)

// maxCommonName is the RFC 5280 upper bound of a common name.
const maxCommonName = 64

// NewCSR returns a PEM certificate signing request for nodeID signed by key.
// The leader's SignCSR forces the common name anyway; the CSR proves
// possession of the key.
func NewCSR(key *ecdsa.PrivateKey, nodeID string) ([]byte, error) {
	if err := checkNodeID(nodeID); err != nil {
		return nil, fmt.Errorf("new CSR: %w", err)
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{
			CommonName:         nodeID,
			Organization:       []string{Organization},
			OrganizationalUnit: []string{NodeOU},
		},
		DNSNames: []string{ServerName},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("new CSR for node %s: %w", nodeID, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

// SignCSR issues a node certificate for the CSR in csrPEM. It verifies the
// CSR's signature, requires an ECDSA P-256 key, and refuses a CSR whose
// common name is not nodeID (ErrNodeIDMismatch). Only the CSR's public key
// is used: the subject is CN=nodeID, O=shoal, OU=shoal-node; the SANs are the
// DNS name "shoal" plus ips; the extended key usages are server and client
// auth. The certificate is valid from now-ClockSkew for validity
// (DefaultNodeCertValidity when zero or negative), never past the CA's own
// expiry. It returns the certificate PEM and its serial (see Serial).
func (ca *CA) SignCSR(csrPEM []byte, nodeID string, ips []net.IP, now time.Time, validity time.Duration) (certPEM []byte, serial string, err error) {
	if err := checkNodeID(nodeID); err != nil {
		return nil, "", fmt.Errorf("sign CSR: %w", err)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != pemCSR {
		return nil, "", fmt.Errorf("sign CSR for node %s: %w: no %q PEM block", nodeID, ErrBadCSR, pemCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("sign CSR for node %s: %w: %w", nodeID, ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", fmt.Errorf("sign CSR for node %s: %w: signature: %w", nodeID, ErrBadCSR, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, "", fmt.Errorf("sign CSR for node %s: %w: key is %T, want ECDSA P-256", nodeID, ErrBadCSR, csr.PublicKey)
	}
	if csr.Subject.CommonName != nodeID {
		return nil, "", fmt.Errorf("sign CSR for node %s: %w: CSR asks for %q", nodeID, ErrNodeIDMismatch, csr.Subject.CommonName)
	}
	return ca.issue(pub, nodeID, ips, now, validity)
}

// IssueNodeCert makes a key and a certificate for nodeID in one step, for
// the node that runs `shoal init` (it is its own CA, so there is no CSR to
// send). It uses DefaultNodeCertValidity.
func (ca *CA) IssueNodeCert(nodeID string, ips []net.IP, now time.Time) (certPEM, keyPEM []byte, serial string, err error) {
	return ca.IssueNodeCertFor(nodeID, ips, now, DefaultNodeCertValidity)
}

// IssueNodeCertFor is IssueNodeCert with a lifetime (see SignCSR).
func (ca *CA) IssueNodeCertFor(nodeID string, ips []net.IP, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, serial string, err error) {
	key, err := NewKey()
	if err != nil {
		return nil, nil, "", fmt.Errorf("issue certificate for node %s: %w", nodeID, err)
	}
	csr, err := NewCSR(key, nodeID)
	if err != nil {
		return nil, nil, "", fmt.Errorf("issue certificate for node %s: %w", nodeID, err)
	}
	certPEM, serial, err = ca.SignCSR(csr, nodeID, ips, now, validity)
	if err != nil {
		return nil, nil, "", fmt.Errorf("issue certificate for node %s: %w", nodeID, err)
	}
	keyPEM, err = EncodeKey(key)
	if err != nil {
		return nil, nil, "", fmt.Errorf("issue certificate for node %s: %w", nodeID, err)
	}
	return certPEM, keyPEM, serial, nil
}

func (ca *CA) issue(pub *ecdsa.PublicKey, nodeID string, ips []net.IP, now time.Time, validity time.Duration) ([]byte, string, error) {
	if validity <= 0 {
		validity = DefaultNodeCertValidity
	}
	if validity < MinNodeCertValidity {
		validity = MinNodeCertValidity
	}
	notAfter := now.Add(validity)
	// Back-date by the clock skew allowance, but by no more than a tenth
	// of a short lifetime: renewal is scheduled from NotBefore.
	skew := min(ClockSkew, validity/10)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, "", fmt.Errorf("sign certificate for node %s: %w", nodeID, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         nodeID,
			Organization:       []string{Organization},
			OrganizationalUnit: []string{NodeOU},
		},
		NotBefore:             now.Add(-skew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{ServerName},
		IPAddresses:           cloneIPs(ips),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, "", fmt.Errorf("sign certificate for node %s: %w", nodeID, err)
	}
	return encodeCert(der), serial.Text(16), nil
}

func cloneIPs(ips []net.IP) []net.IP {
	out := make([]net.IP, 0, len(ips))
	for _, ip := range ips {
		if ip == nil {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		out = append(out, append(net.IP(nil), ip...))
	}
	return out
}

func checkNodeID(nodeID string) error {
	if nodeID == "" {
		return errors.New("empty node ID")
	}
	if len(nodeID) > maxCommonName {
		return fmt.Errorf("node ID %q longer than %d bytes", nodeID, maxCommonName)
	}
	return nil
}

// TLSCertificate builds the tls.Certificate a node presents on 2377: the
// chain is the node certificate followed by the CA certificate (JoinTLS
// needs the CA in the chain to pin it), and Leaf is set. It checks that the
// key matches the certificate.
func TLSCertificate(certPEM, keyPEM, caPEM []byte) (tls.Certificate, error) {
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node TLS certificate: %w", err)
	}
	caCert, err := ParseCertPEM(caPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node TLS certificate %s: CA: %w", leaf.Subject.CommonName, err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node TLS certificate %s: %w", leaf.Subject.CommonName, err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return tls.Certificate{}, fmt.Errorf("node TLS certificate %s: %w", leaf.Subject.CommonName, ErrKeyMismatch)
	}
	return tls.Certificate{
		Certificate: [][]byte{leaf.Raw, caCert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// CertPool returns a pool holding the certificates in caPEM (normally just
// the cluster CA).
func CertPool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA pool: %w: no certificate", ErrBadPEM)
	}
	return pool, nil
}

// WriteKeyPair stores a node certificate (mode 0644) and key (mode 0600) as
// CertFile and KeyFile in dir, creating dir with mode 0700. Each file is
// written to a temporary name and renamed, so a crash leaves either the old
// or the new file.
func WriteKeyPair(dir string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write key pair: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, KeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("write key pair: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, CertFile), certPEM, 0o644); err != nil {
		return fmt.Errorf("write key pair: %w", err)
	}
	return nil
}

// LoadKeyPair reads the certificate and key WriteKeyPair stored in dir. A
// missing file gives an error that matches os.ErrNotExist.
func LoadKeyPair(dir string) (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("load key pair: %w", err)
	}
	keyPEM, err = os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("load key pair: %w", err)
	}
	return certPEM, keyPEM, nil
}

// WriteCACert stores the cluster CA certificate (not its key) as CAFile in
// dir; during a CA rotation it is a bundle, the current CA first.
func WriteCACert(dir string, caPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write CA certificate: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, CAFile), caPEM, 0o644); err != nil {
		return fmt.Errorf("write CA certificate: %w", err)
	}
	return nil
}

// LoadCACert reads the CA certificate WriteCACert stored in dir.
func LoadCACert(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	return b, nil
}

// LoadNodeTLS reads dir (WriteKeyPair, WriteCACert or WriteTrust) and
// returns what ServerTLS and ClientTLS need: the node's chain and the CA
// pool (see NodeTLS).
func LoadNodeTLS(dir string) (tls.Certificate, *x509.CertPool, error) {
	certPEM, keyPEM, err := LoadKeyPair(dir)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	caPEM, err := LoadCACert(dir)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	crossPEM, err := LoadCross(dir)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return NodeTLS(certPEM, keyPEM, caPEM, crossPEM)
}
