// Package pki holds Shoal's cluster certificate authority, node certificates,
// the join token and the TLS configurations of the cluster port (2377).
//
// Why it looks like this:
//
//   - `shoal init` creates a CA (ECDSA P-256, ten years) and issues the first
//     node certificate with [CA.IssueNodeCert].
//   - The join token carries the SHA-256 of the CA certificate (see
//     [Fingerprint]) and a random secret. A joining node has no certificate yet,
//     so it dials with [JoinTLS], which skips the usual WebPKI verification
//     but pins the CA by its fingerprint: the server must send its chain
//     including the CA certificate, the last certificate of that chain must hash
//     to the token's fingerprint, and the leaf must verify against it.
//   - The leader checks the secret against the stored hash ([VerifySecret]),
//     signs the joiner's CSR ([CA.SignCSR]) forcing the common name to the node
//     ID, and from then on every connection is mutual TLS ([ServerTLS],
//     [ClientTLS]). The server accepts connections without a client
//     certificate only so that the join call works; the RPC layer must call
//     [PeerNodeID] and refuse everything but the join call when it reports
//     false.
//   - Revocation is a set of certificate serials kept in Raft; [ServerTLS]
//     consults it on every handshake.
//   - The CA key and the join secret are replicated sealed ([Seal]) with a
//     key-encryption key only voters hold; non-voters see ciphertext.
//   - Node certificates are short-lived (30 days by default) and renew
//     themselves between 1/2 and 2/3 of their lifetime ([RenewalTime]); a
//     [Source] swaps them into live TLS configurations without a restart.
//   - A CA rotation cross-signs the new CA with the old one ([CA.CrossSign]):
//     nodes that still trust only the old CA verify new certificates through
//     the cross-signed intermediate, so no node is ever locked out mid-way.
//
// Serials are lower-case hexadecimal without leading zeros ([Serial]).
// Fingerprints are lower-case base32 (RFC 4648 standard alphabet) without
// padding: 52 characters.
package pki

import "errors"

// Sentinel errors. Functions wrap them with context; test with errors.Is.
var (
	// ErrMalformedToken means a join token does not have the form
	// SHOAL-1-<fingerprint>-<secret>: wrong prefix, unknown version, wrong
	// lengths or characters outside the base32 alphabet.
	ErrMalformedToken = errors.New("malformed join token")
	// ErrCAMismatch means the server of a join presented a CA certificate
	// whose fingerprint is not the one in the token, or a chain that does
	// not verify against it: it is not the cluster the token belongs to.
	ErrCAMismatch = errors.New("server CA does not match the join token")
	// ErrRevoked means the peer's certificate serial is on the revocation list.
	ErrRevoked = errors.New("certificate revoked")
	// ErrNodeIDMismatch means a CSR asks for a common name other than the
	// node ID the leader assigned.
	ErrNodeIDMismatch = errors.New("CSR common name does not match node ID")
	// ErrBadCSR means a CSR could not be decoded, its signature is wrong or
	// its key type is not ECDSA P-256.
	ErrBadCSR = errors.New("invalid certificate signing request")
	// ErrBadPEM means PEM input did not hold the expected block.
	ErrBadPEM = errors.New("invalid PEM data")
	// ErrKeyMismatch means a private key does not belong to its certificate.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrNotCA means a certificate given as the CA is not a CA certificate.
	ErrNotCA = errors.New("certificate is not a CA")
	// ErrNoPeerCertificate means the server sent no certificate during a join.
	ErrNoPeerCertificate = errors.New("peer sent no certificate")
	// ErrUnseal means a sealed blob could not be opened: wrong
	// key-encryption key, wrong purpose, or corrupted data.
	ErrUnseal = errors.New("cannot open sealed data")
	// ErrNotRejoin means a node asked for an existing node ID without
	// proving it holds that node's key (a certificate of this cluster for
	// the ID and a CSR signed by the same key).
	ErrNotRejoin = errors.New("no proof of the node ID's key")
)
