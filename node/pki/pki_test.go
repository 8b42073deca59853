package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestCA(t testing.TB, clusterID string) *CA {
	t.Helper()
	ca, err := NewCA(clusterID, time.Now())
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// nodeTLS issues a node certificate from ca and returns its TLS chain.
func nodeTLS(t testing.TB, ca *CA, nodeID string) (tls.Certificate, string) {
	t.Helper()
	certPEM, keyPEM, serial, err := ca.IssueNodeCert(nodeID, []net.IP{net.ParseIP("127.0.0.1")}, time.Now())
	if err != nil {
		t.Fatalf("IssueNodeCert: %v", err)
	}
	cert, err := TLSCertificate(certPEM, keyPEM, ca.CertPEM())
	if err != nil {
		t.Fatalf("TLSCertificate: %v", err)
	}
	return cert, serial
}

func TestCA(t *testing.T) {
	ca, err := NewCA("cluster-7", testNow)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	c := ca.Cert()
	if !c.IsCA || c.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CA cert IsCA=%v alg=%v", c.IsCA, c.PublicKeyAlgorithm)
	}
	if got, want := c.NotAfter, testNow.Add(CAValidity); !got.Equal(want.Truncate(time.Second)) {
		t.Fatalf("NotAfter = %v, want %v", got, want)
	}
	if ca.ClusterID() != "cluster-7" {
		t.Fatalf("ClusterID = %q", ca.ClusterID())
	}
	fp := ca.Fingerprint()
	if len(fp) != FingerprintLen || strings.ToLower(fp) != fp || strings.Contains(fp, "=") {
		t.Fatalf("Fingerprint = %q", fp)
	}
	if got, err := FingerprintPEM(ca.CertPEM()); err != nil || got != fp {
		t.Fatalf("FingerprintPEM = %q, %v; want %q", got, err, fp)
	}

	loaded, err := LoadCA(ca.CertPEM(), ca.KeyPEM())
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if loaded.Fingerprint() != fp {
		t.Fatal("LoadCA changed the fingerprint")
	}
	other := newTestCA(t, "other")
	if _, err := LoadCA(ca.CertPEM(), other.KeyPEM()); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("LoadCA with foreign key: %v, want ErrKeyMismatch", err)
	}
	certPEM, keyPEM, _, err := ca.IssueNodeCert("n1", nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(certPEM, keyPEM); !errors.Is(err, ErrNotCA) {
		t.Fatalf("LoadCA with node cert: %v, want ErrNotCA", err)
	}
	if _, err := NewCA("", testNow); err == nil {
		t.Fatal("NewCA accepted an empty cluster ID")
	}
}

func TestSignCSR(t *testing.T) {
	ca, err := NewCA("c1", testNow)
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NewCSR(key, "node-a")
	if err != nil {
		t.Fatalf("NewCSR: %v", err)
	}
	ips := []net.IP{net.ParseIP("10.0.0.5"), net.ParseIP("fd00::5")}
	certPEM, serial, err := ca.SignCSR(csr, "node-a", ips, testNow, time.Hour)
	if err != nil {
		t.Fatalf("SignCSR: %v", err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if Serial(cert) != serial || len(serial) == 0 || len(serial) > 32 {
		t.Fatalf("serial %q, cert serial %q", serial, Serial(cert))
	}
	if got, _ := SerialPEM(certPEM); got != serial {
		t.Fatalf("SerialPEM = %q", got)
	}
	if cert.Subject.CommonName != "node-a" || !slices.Equal(cert.Subject.OrganizationalUnit, []string{NodeOU}) {
		t.Fatalf("subject %v", cert.Subject)
	}
	if !slices.Equal(cert.DNSNames, []string{"shoal"}) || len(cert.IPAddresses) != 2 ||
		!cert.IPAddresses[0].Equal(ips[0]) || !cert.IPAddresses[1].Equal(ips[1]) {
		t.Fatalf("SANs dns=%v ip=%v", cert.DNSNames, cert.IPAddresses)
	}
	if len(cert.ExtKeyUsage) != 2 {
		t.Fatalf("ExtKeyUsage %v", cert.ExtKeyUsage)
	}
	if exp, _ := CertExpiry(certPEM); !exp.Equal(testNow.Add(time.Hour)) {
		t.Fatalf("CertExpiry = %v", exp)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "shoal", CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Fatalf("verify for %v: %v", usage, err)
		}
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("certificate is not for the CSR key")
	}

	// Validity is clamped to the CA's expiry; zero means the default.
	longPEM, _, err := ca.SignCSR(csr, "node-a", nil, testNow, 2*CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	if exp, _ := CertExpiry(longPEM); !exp.Equal(ca.Cert().NotAfter) {
		t.Fatalf("long validity expiry %v, CA expires %v", exp, ca.Cert().NotAfter)
	}
	defPEM, serial2, err := ca.SignCSR(csr, "node-a", nil, testNow, 0)
	if err != nil {
		t.Fatal(err)
	}
	if exp, _ := CertExpiry(defPEM); !exp.Equal(testNow.Add(DefaultNodeCertValidity)) {
		t.Fatalf("default expiry %v", exp)
	}
	if serial2 == serial {
		t.Fatal("two certificates share a serial")
	}

	// Refusals.
	if _, _, err := ca.SignCSR(csr, "node-b", nil, testNow, 0); !errors.Is(err, ErrNodeIDMismatch) {
		t.Fatalf("CN mismatch: %v, want ErrNodeIDMismatch", err)
	}
	if _, _, err := ca.SignCSR([]byte("junk"), "node-a", nil, testNow, 0); !errors.Is(err, ErrBadCSR) {
		t.Fatalf("junk CSR: %v, want ErrBadCSR", err)
	}
	tampered := bytes.Clone(csr)
	// Flip a byte inside the base64 body near the end (the signature).
	i := bytes.LastIndex(tampered, []byte("\n-----END")) - 5
	if tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	if _, _, err := ca.SignCSR(tampered, "node-a", nil, testNow, 0); !errors.Is(err, ErrBadCSR) {
		t.Fatalf("tampered CSR: %v, want ErrBadCSR", err)
	}
	if _, err := NewCSR(key, ""); err == nil {
		t.Fatal("NewCSR accepted an empty node ID")
	}
}

func TestKeyPairFiles(t *testing.T) {
	ca := newTestCA(t, "c1")
	certPEM, keyPEM, _, err := ca.IssueNodeCert("n1", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "pki")
	if _, _, err := LoadKeyPair(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadKeyPair on empty dir: %v, want ErrNotExist", err)
	}
	if err := WriteKeyPair(dir, certPEM, keyPEM); err != nil {
		t.Fatalf("WriteKeyPair: %v", err)
	}
	if err := WriteCACert(dir, ca.CertPEM()); err != nil {
		t.Fatalf("WriteCACert: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", fi.Mode().Perm())
	}
	c, k, err := LoadKeyPair(dir)
	if err != nil || !bytes.Equal(c, certPEM) || !bytes.Equal(k, keyPEM) {
		t.Fatalf("LoadKeyPair mismatch (err %v)", err)
	}
	cert, pool, err := LoadNodeTLS(dir)
	if err != nil {
		t.Fatalf("LoadNodeTLS: %v", err)
	}
	if len(cert.Certificate) != 2 || cert.Leaf == nil || pool == nil {
		t.Fatalf("LoadNodeTLS chain %d leaf %v", len(cert.Certificate), cert.Leaf)
	}
	other := newTestCA(t, "c2")
	if _, err := TLSCertificate(certPEM, other.KeyPEM(), ca.CertPEM()); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("TLSCertificate with foreign key: %v, want ErrKeyMismatch", err)
	}
}
