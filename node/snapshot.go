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
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/wire"
)

// maxSnapshotBytes bounds a snapshot file an agent accepts (body and
// header); the state of a 100-node cluster is a few MiB.
const maxSnapshotBytes = 256 << 20

// snapshotBodyTimeout bounds reading a forwarded file from a peer.
const snapshotBodyTimeout = time.Minute

// restoreMu serializes restores on one leader.
var restoreMu sync.Mutex

func (a *Agent) snapshotRoutes(h func(string, httpapi.HandlerFunc)) {
	h("GET /v1/snapshot", a.handleSnapshotSave)
	h("POST /v1/snapshot/restore", a.handleSnapshotRestore)
	h("POST /v1/init/snapshot", a.handleInitFromSnapshot)
}

// handleSnapshotSave answers the file itself; the summary travels in the
// api.SnapshotInfoHeader header, so the body is exactly the file.
func (a *Agent) handleSnapshotSave(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if err := a.syncReplica(r.Context(), cl); err != nil {
		return nil, fmt.Errorf("snapshot: catch up with the leader: %w", err)
	}
	view := cl.store.Snapshot()
	var buf bytes.Buffer
	hd, err := consensus.WriteSnapshotFile(view, &buf, time.Now())
	if err != nil {
		return nil, err
	}
	info := api.SnapshotInfo{
		Format: hd.Format, ClusterID: hd.ClusterID, Index: hd.Index, CreatedAt: hd.CreatedAt.Format(time.RFC3339),
		Size: hd.Size, SHA256: hd.SHA256,
		Nodes: len(view.Nodes()), Services: len(view.Services()), Tasks: len(view.Tasks()),
	}
	b, _ := json.Marshal(info)
	w.Header().Set(api.SnapshotInfoHeader, string(b))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	a.log.Info("snapshot saved", "index", hd.Index, "bytes", buf.Len())
	return httpapi.Streamed, nil
}

// readSnapshotBody reads a whole uploaded snapshot file (bounded) and
// verifies it. Nothing has changed when it fails.
func readSnapshotBody(r io.Reader) ([]byte, *consensus.SnapshotFile, error) {
	raw, err := io.ReadAll(httpapi.CapReader(r, maxSnapshotBytes))
	if errors.Is(err, httpapi.ErrBodyTooLarge) {
		return nil, nil, &httpError{status: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("snapshot file larger than %d MiB", maxSnapshotBytes>>20)}
	}
	if err != nil {
		return nil, nil, httpapi.BadRequest("read snapshot file: %v", err)
	}
	f, err := consensus.ReadSnapshotFile(bytes.NewReader(raw), maxSnapshotBytes)
	if err != nil {
		return nil, nil, httpapi.BadRequest("snapshot file refused, nothing changed: %v", err)
	}
	return raw, f, nil
}

func (a *Agent) handleSnapshotRestore(w http.ResponseWriter, r *http.Request) (any, error) {
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	if err := a.localWriteAllowed(cl); err != nil {
		return nil, err
	}
	raw, f, err := readSnapshotBody(r.Body)
	if err != nil {
		return nil, err
	}
	force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
	// The leader checks again; this answers the common mistake at once.
	if c := cl.store.Cluster(); c != nil && c.ClusterID != f.Header.ClusterID && !force {
		return nil, &httpError{status: http.StatusConflict, msg: fmt.Sprintf(
			"snapshot file refused, nothing changed: it was saved from cluster %s, this is cluster %s (use --force to replace this cluster's services with it anyway)",
			f.Header.ClusterID, c.ClusterID)}
	}
	var resp api.SnapshotRestoreResponse
	err = a.forwardToLeader(r.Context(), cl, func(ctx context.Context, addr string) error {
		if cl.raft.IsLeader() {
			var err error
			resp, err = a.restoreAsLeader(ctx, cl, f, force, a.id.NodeID)
			return err
		}
		return callSnapshotRestoreRPC(ctx, addr, cl.client, wire.SnapshotRestoreRequest{Force: force, Size: int64(len(raw))}, raw, &resp)
	})
	if err != nil {
		if errors.Is(err, consensus.ErrOtherCluster) {
			return nil, &httpError{status: http.StatusConflict, msg: err.Error()}
		}
		return nil, err
	}
	handlers.WaitLocal(r.Context(), cl.store, func() bool { return cl.store.Index() >= resp.Index })
	return resp, nil
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
		return &dialError{fmt.Errorf("connect to %s: %w", addr, err)}
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
func (a *Agent) serveSnapshotRestoreRPC(ctx context.Context, call *rpcCall) {
	cl, err := a.clusterOrErr()
	if err != nil {
		_ = call.reply(nil, err)
		return
	}
	if c, _ := callerOf(cl, authz.Admin, call.peerID); c.Worker {
		_ = call.reply(nil, fmt.Errorf("%w: node %s is a worker: workers cannot restore the cluster", authz.ErrWorker, shortID(call.peerID)))
		return
	}
	if !cl.raft.IsLeader() {
		_ = call.reply(nil, ErrNotLeader)
		return
	}
	var req wire.SnapshotRestoreRequest
	if err := json.Unmarshal(call.req.Body, &req); err != nil || req.Size <= 0 || req.Size > maxSnapshotBytes {
		_ = call.reply(nil, &wire.Error{Code: wire.CodeRefused, Msg: "malformed snapshot restore request"})
		return
	}
	_ = call.conn.SetReadDeadline(time.Now().Add(snapshotBodyTimeout))
	f, err := consensus.ReadSnapshotFile(io.LimitReader(call.r, req.Size), maxSnapshotBytes)
	_ = call.conn.SetReadDeadline(time.Time{})
	if err != nil {
		_ = call.reply(nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("snapshot file refused, nothing changed: %v", err)})
		return
	}
	resp, err := a.restoreAsLeader(ctx, cl, f, req.Force, call.peerID)
	_ = call.reply(resp, err)
}

// handleInitFromSnapshot is `shoal init --from-snapshot`: the file is
// verified before anything is made; then init, then the restore onto the
// new cluster. A failed restore leaves no half-made cluster behind.
func (a *Agent) handleInitFromSnapshot(w http.ResponseWriter, r *http.Request) (any, error) {
	if cl, err := a.clusterOrErr(); err == nil {
		return nil, fmt.Errorf("%w %s: run `shoal leave` first", ErrAlreadyInCluster, cl.id)
	}
	_, f, err := readSnapshotBody(r.Body)
	if err != nil {
		return nil, err
	}
	if _, err := a.initCluster(r.Context(), f); err != nil {
		return nil, err
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil, err
	}
	restored, err := a.restoreAsLeader(r.Context(), cl, f, true, a.id.NodeID)
	if err != nil {
		if derr := a.dropCluster(context.WithoutCancel(r.Context()), false); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, fmt.Errorf("init from snapshot: %w (the new cluster was removed again)", err)
	}
	init, err := a.tokenResponse(r.Context())
	if err != nil {
		return nil, err
	}
	return api.InitFromSnapshotResponse{InitResponse: init, Restore: restored}, nil
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
