package consensus

import (
	"slices"
	"time"
)

// ClusterState is the singleton cluster record kept in Raft. It holds the
// cluster secrets, so it is never returned by the HTTP API as is.
type ClusterState struct {
	ClusterID string `json:"cluster_id"`
	// CACertPEM is the cluster CA certificate (the one new certificates
	// are issued by).
	CACertPEM []byte `json:"ca_cert_pem"`
	// CAKeyPEM is the CA key in the clear, as clusters made before sealing
	// stored it. The leader migrates it to CAKeySealed (SealClusterKeys);
	// nothing writes it any more.
	CAKeyPEM []byte `json:"ca_key_pem,omitempty"`
	// TokenSecretHash is the hex sha256 of the join token's secret part;
	// the leader compares hashes in constant time.
	TokenSecretHash string `json:"token_secret_hash"`
	// TokenSecret is the secret in the clear, as clusters made before
	// sealing stored it; migrated to TokenSecretSealed like CAKeyPEM.
	TokenSecret string `json:"token_secret,omitempty"`

	// KEKID names the key-encryption key that opens the sealed fields
	// below (node/pki KEKID). Only voters hold the key itself, in their
	// data directory; every node stores the ciphertext.
	KEKID string `json:"kek_id,omitempty"`
	// CAKeySealed is the CA private key (PEM) sealed with the KEK.
	CAKeySealed []byte `json:"ca_key_sealed,omitempty"`
	// TokenSecretSealed is the join secret sealed with the KEK, so that
	// voters can print the token; other nodes ask a voter.
	TokenSecretSealed []byte `json:"token_secret_sealed,omitempty"`
	// CAFingerprint is the fingerprint of CACertPEM (node/pki
	// Fingerprint), given by the proposer: the FSM only compares it.
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
	// PrevCACertPEM is the CA being replaced while a CA rotation is under
	// way: every node still trusts it. Empty otherwise.
	PrevCACertPEM []byte `json:"prev_ca_cert_pem,omitempty"`
	// CACrossPEM is CACertPEM cross-signed by PrevCACertPEM during a
	// rotation: nodes present it so that peers trusting only the previous
	// CA accept the new certificates.
	CACrossPEM []byte `json:"ca_cross_pem,omitempty"`
	// RotationPending lists the nodes that have no certificate from the
	// current CA yet, during a rotation (sorted).
	RotationPending []string `json:"rotation_pending,omitempty"`
	// GossipKeys is the memberlist keyring; the first key is the primary.
	GossipKeys [][]byte `json:"gossip_keys"`
	// Revoked lists revoked node certificate serials (as printed by
	// big.Int.String or hex; consensus only compares strings), in the
	// order they were revoked.
	Revoked []string `json:"revoked,omitempty"`
	// CertExpiry is the NotAfter of node certificates the leader signed,
	// by serial, recorded with each (consensus/fsm/command
	// RecordCertExpiry, protocol level 2; empty in logs before it). A
	// revoked certificate that has expired is refused by every handshake
	// anyway, so TrimRevoked drops its serial from Revoked and from here
	// (ExpiredCerts). A revoked serial without an entry — revoked before
	// expiries were recorded, or the serial a node held when it was
	// removed (RemoveNode forgets its expiry) — gets one from the next
	// TrimRevoked that carries UnknownUntil: the leader's clock plus the
	// longest certificate lifetime it knows, which the certificate cannot
	// outlive. The removal question (node/revocation) is answered from a
	// removed node's serial until then.
	CertExpiry map[string]time.Time `json:"cert_expiry,omitempty"`
	// LastRemovalIndex is the Raft index of the last committed RemoveNode:
	// every node rotates its WireGuard key once per removal, keyed to
	// this index (node/netloop/wgkeys.go).
	LastRemovalIndex uint64 `json:"last_removal_index,omitempty"`
	// ClusterCIDR is the pool node subnets (/24) are allocated from.
	ClusterCIDR string `json:"cluster_cidr"`
	// VIPCIDR is the pool service VIPs are allocated from.
	VIPCIDR string `json:"vip_cidr"`
	// NextVIP is the host offset in VIPCIDR where the next VIP search starts.
	NextVIP uint32 `json:"next_vip"`
	// NextSubnet is the /24 index in ClusterCIDR where the next subnet search starts.
	NextSubnet uint32 `json:"next_subnet"`
	// Epoch counts the --force-new-cluster recoveries of this cluster (see
	// epoch.go, consensus/fsm SetClusterEpoch); 0 until the first one.
	Epoch uint64 `json:"epoch,omitempty"`
	// VoterTarget is the number of voters autopilot last aimed for (informational).
	VoterTarget int       `json:"voter_target"`
	CreatedAt   time.Time `json:"created_at"`
}

// IsRevoked reports whether a certificate serial is in the revocation list:
// a scan of the list, for the FSM's writes and copies of the record;
// Store.IsRevoked, which handshakes call, looks it up in a set.
func (c *ClusterState) IsRevoked(serial string) bool {
	if c == nil || serial == "" {
		return false
	}
	for _, s := range c.Revoked {
		if s == serial {
			return true
		}
	}
	return false
}

// ExpiredCerts lists, sorted, the serials of c.CertExpiry whose
// certificate expired before before: TrimRevoked drops each from
// CertExpiry, and from Revoked where it is there. A serial that current
// reports (a node's recorded certificate) and that is not revoked keeps
// its entry, so that its revocation, when it comes, knows its expiry.
// Pure: the FSM's trim and the leader's decision to propose one share it.
func (c *ClusterState) ExpiredCerts(before time.Time, current func(serial string) bool) []string {
	if c == nil {
		return nil
	}
	var out []string
	for s, notAfter := range c.CertExpiry {
		if !notAfter.Before(before) {
			continue
		}
		if current(s) && !c.IsRevoked(s) {
			continue
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
