package writes

// Restore: the snapshot file's way to the leader (the file format and the
// merge rules are in consensus/snapshotfile/snapshotfile.go; node's snapshot.go is the
// API side). The node that got the file verifies it whole (format, size,
// checksum) and the cluster ID before anything else; then the leader (the
// file travels to it over the cluster port, and is verified again there)
// merges it with the running cluster (PlanRestore) and installs the result
// with raft's user-snapshot restore, which followers receive as a snapshot.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/handlers"
	"github.com/shoal-org/shoal/node/wire"
)

// MaxSnapshotBytes bounds a snapshot file an agent accepts.
const MaxSnapshotBytes = handlers.MaxSnapshotBytes

// snapshotBodyTimeout bounds reading a forwarded file from a peer.
const snapshotBodyTimeout = time.Minute

// restoreMu serializes restores on one leader.
var restoreMu sync.Mutex

// restorePlanned, when set (tests), runs between a restore's plan and its
// install: where a write used to slip in and be erased.
var restorePlanned func()

// Restore has the leader restore f, whose bytes are raw: this node when
// it leads, else the leader it sends raw to over the cluster port
// (CallSnapshotRestore), retried across leader changes (Forward).
func (w *Writer) Restore(ctx context.Context, raw []byte, f *snapshotfile.File, force bool) (api.SnapshotRestoreResponse, error) {
	var resp api.SnapshotRestoreResponse
	err := w.Forward(ctx, func(ctx context.Context, addr string) error {
		if w.cfg.Raft.IsLeader() {
			var err error
			resp, err = w.RestoreAsLeader(ctx, f, force, w.cfg.NodeID)
			return err
		}
		return CallSnapshotRestore(ctx, w.cfg.Dial, addr, wire.SnapshotRestoreRequest{Force: force, Size: int64(len(raw))}, raw, &resp)
	})
	return resp, err
}

// RestoreAsLeader merges f into this leader's state and installs it. by is
// the node whose API socket asked (for the log). Restores on one leader
// run one at a time.
func (w *Writer) RestoreAsLeader(ctx context.Context, f *snapshotfile.File, force bool, by string) (api.SnapshotRestoreResponse, error) {
	cl := w.cfg
	restoreMu.Lock()
	defer restoreMu.Unlock()
	if !cl.Raft.IsLeader() {
		return api.SnapshotRestoreResponse{}, ErrNotLeader
	}
	// No proposal of this leader — the write path's, a join's, the
	// leader's loops' — runs from here until the restored state is
	// installed (raftnode's proposal gate): one committed in between was
	// erased by the restore, and a loop's pass that read the state before
	// it would land on the restored state. The restore's own proposals
	// use ctx, which holds the gate.
	ctx, release, err := cl.Raft.PauseProposals(ctx)
	if err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	defer release()
	// Every acknowledged write is in the state the plan merges with.
	if err := cl.Raft.Barrier(ctx); err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	if err := CheckRestoreSpecs(f.Services(), cl.Store.Nodes()); err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	if err := CheckRestoreLevels(f.Services(), f.Networks(), cl.Raft.CheckCommand); err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	plan, err := snapshotfile.PlanRestore(f, cl.Store.Snapshot(), force)
	if err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	if restorePlanned != nil {
		restorePlanned()
	}
	if err := cl.Raft.RestoreSnapshot(ctx, plan); err != nil {
		return api.SnapshotRestoreResponse{}, err
	}
	resp := api.SnapshotRestoreResponse{
		ClusterID: cl.ClusterID, FileClusterID: f.Header.ClusterID, Index: cl.Store.Index(),
		Services: plan.Services, DroppedNodes: plan.DroppedNodes, DroppedTasks: plan.DroppedTasks,
		OrphanTasks: plan.OrphanTasks,
	}
	if resp.Services == nil {
		resp.Services = []string{}
	}
	if resp.DroppedNodes == nil {
		resp.DroppedNodes = []string{}
	}
	w.log.Warn("cluster state restored from a snapshot file", "file_cluster_id", f.Header.ClusterID,
		"file_index", f.Header.Index, "index", resp.Index, "services", len(plan.Services),
		"dropped_nodes", plan.DroppedNodes, "orphan_tasks", plan.OrphanTasks, "by", api.ShortID(by))
	return resp, nil
}

// maxSpecProblems bounds the services a refused file's error names.
const maxSpecProblems = 10

// CheckRestoreSpecs refuses a file whose services' specs (and the specs
// a rollback would go back to) the leader would refuse to create
// (authz.CheckSpecOnLeader: servicespec.Validate, and no port of the
// cluster's nodes published), naming each service, with
// consensus.ErrInvalid. A restore installs the specs without a command,
// so nothing checked them: a spec edited to 10^9 replicas had the leader's
// scheduler create a task record for each, and one publishing a node's
// cluster or gossip port took that port on every node. snapshotfile's
// PlanRestore checks what the state machine guarantees; these are the
// leader's rules, which that package does not import.
func CheckRestoreSpecs(services []*api.Service, nodes []*api.Node) error {
	var p []string
	for _, s := range services {
		specs := []*api.ServiceSpec{&s.Spec}
		if s.PreviousSpec != nil {
			specs = append(specs, s.PreviousSpec)
		}
		for i, spec := range specs {
			if err := authz.CheckSpecOnLeader(*spec, nil, nodes); err != nil {
				which := "spec"
				if i > 0 {
					which = "previous spec"
				}
				msg := strings.TrimPrefix(err.Error(), consensus.ErrInvalid.Error()+": ")
				p = append(p, fmt.Sprintf("service %q (ID %q): %s: %s", s.Name, s.ID, which, msg))
			}
		}
	}
	if len(p) == 0 {
		return nil
	}
	if len(p) > maxSpecProblems {
		p = append(p[:maxSpecProblems], fmt.Sprintf("and %d more", len(p)-maxSpecProblems))
	}
	return fmt.Errorf("snapshot file refused, nothing changed: %s: %w", strings.Join(p, "; "), consensus.ErrInvalid)
}

// CheckRestoreLevels refuses a file holding a service some member could
// not apply as the command that writes it (check: the leader's command
// gate, raftnode.Raft.CheckCommand): a spec or previous spec using fields
// of a protocol level an older member lacks (endpoint mode, aliases,
// placement limits and preferences, log options, jobs: command.SinceLevel),
// or a network with allocated node shares (command.SharesLevel). A
// restore installs the state without a command, so the gate never saw
// them, and the older replica would load the specs without those fields:
// its DNS, and should it lead its VIPs and scheduling, would differ from
// the others'. The error names the services (at most maxSpecProblems) and
// wraps the gate's, which names the members to upgrade
// (command.ErrUnsupported).
func CheckRestoreLevels(services []*api.Service, networks []*api.Network, check func(command.Command) error) error {
	var names []string
	var first error
	refused := func(cmd command.Command, what string) error {
		err := check(cmd)
		if err == nil {
			return nil
		}
		if !errors.Is(err, command.ErrUnsupported) {
			return fmt.Errorf("snapshot file: check the members' protocol levels: %w", err)
		}
		names = append(names, what)
		if first == nil {
			first = err
		}
		return nil
	}
	for _, s := range services {
		if err := refused(command.CreateService{Service: *s}, fmt.Sprintf("service %q", s.Name)); err != nil {
			return err
		}
	}
	for _, n := range networks {
		if err := refused(command.CreateNetwork{Network: *n}, fmt.Sprintf("network %q", n.Name)); err != nil {
			return err
		}
	}
	if first == nil {
		return nil
	}
	if len(names) > maxSpecProblems {
		names = append(names[:maxSpecProblems], fmt.Sprintf("and %d more", len(names)-maxSpecProblems))
	}
	return fmt.Errorf("snapshot file refused, nothing changed: %s: %w", strings.Join(names, ", "), first)
}

// CallSnapshotRestore sends the file to the leader at addr over a
// connection dial opens (an RPC connection of the cluster port): the
// request line, then the raw file, then it reads the one answer line.
func CallSnapshotRestore(ctx context.Context, dial func(addr string) (net.Conn, error), addr string, req wire.SnapshotRestoreRequest, raw []byte, out *api.SnapshotRestoreResponse) error {
	conn, err := dial(addr)
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

// RestoreAllowed says whether a user on node peerID's API socket may have
// the leader restore the cluster, from the leader's replica: a manager's
// node only, as for every admin action (authz.AdminCheck).
func RestoreAllowed(store *consensus.Store, peerID string) error {
	c, _ := CallerOf(store, authz.Admin, peerID)
	return authz.AdminCheck(c, "restore the cluster")
}

// ServeSnapshotRestore is wire.MethodSnapshotRestore on the leader. Callers: a
// manager node (as for every admin action; workers' sockets are read-only,
// and a node without a record has no role), for a user on its API socket.
// The file is verified again here.
func (w *Writer) ServeSnapshotRestore(ctx context.Context, call *clusterport.Call) {
	cl := w.cfg
	if err := RestoreAllowed(cl.Store, call.PeerID); err != nil {
		w.log.Warn("refused a snapshot restore", "node_id", api.ShortID(call.PeerID), "err", err)
		_ = call.Reply(nil, err)
		return
	}
	if !cl.Raft.IsLeader() {
		_ = call.Reply(nil, ErrNotLeader)
		return
	}
	var req wire.SnapshotRestoreRequest
	if err := json.Unmarshal(call.Req.Body, &req); err != nil || req.Size <= 0 || req.Size > MaxSnapshotBytes {
		_ = call.Reply(nil, &wire.Error{Code: wire.CodeRefused, Msg: "malformed snapshot restore request"})
		return
	}
	_ = call.Conn.SetReadDeadline(time.Now().Add(snapshotBodyTimeout))
	f, err := snapshotfile.Read(io.LimitReader(call.R, req.Size), req.Size) // the body is part of the announced size
	_ = call.Conn.SetReadDeadline(time.Time{})
	if err != nil {
		_ = call.Reply(nil, &wire.Error{Code: wire.CodeRefused, Msg: fmt.Sprintf("snapshot file refused, nothing changed: %v", err)})
		return
	}
	resp, err := w.RestoreAsLeader(ctx, f, req.Force, call.PeerID)
	_ = call.Reply(resp, err)
}
