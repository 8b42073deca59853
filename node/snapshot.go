package node

// Backups: `shoal snapshot save FILE`, `shoal snapshot restore FILE` and
// `shoal init --from-snapshot FILE` (the file format and the merge rules are
// in consensus/snapshotfile/snapshotfile.go).
//
// Save. Any node answers: it first catches its replica up with the leader's
// read index (syncReplica: a barrier on the leader, then waiting for that
// index here), so the file holds every write acknowledged before the save
// began, then writes one point-in-time view of its store. The state is the
// same on every node; only its freshness differs, and the read index fixes
// that without shipping the whole state from the leader.
//
// Restore. The node that got the file verifies it whole (format, size,
// checksum) and the cluster ID before anything else; then the leader (the
// file travels to it over the cluster port, and is verified again there)
// merges it with the running cluster (PlanRestore) and installs the result
// with raft's user-snapshot restore, which followers receive as a snapshot
// (node/writes restore.go). The reconcilers then converge: tasks of services that are not in the file
// lose their record and every node removes their containers; services of
// the file get their missing tasks from the scheduler; tasks that kept
// running since the save are left alone.
//
// Init from a snapshot. A new cluster with a new identity: new cluster ID,
// CA, key-encryption key, join token and gossip key, made exactly as `init`
// makes them. The file is not trusted to carry an identity: it has no KEK
// (a voter's DATA/cluster/kek never leaves the node), so its sealed CA key
// and join secret could not be opened anyway, and a cluster that kept the
// old CA would let the old nodes' certificates in without a token. Old nodes
// re-join with the new token (after `shoal leave`, or with a fresh data
// dir). The file's services, images (records; each node needs the blobs
// again, from a peer or an import) and address pools become the new
// cluster's; its nodes and tasks are dropped and the scheduler places the
// services on the nodes that join.

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
	"github.com/shoal-org/shoal/node/handlers"
)

// snapshotAgent is the agent as node/handlers' snapshot routes see it.
type snapshotAgent struct{ replicaAgent }

var _ handlers.Snapshots = snapshotAgent{}

func (x snapshotAgent) LocalWriteAllowed() error {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return err
	}
	return cl.Writer().LocalWriteAllowed()
}

// Restore has the leader restore f: this node when it leads, else the
// leader it forwards raw to over the cluster port (writes.Writer.Restore).
func (x snapshotAgent) Restore(ctx context.Context, raw []byte, f *snapshotfile.File, force bool) (api.SnapshotRestoreResponse, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	return cl.Writer().Restore(ctx, raw, f, force)
}

func (x snapshotAgent) NotInCluster() error {
	if cl, err := x.a.clusterOrErr(); err == nil {
		return fmt.Errorf("%w %s: run `shoal leave` first", ErrAlreadyInCluster, cl.ID)
	}
	return nil
}

// InitFrom is `shoal init --from-snapshot` once the file is verified: init,
// then the restore onto the new cluster. A failed restore leaves no
// half-made cluster behind.
func (x snapshotAgent) InitFrom(ctx context.Context, f *snapshotfile.File) (api.InitFromSnapshotResponse, error) {
	a := x.a
	if _, err := a.initCluster(ctx, f); err != nil {
		return api.InitFromSnapshotResponse{}, err
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.InitFromSnapshotResponse{}, err
	}
	restored, err := cl.Writer().RestoreAsLeader(ctx, f, true, a.id.NodeID)
	if err != nil {
		if derr := a.dropCluster(context.WithoutCancel(ctx), false); derr != nil {
			err = errors.Join(err, derr)
		}
		return api.InitFromSnapshotResponse{}, fmt.Errorf("init from snapshot: %w (the new cluster was removed again)", err)
	}
	init, err := a.tokenResponse(ctx)
	if err != nil {
		return api.InitFromSnapshotResponse{}, err
	}
	return api.InitFromSnapshotResponse{InitResponse: init, Restore: restored}, nil
}

// snapshotPools returns the address pools of a seed file's cluster (empty
// when none or no file), which a cluster made from it keeps so that the
// restored VIPs stay inside its pool.
func snapshotPools(f *snapshotfile.File) (clusterCIDR, vipCIDR string) {
	if f == nil || f.Cluster() == nil {
		return "", ""
	}
	return f.Cluster().ClusterCIDR, f.Cluster().VIPCIDR
}
