package pki

// A Source holds a node's current TLS identity (certificate chain and key)
// and trust pool, and hands out TLS configurations that read it on every
// handshake. Renewal and CA rotation call Set; connections opened after
// that use the new certificate and pool, connections already open keep
// theirs. Nothing restarts.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/shoal-org/shoal/api/atomicfile"
)

// CrossFile holds the current CA cross-signed by the previous one while a
// CA rotation is under way (see CA.CrossSign); it is absent otherwise.
const CrossFile = "ca-cross.crt"

// Source is a hot-swappable TLS identity. It is safe for concurrent use.
type Source struct {
	cur atomic.Pointer[tlsMaterial]
}

type tlsMaterial struct {
	cert tls.Certificate
	pool *x509.CertPool
}

// NewSource returns a Source presenting cert and trusting pool.
func NewSource(cert tls.Certificate, pool *x509.CertPool) *Source {
	s := &Source{}
	s.Set(cert, pool)
	return s
}

// Set replaces the certificate and the pool for every later handshake.
func (s *Source) Set(cert tls.Certificate, pool *x509.CertPool) {
	s.cur.Store(&tlsMaterial{cert: cert, pool: pool})
}

// Certificate returns the current certificate (chain, key, Leaf).
func (s *Source) Certificate() tls.Certificate { return s.cur.Load().cert }

// Pool returns the current trust pool.
func (s *Source) Pool() *x509.CertPool { return s.cur.Load().pool }

// ServerTLS is like the package function ServerTLS, reading the Source's
// current certificate and pool on every handshake.
func (s *Source) ServerTLS(isRevoked func(serial string) bool) *tls.Config {
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil // joining node; the RPC layer gates it
		}
		if len(cs.VerifiedChains) == 0 {
			// Unreachable with VerifyClientCertIfGiven; be explicit anyway.
			return fmt.Errorf("client certificate %s not verified", cs.PeerCertificates[0].Subject.CommonName)
		}
		leaf := cs.PeerCertificates[0]
		if isRevoked != nil && isRevoked(Serial(leaf)) {
			return fmt.Errorf("client node %s serial %s: %w", leaf.Subject.CommonName, Serial(leaf), ErrRevoked)
		}
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			return &tls.Config{
				MinVersion:       tls.VersionTLS13,
				Certificates:     []tls.Certificate{m.cert},
				ClientCAs:        m.pool,
				ClientAuth:       tls.VerifyClientCertIfGiven,
				VerifyConnection: verify,
			}, nil
		},
	}
}

// ClientTLS is like the package function ClientTLS, reading the Source's
// current certificate and pool on every handshake. The server chain is
// verified by VerifyConnection against the current pool (the standard
// verifier would read a pool fixed when the config was made). It checks no
// revocation list; nodes use CheckedClientTLS.
func (s *Source) ClientTLS() *tls.Config { return s.CheckedClientTLS(nil) }

// CheckedClientTLS is ClientTLS that also refuses a server whose
// certificate serial isRevoked reports true (ErrRevoked), so that
// revocation holds on both ends of a mutual-TLS connection: a node removed
// with `node rm` that still listens with its old certificate is not
// trusted as a server either. isRevoked may be nil (nothing revoked); it is
// called on every handshake from many goroutines, so it must be safe for
// concurrent use and fast.
func (s *Source) CheckedClientTLS(isRevoked func(serial string) bool) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: ServerName,
		// Verification is done below against the pool of the moment.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyServerChain(cs.PeerCertificates, s.cur.Load().pool); err != nil {
				return err
			}
			leaf := cs.PeerCertificates[0]
			if isRevoked != nil && isRevoked(Serial(leaf)) {
				return fmt.Errorf("server node %s serial %s: %w", leaf.Subject.CommonName, Serial(leaf), ErrRevoked)
			}
			return nil
		},
		// Always send our certificate, even when the server's list of
		// acceptable CAs does not name our issuer, so that a node of another
		// cluster is refused loudly instead of being treated as a joiner.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := s.cur.Load().cert
			return &c, nil
		},
	}
}

func verifyServerChain(chain []*x509.Certificate, pool *x509.CertPool) error {
	if len(chain) == 0 {
		return ErrNoPeerCertificate
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		DNSName:       ServerName,
		Roots:         pool,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("server certificate %q: %w", chain[0].Subject.CommonName, err)
	}
	return nil
}

// ParseCertsPEM decodes every "CERTIFICATE" block of b, in order.
func ParseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != pemCertificate {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parse certificates: %w: no certificate", ErrBadPEM)
	}
	return out, nil
}

// EncodeCertsPEM encodes certificates as consecutive PEM blocks.
func EncodeCertsPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, encodeCert(c.Raw)...)
	}
	return out
}

// NodeTLS builds a node's TLS certificate and trust pool from its leaf
// certificate, its key, the trust bundle (the current CA first, then any CA
// still trusted during a rotation) and crossPEM, the current CA cross-signed
// by the previous one (empty outside a rotation).
//
// The presented chain is leaf, then — when the leaf was issued by the
// current CA and crossPEM is set — the cross-signed CA, then the leaf's
// issuer. Peers that trust only the previous CA verify leaf → cross → old
// root; peers that trust the current CA verify leaf → current root; a joiner
// pins the last certificate, which is the issuer itself.
func NodeTLS(certPEM, keyPEM, bundlePEM, crossPEM []byte) (tls.Certificate, *x509.CertPool, error) {
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("node TLS certificate: %w", err)
	}
	cas, err := ParseCertsPEM(bundlePEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("node TLS certificate %s: CA bundle: %w", leaf.Subject.CommonName, err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("node TLS certificate %s: %w", leaf.Subject.CommonName, err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return tls.Certificate{}, nil, fmt.Errorf("node TLS certificate %s: %w", leaf.Subject.CommonName, ErrKeyMismatch)
	}
	issuer := -1
	for i, ca := range cas {
		if leaf.CheckSignatureFrom(ca) == nil {
			issuer = i
			break
		}
	}
	if issuer < 0 {
		return tls.Certificate{}, nil, fmt.Errorf("node TLS certificate %s: %w: no CA of the bundle issued it", leaf.Subject.CommonName, ErrCAMismatch)
	}
	chain := [][]byte{leaf.Raw}
	if issuer == 0 && len(crossPEM) > 0 {
		if cross, err := ParseCertPEM(crossPEM); err == nil && bytes.Equal(cross.RawSubjectPublicKeyInfo, cas[0].RawSubjectPublicKeyInfo) {
			chain = append(chain, cross.Raw)
		}
	}
	chain = append(chain, cas[issuer].Raw)
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, pool, nil
}

// WriteTrust stores the trust bundle (CAFile) and the cross-signed CA
// (CrossFile; removed when crossPEM is empty) in dir.
func WriteTrust(dir string, bundlePEM, crossPEM []byte) error {
	if err := WriteCACert(dir, bundlePEM); err != nil {
		return err
	}
	p := filepath.Join(dir, CrossFile)
	if len(crossPEM) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove cross-signed CA: %w", err)
		}
		return nil
	}
	if err := atomicfile.WriteFile(p, crossPEM, 0o644); err != nil {
		return fmt.Errorf("write cross-signed CA: %w", err)
	}
	return nil
}

// LoadCross reads CrossFile from dir; a missing file is no error (nil).
func LoadCross(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, CrossFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}
