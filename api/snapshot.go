package api

// Backups (`shoal snapshot save|restore`, `shoal init --from-snapshot`).
//
//	GET    /v1/snapshot                     → the snapshot file (application/octet-stream);
//	                                          header X-Shoal-Snapshot: SnapshotInfo as JSON
//	POST   /v1/snapshot/restore?force=1     (body: snapshot file) → SnapshotRestoreResponse
//	POST   /v1/init/snapshot                (body: snapshot file) → InitFromSnapshotResponse

// SnapshotInfoHeader is the response header of GET /v1/snapshot that
// describes the file in the body.
const SnapshotInfoHeader = "X-Shoal-Snapshot"

// SnapshotInfo describes a saved snapshot file.
type SnapshotInfo struct {
	// Format is the snapshot file format version.
	Format    int    `json:"format"`
	ClusterID string `json:"cluster_id"`
	// Index is the Raft index of the saved state: it holds every write
	// acknowledged before the save began.
	Index     uint64 `json:"index"`
	CreatedAt string `json:"created_at"`
	// Size is the body size in bytes; SHA256 its checksum (both in the
	// file's header too).
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Nodes    int    `json:"nodes"`
	Services int    `json:"services"`
	Tasks    int    `json:"tasks"`
}

// SnapshotRestoreResponse answers a restore: what the cluster now holds.
type SnapshotRestoreResponse struct {
	// ClusterID is the cluster restored onto; FileClusterID the one the
	// file was saved from (they differ only with force or init).
	ClusterID     string `json:"cluster_id"`
	FileClusterID string `json:"file_cluster_id"`
	// Index is the Raft index the restored state was installed at.
	Index uint64 `json:"index"`
	// Services are the names of the restored services.
	Services []string `json:"services"`
	// DroppedNodes are the file's nodes (hostnames) that are not members of
	// this cluster: left out; their tasks are placed again.
	DroppedNodes []string `json:"dropped_nodes"`
	DroppedTasks int      `json:"dropped_tasks"`
	// OrphanTasks counts the file's tasks left out because the file holds
	// no service of theirs.
	OrphanTasks int `json:"orphan_tasks,omitempty"`
}

// InitFromSnapshotResponse answers POST /v1/init/snapshot.
type InitFromSnapshotResponse struct {
	InitResponse
	Restore SnapshotRestoreResponse `json:"restore"`
}
