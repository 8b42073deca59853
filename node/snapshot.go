package node

// Backups: `shoal snapshot save FILE`, `shoal snapshot restore FILE` and
// `shoal init --from-snapshot FILE` (the file format and the merge rules are
// in consensus/snapshotfile.go).
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
// with raft's user-snapshot restore, which followers receive as a snapshot.
// The reconcilers then converge: tasks of services that are not in the file
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
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/wire"
)

// maxSnapshotBytes bounds a snapshot file an agent accepts.
const maxSnapshotBytes = handlers.MaxSnapshotBytes

// snapshotBodyTimeout bounds reading a forwarded file from a peer.
const snapshotBodyTimeout = time.Minute

// restoreMu serializes restores on one leader.
var restoreMu sync.Mutex

// snapshotAgent is the agent as node/handlers' snapshot routes see it.
type snapshotAgent struct{ replicaAgent }

var _ handlers.Snapshots = snapshotAgent{}

func (x snapshotAgent) LocalWriteAllowed() error {
	cl, err := x.a.clusterOrErr()
	if err != nil {
		return err
	}
	return x.a.localWriteAllowed(cl)
}

// Restore has the leader restore f: this node when it leads, else the
// leader it forwards raw to over the cluster port.
func (x snapshotAgent) Restore(ctx context.Context, raw []byte, f *consensus.SnapshotFile, force bool) (api.SnapshotRestoreResponse, error) {
	a := x.a
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	var resp api.SnapshotRestoreResponse
	err = a.forwardToLeader(ctx, cl, func(ctx context.Context, addr string) error {
		if cl.raft.IsLeader() {
			var err error
			resp, err = a.restoreAsLeader(ctx, cl, f, force, a.id.NodeID)
			return err
		}
		return callSnapshotRestoreRPC(ctx, addr, cl.client, wire.SnapshotRestoreRequest{Force: force, Size: int64(len(raw))}, raw, &resp)
	})
	return resp, err
}

func (x snapshotAgent) NotInCluster() error {
	if cl, err := x.a.clusterOrErr(); err == nil {
		return fmt.Errorf("%w %s: run `shoal leave` first", ErrAlreadyInCluster, cl.id)
	}
	return nil
}

// InitFrom is `shoal init --from-snapshot` once the file is verified: init,
// then the restore onto the new cluster. A failed restore leaves no
// half-made cluster behind.
func (x snapshotAgent) InitFrom(ctx context.Context, f *consensus.SnapshotFile) (api.InitFromSnapshotResponse, error) {
	a := x.a
	if _, err := a.initCluster(ctx, f); err != nil {
		return api.InitFromSnapshotResponse{}, err
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return api.InitFromSnapshotResponse{}, err
	}
	restored, err := a.restoreAsLeader(ctx, cl, f, true, a.id.NodeID)
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

// restoreAsLeader merges f into this leader's state and installs it. by is
// the node whose API socket asked (for the log).
func (a *Agent) restoreAsLeader(ctx context.Context, cl *cluster, f *consensus.SnapshotFile, force bool, by string) (api.SnapshotRestoreResponse, error) {
	restoreMu.Lock()
	defer restoreMu.Unlock()
	if !cl.raft.IsLeader() {
		return api.SnapshotRestoreResponse{}, ErrNotLeader
	}
	// Every acknowledged write is in the state the plan merges with.
	if err := cl.raft.Barrier(ctx); err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	plan, err := consensus.PlanRestore(f, cl.store.Snapshot(), force)
	if err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	if err := cl.raft.RestoreSnapshot(ctx, plan); err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	resp := api.SnapshotRestoreResponse{
		ClusterID: cl.id, FileClusterID: f.Header.ClusterID, Index: cl.store.Index(),
		Services: plan.Services, DroppedNodes: plan.DroppedNodes, DroppedTasks: plan.DroppedTasks,
	}
	if resp.Services == nil {
		resp.Services = []string{}
	}
	if resp.DroppedNodes == nil {
		resp.DroppedNodes = []string{}
	}
	a.log.Warn("cluster state restored from a snapshot file", "file_cluster_id", f.Header.ClusterID,
		"file_index", f.Header.Index, "index", resp.Index, "services", len(plan.Services),
		"dropped_nodes", plan.DroppedNodes, "by", shortID(by))
	return resp, nil
}

// callSnapshotRestoreRPC sends the file to the leader at addr: the request
// line, then the raw file, then it reads the one answer line.
func callSnapshotRestoreRPC(ctx context.Context, addr string, cfg *tls.Config, req wire.SnapshotRestoreRequest, raw []byte, out *api.SnapshotRestoreResponse) error {
	conn, err := dialProto(addr, dialTimeout, cfg, protoRPC)
	if err != nil {
		return &clusterport.DialError{Err: fmt.Errorf("connect to %s: %w", addr, err)}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	body, _ := json.Marshal(req)
	line, _ := json.Marshal(wire.Request{Method: wire.MethodSnapshotRestore, Body: body})
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("send snapshot to %s: %w", addr, err)
	}
	if _, err := conn.Write(raw); err != nil {
		return fmt.Errorf("send snapshot to %s: %w", addr, err)
	}
	answer, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("read restore answer from %s: %w", addr, err)
	}
	var resp wire.Response
	if err := json.Unmarshal(answer, &resp); err != nil {
		return fmt.Errorf("malformed restore answer from %s: %w", addr, err)
	}
	if resp.Error != "" {
		return &wire.Error{Code: resp.Code, Msg: resp.Error}
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return fmt.Errorf("decode restore answer from %s: %w", addr, err)
	}
	return nil
}

// serveSnapshotRestoreRPC is wire.MethodSnapshotRestore on the leader. Callers: a
// manager node (as for every admin action; workers' sockets are read-only),
// for a user on its API socket. The file is verified again here.
func (a *Agent) serveSnapshotRestoreRPC(ctx context.Context, call *clusterport.Call) {
	cl, err := a.clusterOrErr()
	if err != nil {
		_ = call.Reply(nil, err)
		return
	}
	if c, _ := callerOf(cl, authz.Admin, call.PeerID); c.Worker {
		_ = call.Reply(nil, fmt.Errorf("%w: node %s is a worker: workers cannot restore the cluster", authz.ErrWorker, shortID(call.PeerID)))
		return
	}
	if !cl.raft.IsLeader() {
		_ = call.Reply(nil, ErrNotLeader)
		return
	}
	var req wire.SnapshotRestoreRequest
	if err := json.Unmarshal(call.Req.Body, &req); err != nil || req.Size <= 0 || req.Size > maxSnapshotBytes {
		_ = call.Reply(nil, &wire.Error{Code: wire.CodeRefused, Msg: "malformed snapshot restore request"})
		return
	}
	_ = call.Conn.SetReadDeadline(time.Now().Add(snapshotBodyTimeout))
	f, err := consensus.ReadSnapshotFile(io.LimitReader(call.R, req.Size), maxSnapshotBytes)
	_ = call.Conn.SetReadDeadline(time.Time{})
	if err != nil {
		_ = call.Reply(nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("snapshot file refused, nothing changed: %v", err)})
		return
	}
	resp, err := a.restoreAsLeader(ctx, cl, f, req.Force, call.PeerID)
	_ = call.Reply(resp, err)
}

// snapshotPools returns the address pools of a seed file's cluster (empty
// when none or no file), which a cluster made from it keeps so that the
// restored VIPs stay inside its pool.
func snapshotPools(f *consensus.SnapshotFile) (clusterCIDR, vipCIDR string) {
	if f == nil || f.Cluster() == nil {
		return "", ""
	}
	return f.Cluster().ClusterCIDR, f.Cluster().VIPCIDR
}
