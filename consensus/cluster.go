package consensus

import "time"

// ClusterState is the singleton cluster record kept in Raft. It holds the
// cluster secrets, so it is never returned by the HTTP API as is.
type ClusterState struct {
	ClusterID string `json:"cluster_id"`
	// CACertPEM and CAKeyPEM are the cluster CA; the leader signs node CSRs
	// with the key.
	CACertPEM []byte `json:"ca_cert_pem"`
	CAKeyPEM  []byte `json:"ca_key_pem"`
	// TokenSecretHash is the hex sha256 of the join token's secret part.
	TokenSecretHash string `json:"token_secret_hash"`
	// TokenSecret is the secret itself, so that any node can print the
	// token (`shoal token`); the Raft log already holds the CA key.
	TokenSecret string `json:"token_secret,omitempty"`
	// GossipKeys is the memberlist keyring; the first key is the primary.
	GossipKeys [][]byte `json:"gossip_keys"`
	// Revoked lists revoked node certificate serials (as printed by
	// big.Int.String or hex; consensus only compares strings).
	Revoked []string `json:"revoked,omitempty"`
	// ClusterCIDR is the pool node subnets (/24) are allocated from.
	ClusterCIDR string `json:"cluster_cidr"`
	// VIPCIDR is the pool service VIPs are allocated from.
	VIPCIDR string `json:"vip_cidr"`
	// NextVIP is the host offset in VIPCIDR where the next VIP search starts.
	NextVIP uint32 `json:"next_vip"`
	// NextSubnet is the /24 index in ClusterCIDR where the next subnet search starts.
	NextSubnet uint32 `json:"next_subnet"`
	// Epoch counts the --force-new-cluster recoveries of this cluster (see
	// epoch.go); 0 until the first one.
	Epoch uint64 `json:"epoch,omitempty"`
	// VoterTarget is the number of voters autopilot last aimed for (informational).
	VoterTarget int       `json:"voter_target"`
	CreatedAt   time.Time `json:"created_at"`
}

// IsRevoked reports whether a certificate serial is in the revocation list.
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
