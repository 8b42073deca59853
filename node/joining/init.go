package joining

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
)

// Init is a new cluster as `shoal init` makes it, with Self as its only
// member.
type Init struct {
	ClusterID string // drawn by the caller
	Self      Self
	// Dir is DATA/cluster, which must not exist yet.
	Dir string
	// CertLifetime is the lifetime of Self's first certificate.
	CertLifetime time.Duration
	// ClusterCIDR and VIPCIDR are the new cluster's address pools.
	ClusterCIDR, VIPCIDR string
}

// NewCluster makes the cluster in: a new CA, Self's certificate, a gossip
// key, the KEK and a sealed join secret. It writes the cluster files and
// the KEK under in.Dir (the directory is removed again when the KEK cannot
// be written) and returns the bootstrap record and Self's record as a
// voter, which the caller proposes once Raft has elected Self.
func NewCluster(in Init, now time.Time) (consensus.ClusterState, api.Node, error) {
	ca, err := pki.NewCA(in.ClusterID, now)
	if err != nil {
		return consensus.ClusterState{}, api.Node{}, fmt.Errorf("create cluster CA: %w", err)
	}
	certPEM, keyPEM, serial, err := ca.IssueNodeCertFor(in.Self.NodeID, []net.IP{net.ParseIP(in.Self.Addr)}, now, in.CertLifetime)
	if err != nil {
		return consensus.ClusterState{}, api.Node{}, fmt.Errorf("issue node certificate: %w", err)
	}
	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		return consensus.ClusterState{}, api.Node{}, err
	}
	kek := pki.NewKEK()
	record, err := keyring.SealedRecord(in.ClusterID, ca, pki.NewSecret(), kek)
	if err != nil {
		return consensus.ClusterState{}, api.Node{}, err
	}
	if err := WriteClusterFiles(in.Dir, in.ClusterID, certPEM, keyPEM, ca.CertPEM(), [][]byte{gossipKey}, nil); err != nil {
		return consensus.ClusterState{}, api.Node{}, err
	}
	if err := keyring.SaveKEK(in.Dir, kek); err != nil {
		_ = os.RemoveAll(in.Dir)
		return consensus.ClusterState{}, api.Node{}, err
	}
	node := SelfNode(in.Self, HostResources(), now, serial)
	node.Voter = true
	record.GossipKeys = [][]byte{gossipKey}
	record.ClusterCIDR = in.ClusterCIDR
	record.VIPCIDR = in.VIPCIDR
	record.VoterTarget = 1
	record.CreatedAt = now
	return record, node, nil
}
