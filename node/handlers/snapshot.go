package handlers

// The snapshot routes' HTTP side: `shoal snapshot save FILE`, `snapshot
// restore FILE` and `init --from-snapshot FILE` (node snapshot.go has the
// why-block: the read index before a save, the leader's merge and
// raft's user-snapshot restore, the new identity of a cluster made from a
// file). Here: the file is read bounded and verified whole (format, size,
// checksum) and the cluster ID compared before the agent is asked to do
// anything, so a bad file changes nothing.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/snapshotfile"
	"github.com/shoal-org/shoal/node/httpapi"
)

// MaxSnapshotBytes bounds a snapshot file an agent accepts (body and
// header); the state of a 100-node cluster is a few MiB.
const MaxSnapshotBytes = 256 << 20

// Snapshots is what the snapshot routes need of the agent.
type Snapshots interface {
	// Store and SyncReplica as Agent's.
	Store() (*consensus.Store, error)
	SyncReplica(ctx context.Context) error
	// LocalWriteAllowed fails when this node's socket may not change the
	// cluster (a worker's).
	LocalWriteAllowed() error
	// Restore has the leader merge and install the verified file f (raw is
	// its bytes, for a leader elsewhere) and says what it restored.
	Restore(ctx context.Context, raw []byte, f *snapshotfile.File, force bool) (api.SnapshotRestoreResponse, error)
	// NotInCluster fails (the agent's already-in-a-cluster error) while
	// the node is in a cluster.
	NotInCluster() error
	// InitFrom makes a new cluster on this node from the verified file f;
	// a failure leaves no cluster behind.
	InitFrom(ctx context.Context, f *snapshotfile.File) (api.InitFromSnapshotResponse, error)
}

// SnapshotRoutes routes the snapshot routes to s.
func SnapshotRoutes(rt *httpapi.Router, s Snapshots, log *slog.Logger) {
	h := &snapshotHandlers{s: s, log: log}
	rt.Handle("GET /v1/snapshot", h.save)
	rt.Handle("POST /v1/snapshot/restore", h.restore)
	rt.Handle("POST /v1/init/snapshot", h.initFrom)
}

type snapshotHandlers struct {
	s   Snapshots
	log *slog.Logger
}

// handleSnapshotSave answers the file itself; the summary travels in the
// api.SnapshotInfoHeader header, so the body is exactly the file.
func (h *snapshotHandlers) save(w http.ResponseWriter, r *http.Request) (any, error) {
	store, err := h.s.Store()
	if err != nil {
		return nil, err
	}
	if err := h.s.SyncReplica(r.Context()); err != nil {
		return nil, fmt.Errorf("snapshot: catch up with the leader: %w", err)
	}
	view := store.Snapshot()
	var buf bytes.Buffer
	hd, err := snapshotfile.Write(view, &buf, time.Now())
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
	h.log.Info("snapshot saved", "index", hd.Index, "bytes", buf.Len())
	return httpapi.Streamed, nil
}

// ReadSnapshotBody reads a whole uploaded snapshot file (bounded) and
// verifies it. Nothing has changed when it fails.
func ReadSnapshotBody(r io.Reader) ([]byte, *snapshotfile.File, error) {
	raw, err := io.ReadAll(httpapi.CapReader(r, MaxSnapshotBytes))
	if errors.Is(err, httpapi.ErrBodyTooLarge) {
		return nil, nil, &httpapi.Error{Status: http.StatusRequestEntityTooLarge,
			Msg: fmt.Sprintf("snapshot file larger than %d MiB", MaxSnapshotBytes>>20)}
	}
	if err != nil {
		return nil, nil, httpapi.BadRequest("read snapshot file: %v", err)
	}
	f, err := snapshotfile.Read(bytes.NewReader(raw), MaxSnapshotBytes)
	if err != nil {
		return nil, nil, httpapi.BadRequest("snapshot file refused, nothing changed: %v", err)
	}
	return raw, f, nil
}

// restore verifies the uploaded file here, then has the leader restore
// it, and answers once this replica holds the restored state.
func (h *snapshotHandlers) restore(w http.ResponseWriter, r *http.Request) (any, error) {
	store, err := h.s.Store()
	if err != nil {
		return nil, err
	}
	if err := h.s.LocalWriteAllowed(); err != nil {
		return nil, err
	}
	raw, f, err := ReadSnapshotBody(r.Body)
	if err != nil {
		return nil, err
	}
	force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
	// The leader checks again; this answers the common mistake at once.
	if c := store.Cluster(); c != nil && c.ClusterID != f.Header.ClusterID && !force {
		return nil, &httpapi.Error{Status: http.StatusConflict, Msg: fmt.Sprintf(
			"snapshot file refused, nothing changed: it was saved from cluster %s, this is cluster %s (use --force to replace this cluster's services with it anyway)",
			f.Header.ClusterID, c.ClusterID)}
	}
	resp, err := h.s.Restore(r.Context(), raw, f, force)
	if err != nil {
		if errors.Is(err, snapshotfile.ErrOtherCluster) {
			return nil, &httpapi.Error{Status: http.StatusConflict, Msg: err.Error()}
		}
		return nil, err
	}
	WaitLocal(r.Context(), store, func() bool { return store.Index() >= resp.Index })
	return resp, nil
}

// initFrom is `shoal init --from-snapshot`: the file is verified before
// anything is made.
func (h *snapshotHandlers) initFrom(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := h.s.NotInCluster(); err != nil {
		return nil, err
	}
	_, f, err := ReadSnapshotBody(r.Body)
	if err != nil {
		return nil, err
	}
	return h.s.InitFrom(r.Context(), f)
}
