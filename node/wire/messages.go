package wire

// The bodies of the methods, by the file of node that handles them.

import "github.com/shoal-org/shoal/api"

// ---- join.go ----

// JoinRequest is MethodJoin: a new node (no certificate yet) asks the
// leader to sign its CSR.
type JoinRequest struct {
	Secret      string        `json:"secret"`
	CSR         []byte        `json:"csr"`
	NodeID      string        `json:"node_id"`
	Hostname    string        `json:"hostname"`
	Addr        string        `json:"addr"`
	ClusterPort int           `json:"cluster_port"`
	GossipPort  int           `json:"gossip_port"`
	Resources   api.Resources `json:"resources"`
	// OldCertPEM proves a re-join under an existing node ID: that node's
	// certificate, whose key signed CSR (see admitJoinID).
	OldCertPEM []byte `json:"old_cert_pem,omitempty"`
}

// JoinResponse answers MethodJoin.
type JoinResponse struct {
	ClusterID  string   `json:"cluster_id"`
	CertPEM    []byte   `json:"cert_pem"`
	CAPEM      []byte   `json:"ca_pem"`
	GossipKeys [][]byte `json:"gossip_keys"`
	Peers      []string `json:"peers"`
	// Epoch is the cluster epoch the leader runs at (node/epoch); the new
	// node starts at it so that raft lets it in.
	Epoch uint64 `json:"epoch,omitempty"`
	// PrevCAPEM and CrossPEM are the previous CA and the cross-signed new
	// one while a CA rotation is under way (see node/keyring).
	PrevCAPEM []byte `json:"prev_ca_pem,omitempty"`
	CrossPEM  []byte `json:"cross_pem,omitempty"`
	// Index is the leader's store index as of GossipKeys, past the entry
	// that records the node. The new node's replica starts empty and
	// replays the log: until it reaches Index it holds keyrings the
	// cluster retired and, for a node that was removed and joins again
	// under its ID, its previous record (another subnet). The node applies
	// neither before (node/revocation). 0 from leaders that do not send it.
	Index uint64 `json:"index,omitempty"`
}

// AdminRequest is MethodAdmin.
type AdminRequest struct {
	Op     string `json:"op"` // leave | drain-self | remove
	NodeID string `json:"node_id"`
	Force  bool   `json:"force"`
}

// ---- node/writes write.go ----

// ApplyRequest is MethodApply: a node's raw command, about itself.
type ApplyRequest struct {
	Command []byte `json:"command"`
}

// AdminWriteRequest is one admin action a user asked for on the sending
// node's API socket. Command is the encoded command of that action (absent
// for rotate_token: the leader makes the new secret itself).
type AdminWriteRequest struct {
	Action  string `json:"action"`
	Command []byte `json:"command,omitempty"`
}

// ReadIndexResponse answers MethodReadIndex.
type ReadIndexResponse struct {
	Index uint64 `json:"index"`
}

// ---- node/imagedist ----

// BlobRequest is MethodBlob; the response is followed by Size raw bytes.
type BlobRequest struct {
	Digest string `json:"digest"`
}

// BlobResponse answers MethodBlob.
type BlobResponse struct {
	Size int64 `json:"size"`
}

// ManifestRequest is MethodManifest.
type ManifestRequest struct {
	Ref string `json:"ref"`
}

// LogsRequest is MethodLogs; log lines follow the response.
type LogsRequest struct {
	ContainerID string `json:"container_id"`
	Follow      bool   `json:"follow"`
	Tail        int    `json:"tail"`
	Since       string `json:"since,omitempty"`
}

// MaxLogsContainers bounds the containers of one LogsMultiRequest; a
// caller with more asks in several.
const MaxLogsContainers = 512

// LogsMultiRequest is MethodLogsMulti: the logs of several containers of
// the node, with the options of LogsRequest. LogsMultiLine lines follow
// the response; a container that cannot be read (gone since) has none.
type LogsMultiRequest struct {
	ContainerIDs []string `json:"container_ids"`
	Follow       bool     `json:"follow"`
	Tail         int      `json:"tail"`
	Since        string   `json:"since,omitempty"`
}

// LogsMultiLine is one line of a MethodLogsMulti stream; C is the index of
// its container in the request's ContainerIDs.
type LogsMultiLine struct {
	C int `json:"c"`
	api.LogLine
}

// ---- node/keyring ----

// KEKResponse answers MethodKEK (voters only).
type KEKResponse struct {
	KEK []byte `json:"kek"`
}

// TokenRequest is MethodToken.
type TokenRequest struct {
	Rotate bool `json:"rotate"`
}

// TokenResponse answers MethodToken.
type TokenResponse struct {
	Secret string `json:"secret"`
}

// CARotateResponse answers MethodCARotate.
type CARotateResponse struct {
	CAFingerprint string `json:"ca_fingerprint"`
}

// ---- node/revocation: the removal question ----

// RemovalRequest is MethodRemoval: is this node (with this certificate
// serial) removed?
type RemovalRequest struct {
	NodeID string `json:"node_id"`
	Serial string `json:"serial"`
}

// RemovalResponse answers MethodRemoval.
type RemovalResponse struct {
	Removed bool `json:"removed"`
}

// ---- node/keyring: renewal ----

// RenewRequest is MethodRenew.
type RenewRequest struct {
	CSR []byte `json:"csr"`
	// Serial is the serial of the certificate the node renews with (its
	// current or its pending one, node/keyring RenewalPlan); empty from
	// releases before pending certificates.
	Serial string `json:"serial,omitempty"`
}

// RenewConfirmRequest is MethodRenewConfirm: the caller installed its
// renewed certificate of Serial.
type RenewConfirmRequest struct {
	Serial string `json:"serial"`
}

// RenewResponse answers MethodRenew.
type RenewResponse struct {
	CertPEM   []byte `json:"cert_pem"`
	BundlePEM []byte `json:"bundle_pem"`
	CrossPEM  []byte `json:"cross_pem,omitempty"`
}

// ---- node/writes secrets.go ----

// SecretsRequest is MethodSecrets.
type SecretsRequest struct {
	TaskID string `json:"task_id"`
	// RegistryAuth asks for the registry credentials of the task's
	// service instead of its secrets (node/writes registryauth.go).
	RegistryAuth bool `json:"registry_auth,omitempty"`
}

// SecretsResponse answers MethodSecrets.
type SecretsResponse struct {
	// Secrets maps a secret name to its data.
	Secrets map[string][]byte `json:"secrets"`
	// RegistryAuth holds the task's registry credentials in the clear,
	// when asked for and the task's spec has some.
	RegistryAuth *api.RegistryAuth `json:"registry_auth,omitempty"`
}

// ---- node/writes restore.go ----

// SnapshotRestoreRequest is MethodSnapshotRestore.
type SnapshotRestoreRequest struct {
	Force bool  `json:"force"`
	Size  int64 `json:"size"`
}
