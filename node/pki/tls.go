package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
)

// ServerTLS returns the configuration of a node's listener on the cluster
// port. It presents cert (whose chain should include the CA, see
// TLSCertificate, so that joiners can pin it), requires TLS 1.3, and
// verifies a client certificate against caPool when one is given. A client
// without a certificate is let through because a joining node has none yet:
// the RPC layer must refuse every call but the join when PeerNodeID reports
// false. A client whose certificate serial isRevoked reports true is refused
// during the handshake (ErrRevoked). isRevoked may be nil (nothing revoked);
// it is called on every handshake from many goroutines, so it must be safe
// for concurrent use and fast (a lookup in an in-memory set).
func ServerTLS(cert tls.Certificate, caPool *x509.CertPool, isRevoked func(serial string) bool) *tls.Config {
	return NewSource(cert, caPool).ServerTLS(isRevoked)
}

// ClientTLS returns the configuration a node uses to dial another node's
// cluster port: TLS 1.3, the server verified against caPool under the name
// "shoal" (node certificates carry it; nodes are dialled by IP), and cert
// always presented as the client certificate.
func ClientTLS(cert tls.Certificate, caPool *x509.CertPool) *tls.Config {
	return NewSource(cert, caPool).ClientTLS()
}

// JoinTLS returns the configuration a joining node uses to dial the cluster
// port with only a token. It presents no client certificate. Standard
// verification is off (the joiner has no CA yet) and replaced by pinning:
// the server must send its chain including the CA certificate; the last
// certificate of the chain must be a CA whose Fingerprint equals
// caFingerprint (case-insensitive), and the leaf must verify against that
// CA for server auth under the name "shoal". Any failure aborts the
// handshake with an error wrapping ErrCAMismatch (or ErrNoPeerCertificate).
func JoinTLS(caFingerprint string) *tls.Config {
	want := strings.ToLower(strings.TrimSpace(caFingerprint))
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		ServerName:         ServerName,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, want)
		},
	}
}

// verifyPinned checks a server chain against a pinned CA fingerprint; see JoinTLS.
func verifyPinned(chain []*x509.Certificate, want string) error {
	if len(chain) == 0 {
		return fmt.Errorf("join: %w", ErrNoPeerCertificate)
	}
	if len(chain) < 2 {
		return fmt.Errorf("join: %w: the server sent no CA certificate after its own %q", ErrCAMismatch, chain[0].Subject.CommonName)
	}
	root := chain[len(chain)-1]
	if got := Fingerprint(root.Raw); got != want {
		return fmt.Errorf("join: %w: server CA %q has fingerprint %s, the token expects %s (is this the right cluster, or was the token rotated?)",
			ErrCAMismatch, root.Subject.CommonName, got, want)
	}
	if !root.IsCA || !root.BasicConstraintsValid {
		return fmt.Errorf("join: %w: pinned certificate %q is not a CA", ErrCAMismatch, root.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain[1 : len(chain)-1] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		DNSName:       ServerName,
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("join: %w: server certificate does not verify against the pinned CA: %w", ErrCAMismatch, err)
	}
	return nil
}

// PeerNodeID returns the node ID (common name) of the peer's certificate
// when the handshake verified one against the cluster CA, and false for a
// peer without a certificate (a joiner). Use it on the server side of a
// ServerTLS connection, after the handshake.
func PeerNodeID(state tls.ConnectionState) (string, bool) {
	if !state.HandshakeComplete || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := state.VerifiedChains[0][0]
	if leaf.Subject.CommonName == "" || !slices.Contains(leaf.Subject.OrganizationalUnit, NodeOU) {
		return "", false
	}
	return leaf.Subject.CommonName, true
}

// ServerNodeID is PeerNodeID for the dialling side of a connection made
// with ClientTLS (or a Source's ClientTLS): those configurations verify the
// server's chain themselves in VerifyConnection, against the trusted CAs of
// the moment, so crypto/tls leaves VerifiedChains empty; a completed
// handshake means the leaf was verified.
func ServerNodeID(state tls.ConnectionState) (string, bool) {
	if id, ok := PeerNodeID(state); ok {
		return id, true
	}
	if !state.HandshakeComplete || len(state.PeerCertificates) == 0 {
		return "", false
	}
	leaf := state.PeerCertificates[0]
	if leaf.Subject.CommonName == "" || !slices.Contains(leaf.Subject.OrganizationalUnit, NodeOU) {
		return "", false
	}
	return leaf.Subject.CommonName, true
}

// AnonymousClientTLS returns the configuration a node uses to dial a cluster
// port without presenting its certificate: for the one question a node whose
// certificate may have been revoked can still ask ("was I removed?"), since a
// revoked certificate is refused during the handshake. The server is
// verified against caPool under the name "shoal", as ClientTLS does; then,
// when checkServer is not nil, its verified leaf certificate is passed to it
// and an error aborts the handshake. The server sees a client without a
// certificate: PeerNodeID reports false, so every RPC method that needs an
// identity refuses the call.
func AnonymousClientTLS(caPool *x509.CertPool, checkServer func(leaf *x509.Certificate) error) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    caPool,
		ServerName: ServerName,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("anonymous client: %w", ErrNoPeerCertificate)
			}
			if checkServer == nil {
				return nil
			}
			return checkServer(cs.PeerCertificates[0])
		},
	}
}
