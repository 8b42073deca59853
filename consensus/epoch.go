package consensus

// Why: --force-new-cluster rewrites one survivor's raft configuration so
// that it is the only voter. The voters it gave up on still hold the old
// configuration on disk. When they return they can elect a leader among
// themselves (two of the old three), and since the survivor is a voter of
// their configuration, their higher terms make it step down and follow them:
// its acknowledged writes are truncated away and two histories run side by
// side. Terms cannot tell the two configurations apart; an epoch can.
//
// The epoch is a counter that every --force-new-cluster raises above what
// the node recorded locally and what its state holds (NextEpoch). A node
// keeps its epoch in a file beside the raft directory, advertises it in
// gossip and presents it on every raft connection; the cluster record keeps
// it too (SetClusterEpoch), so the next recovery starts above it. Raft
// traffic only flows between nodes of the same epoch: a node of an older
// epoch cannot reach the recovered node's raft at all, so neither its
// RequestVote nor its AppendEntries can disturb it. A node that meets a
// newer epoch knows it is fenced (CompareEpochs): node drops its raft
// state and is admitted again by the recovered leader, keeping its identity.

import "fmt"

// EpochVerdict is what a node concludes from a peer's epoch.
type EpochVerdict int

const (
	// EpochSame: the peer belongs to the same raft configuration lineage.
	EpochSame EpochVerdict = iota
	// EpochPeerStale: the peer has an older epoch; refuse its raft traffic
	// and do not count it as a member until it re-joins.
	EpochPeerStale
	// EpochSelfStale: the peer has a newer epoch, so a --force-new-cluster
	// happened without this node: it is fenced and must re-join.
	EpochSelfStale
)

func (v EpochVerdict) String() string {
	switch v {
	case EpochSame:
		return "same"
	case EpochPeerStale:
		return "peer-stale"
	case EpochSelfStale:
		return "self-stale"
	default:
		return fmt.Sprintf("EpochVerdict(%d)", int(v))
	}
}

// CompareEpochs judges a peer's epoch against this node's.
func CompareEpochs(local, peer uint64) EpochVerdict {
	switch {
	case peer == local:
		return EpochSame
	case peer < local:
		return EpochPeerStale
	default:
		return EpochSelfStale
	}
}

// NextEpoch is the epoch a --force-new-cluster starts: above both the
// epoch this node recorded locally and the one its state holds (either may
// be behind: a lost file, a record not yet written).
func NextEpoch(local, recorded uint64) uint64 {
	return max(local, recorded) + 1
}
