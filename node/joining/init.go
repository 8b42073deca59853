package joining

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
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

// BootstrapRaft is the part of a new cluster's Raft that Bootstrap uses.
type BootstrapRaft interface {
	IsLeader() bool
	Apply(ctx context.Context, cmd command.Command) (any, error)
}

// Bootstrap waits (up to 15 s) for the single-voter Raft r of a new
// cluster to elect this node, then writes the cluster record and the first
// node that NewCluster returned.
func Bootstrap(ctx context.Context, r BootstrapRaft, record consensus.ClusterState, node api.Node) error {
	deadline := time.Now().Add(15 * time.Second)
	for !r.IsLeader() {
		if time.Now().After(deadline) {
			return errors.New("bootstrap: this node did not become raft leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := r.Apply(wctx, &command.BootstrapCluster{Cluster: record, Node: node})
	if err != nil {
		return fmt.Errorf("bootstrap: write cluster record: %w", err)
	}
	return nil
}
