// Package command is the Raft log's entry format: the commands that change
// the replicated state, their encoding (a type byte, a version byte, a JSON
// body) and the protocol level a node needs to apply each (the version-skew
// gate). It is apart from consensus/fsm, which applies them, because most
// of the tree only proposes commands: node's write path, the leader loop
// and the gate build, encode and check them without the store's write side.
package command

import (
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// Type is the first byte of every log entry; it selects the command.
// Values are part of the on-disk format: never renumber, only append.
type Type uint8

// Command types.
const (
	TypeBootstrapCluster Type = 1
	TypeUpsertNode       Type = 2
	TypeUpdateNode       Type = 3
	TypeSetNodeStatus    Type = 4
	TypeSetNodeVoter     Type = 5
	TypeRemoveNode       Type = 6
	TypeRotateToken      Type = 7
	TypeSetGossipKeys    Type = 8
	TypeCreateService    Type = 9
	TypeUpdateService    Type = 10
	TypeDeleteService    Type = 11
	TypeUpsertTasks      Type = 12
	TypeTaskStatus       Type = 13
	TypeDeleteTasks      Type = 14
	TypeUpsertImage      Type = 15
	TypeSetImageNode     Type = 16
	TypeDeleteImage      Type = 17
	TypeBatch            Type = 18
	TypeTrimTasks        Type = 19
	TypeRevokeCert       Type = 20
	TypeSetVoterTarget   Type = 21
	TypeSetClusterEpoch  Type = 22
	TypeSealClusterKeys  Type = 23
	TypeRotateCA         Type = 24
	TypeFinishCARotation Type = 25
	TypeSetNodeCert      Type = 26
	TypeCreateNetwork    Type = 27
	TypeDeleteNetwork    Type = 28
	// Secrets and configs.
	TypeCreateSecret Type = 29
	TypeDeleteSecret Type = 30
	TypeCreateConfig Type = 31
	TypeDeleteConfig Type = 32
	// Protocol level 2.
	TypeUpdateOwnNode    Type = 33
	TypeRecordCertExpiry Type = 34
	TypeTrimRevoked      Type = 35
	// level 3
	TypeStageNodeCert   Type = 36
	TypeConfirmNodeCert Type = 37
	// level 6
	TypeClaimNetworkShare Type = 38
	// level 7
	TypeSetRunAttachments Type = 39
)

// Version is the second byte of every log entry: the version of the
// JSON body layout. A decoder refuses versions it does not know.
const Version = 1

// Command is one state change proposed to Raft. Commands carry every
// timestamp and generated ID they need: applying one (consensus/fsm) never
// reads the clock or a random source. Only the types of this package
// implement it (isCommand): the FSM has an applier for each of them, and a
// command of any other type could not be decoded on the other replicas.
type Command interface {
	// Type returns the command's type byte.
	Type() Type
	isCommand()
}

// BootstrapCluster creates the cluster record and the first node. It is the
// first entry of every cluster's log.
type BootstrapCluster struct {
	Cluster consensus.ClusterState `json:"cluster"`
	Node    api.Node               `json:"node"`
}

// UpsertNode inserts or replaces a node (join, re-join, metadata change). An
// empty Subnet keeps the node's current subnet or allocates a free /24 of
// the cluster CIDR. The stored node is returned.
type UpsertNode struct {
	Node api.Node `json:"node"`
}

// UpdateOwnNode is a node's report about itself: the fields it owns
// (api.CopyOwnedNodeFields) are copied onto the node's record as it is when
// the entry applies, and the rest of Node is ignored. The leader proposes
// it for a node's own UpsertNode: a whole record copied from the node's
// replica could undo an admin's update, or bring back a removed node, that
// committed between the leader's check and the entry's apply. A node
// without a record is refused.
type UpdateOwnNode struct {
	Node api.Node `json:"node"`
}

// UpdateNode applies an operator's node update (availability, labels).
type UpdateNode struct {
	ID     string         `json:"id"`
	Update api.NodeUpdate `json:"update"`
	Now    time.Time      `json:"now"`
}

// NodeStatus is one node's observed status in a SetNodeStatus batch.
type NodeStatus struct {
	ID     string    `json:"id"`
	Status string    `json:"status"` // api.NodeReady or api.NodeDown
	At     time.Time `json:"at"`
}

// SetNodeStatus records membership health of nodes. Unknown node IDs are
// ignored (the node may have been removed meanwhile).
type SetNodeStatus struct {
	Statuses []NodeStatus `json:"statuses"`
}

// SetNodeVoter records whether a node votes, after autopilot changed the
// Raft configuration (node/leaderloop's VoterRecords). Now, when set,
// becomes the node's UpdatedAt: the time of its promoted or demoted event
// (node/events). Entries written before it carry none.
type SetNodeVoter struct {
	ID    string    `json:"id"`
	Voter bool      `json:"voter"`
	Now   time.Time `json:"now,omitzero"`
}

// RemoveNode deletes a node, revokes its certificate and orphans its tasks.
type RemoveNode struct {
	ID  string    `json:"id"`
	Now time.Time `json:"now"`
}

// RotateToken replaces the join token's secret hash.
type RotateToken struct {
	SecretHash string `json:"secret_hash"`
	// Secret is the new secret in the clear, as older agents proposed it.
	// New proposers leave it empty and set SecretSealed.
	Secret string `json:"secret,omitempty"`
	// SecretSealed is the new secret sealed with the voters' KEK, so that
	// voters can print the join token.
	SecretSealed []byte `json:"secret_sealed,omitempty"`
}

// SetGossipKeys replaces the gossip keyring (first key primary).
type SetGossipKeys struct {
	Keys [][]byte `json:"keys"`
}

// RevokeCert adds a certificate serial to the revocation list.
type RevokeCert struct {
	Serial string `json:"serial"`
}

// SetVoterTarget records the number of voters autopilot aims for.
type SetVoterTarget struct {
	Target int `json:"target"`
}

// SetClusterEpoch raises the cluster's epoch (see consensus/epoch.go) after
// --force-new-cluster. An epoch not above the recorded one is a no-op, so a
// retried or late entry never lowers it.
type SetClusterEpoch struct {
	Epoch uint64 `json:"epoch"`
}

// SealClusterKeys replaces the plaintext CA key and join secret of the
// cluster record with their sealed forms (migration of clusters made before
// sealing). The sealing, and its random nonce, happened before proposing.
type SealClusterKeys struct {
	KEKID             string `json:"kek_id"`
	CAKeySealed       []byte `json:"ca_key_sealed"`
	TokenSecretSealed []byte `json:"token_secret_sealed,omitempty"`
	CAFingerprint     string `json:"ca_fingerprint"`
}

// RotateCA starts a CA rotation: CACertPEM becomes the CA that issues
// certificates, the previous one stays trusted (PrevCACertPEM) until every
// node has a certificate from the new one (FinishCARotation). It is refused
// while a rotation is under way, or when ExpectFingerprint is not the
// current CA's (the proposer read a stale record).
type RotateCA struct {
	CACertPEM         []byte `json:"ca_cert_pem"`
	CAFingerprint     string `json:"ca_fingerprint"`
	CAKeySealed       []byte `json:"ca_key_sealed"`
	CACrossPEM        []byte `json:"ca_cross_pem,omitempty"`
	ExpectFingerprint string `json:"expect_fingerprint"`
}

// FinishCARotation drops the previous CA once every node has a certificate
// from the current one. It is a no-op unless CAFingerprint is the current
// CA's (a later rotation is not finished by an earlier proposal).
type FinishCARotation struct {
	CAFingerprint string `json:"ca_fingerprint"`
}

// SetNodeCert records a node's new certificate serial (renewal, CA
// rotation) issued by the CA with fingerprint CAFingerprint, and revokes
// the serials in Revoke.
type SetNodeCert struct {
	ID            string   `json:"id"`
	Serial        string   `json:"serial"`
	CAFingerprint string   `json:"ca_fingerprint"`
	Revoke        []string `json:"revoke,omitempty"`
}

// StageNodeCert records a renewed certificate the leader signed for node
// ID as pending (api.Node.PendingCertSerial), issued by the CA with
// fingerprint CAFingerprint, beside the node's current one, which stays
// valid: the answer may never reach the node's disk. It revokes the
// serials in Revoke — the earlier pending serial that was never confirmed
// (a renewal asked for again with the current certificate) — so a node
// has at most one pending certificate. Refused when ID is unknown, Serial
// is revoked or is the current one. Protocol level 3.
type StageNodeCert struct {
	ID            string   `json:"id"`
	Serial        string   `json:"serial"`
	CAFingerprint string   `json:"ca_fingerprint"`
	Revoke        []string `json:"revoke,omitempty"`
}

// ConfirmNodeCert records that node ID installed its pending certificate
// Serial: it becomes the current one (CertSerial), the certificate it
// replaces is revoked, and a CA rotation stops waiting for the node when
// the pending certificate is from the current CA. Applying it again (the
// serial already current) changes nothing; a serial that is neither
// pending nor current is refused. Protocol level 3.
type ConfirmNodeCert struct {
	ID     string `json:"id"`
	Serial string `json:"serial"`
}

// RecordCertExpiry records when the node certificate with this serial
// expires (its NotAfter), so that its serial leaves the revocation list
// once that has passed (TrimRevoked). The leader proposes it in the batch
// that records a certificate it signed (a join, a renewal). A serial that
// is already revoked is refused: one revoked without a known expiry gets
// an upper bound of it from TrimRevoked.UnknownUntil instead
// (consensus.ClusterState.CertExpiry).
type RecordCertExpiry struct {
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

// TrimRevoked forgets the certificates whose recorded expiry is before
// ExpiredBefore (consensus.ClusterState.ExpiredCerts): their serials leave
// the revocation list, where no handshake needs them any more, and the
// record of their expiry goes too. The leader proposes it with its clock
// less a margin for the clocks of the nodes that check certificates
// (node/keyring TrimMargin). The answer is the number of serials that
// left the revocation list.
//
// UnknownUntil, when set, bounds the rest: every revoked serial that has no
// recorded expiry after the trim (revoked before expiries were recorded,
// or a removed node's) gets it as its expiry, so a later trim drops it
// once that has passed. The leader gives the latest a certificate it
// knows to be revoked by now can end: its clock plus the longest
// certificate lifetime it knows (node/keyring UnknownBound). Entries
// without it (before the field) leave such serials as they are.
type TrimRevoked struct {
	ExpiredBefore time.Time `json:"expired_before"`
	UnknownUntil  time.Time `json:"unknown_until,omitzero"`
}

// CreateService stores a new service. Name defaults to Spec.Name; an empty
// VIP is allocated from the cluster's VIP range. The stored service
// (Version = log index) is returned.
type CreateService struct {
	Service api.Service `json:"service"`
}

// UpdateService replaces a service. With ExpectVersion != 0 it is refused
// unless the stored Version equals it (optimistic concurrency). An empty VIP
// keeps the current one; CreatedAt is kept. Returns the stored service.
type UpdateService struct {
	Service       api.Service `json:"service"`
	ExpectVersion uint64      `json:"expect_version"`
}

// DeleteService removes a service and sets its tasks' desired state to
// shutdown; the tasks stay until DeleteTasks.
type DeleteService struct {
	ID  string    `json:"id"`
	Now time.Time `json:"now"`
}

// UpsertTasks inserts or replaces whole tasks (the scheduler's batches), then
// trims old terminal tasks of the groups it touched.
type UpsertTasks struct {
	Tasks []api.Task `json:"tasks"`
}

// TaskStatus applies a node's status reports. Reports for tasks that do not
// exist or are not assigned to NodeID are ignored, and a task's observed
// state never moves backwards (api.TaskStateOrder).
type TaskStatus struct {
	NodeID   string           `json:"node_id"`
	Statuses []api.TaskStatus `json:"statuses"`
}

// DeleteTasks deletes tasks; unknown IDs are ignored.
type DeleteTasks struct {
	IDs []string `json:"ids"`
}

// TrimTasks trims old terminal tasks in every group (see fsm.MaxTerminalTasks).
type TrimTasks struct{}

// UpsertImage records an image. Tags and Nodes are merged with an existing
// record of the same ID; a tag moves away from any other image holding it.
type UpsertImage struct {
	Image api.Image `json:"image"`
}

// SetImageNode records whether a node holds all layers of an image.
type SetImageNode struct {
	ImageID string `json:"image_id"`
	NodeID  string `json:"node_id"`
	Present bool   `json:"present"`
}

// DeleteImage removes an image record.
type DeleteImage struct {
	ID string `json:"id"`
}

// Batch applies several commands in one log entry, in order. Each applies
// atomically on its own: one refusal does not undo the others. Batches do
// not nest. The response value is a []fsm.Result, one per command.
type Batch struct {
	Commands []Command `json:"-"`
}

// CreateNetwork stores a new network. An empty Subnet is allocated from
// the network pool (alloc.NetworkPool), a zero VNI is the lowest free one above
// api.DefaultVNI. The stored network is returned.
type CreateNetwork struct {
	Network api.Network `json:"network"`
}

// DeleteNetwork removes a network; refused while a service names it.
type DeleteNetwork struct {
	ID string `json:"id"`
}

// ClaimNetworkShare gives node NodeID a share of allocated-share network
// Network (ID; api.Network.ShareBits) unless it holds one: what a
// `shoal run --network` container needs before it joins the network on a
// node that runs no task of it. Refused (consensus.ErrInUse) when every
// share is held. A task's node gets its share with the task's assignment
// (UpsertTasks) instead.
type ClaimNetworkShare struct {
	Network string `json:"network"`
	NodeID  string `json:"node_id"`
}

// SetRunAttachments records the whole set of node NodeID's `shoal run`
// containers attached to networks other than the default: Networks maps a
// network ID to container names. Every network's entry for the node is
// replaced (cleared where Networks has none), so a node that restarts
// writes what it finds and nothing stale stays; a network ID no longer
// stored is ignored. DeleteNetwork is refused while a network has any.
// A node writes only its own (node/authz).
type SetRunAttachments struct {
	NodeID   string              `json:"node_id"`
	Networks map[string][]string `json:"networks,omitempty"`
}

// Type implements Command.
func (CreateNetwork) Type() Type { return TypeCreateNetwork }

// Type implements Command.
func (DeleteNetwork) Type() Type { return TypeDeleteNetwork }

// Type implements Command.
func (BootstrapCluster) Type() Type { return TypeBootstrapCluster }

// Type implements Command.
func (UpsertNode) Type() Type { return TypeUpsertNode }

// Type implements Command.
func (UpdateOwnNode) Type() Type { return TypeUpdateOwnNode }

// Type implements Command.
func (UpdateNode) Type() Type { return TypeUpdateNode }

// Type implements Command.
func (SetNodeStatus) Type() Type { return TypeSetNodeStatus }

// Type implements Command.
func (SetNodeVoter) Type() Type { return TypeSetNodeVoter }

// Type implements Command.
func (RemoveNode) Type() Type { return TypeRemoveNode }

// Type implements Command.
func (RotateToken) Type() Type { return TypeRotateToken }

// Type implements Command.
func (SetGossipKeys) Type() Type { return TypeSetGossipKeys }

// Type implements Command.
func (RevokeCert) Type() Type { return TypeRevokeCert }

// Type implements Command.
func (SetVoterTarget) Type() Type { return TypeSetVoterTarget }

// Type implements Command.
func (SetClusterEpoch) Type() Type { return TypeSetClusterEpoch }

// Type implements Command.
func (CreateService) Type() Type { return TypeCreateService }

// Type implements Command.
func (UpdateService) Type() Type { return TypeUpdateService }

// Type implements Command.
func (DeleteService) Type() Type { return TypeDeleteService }

// Type implements Command.
func (UpsertTasks) Type() Type { return TypeUpsertTasks }

// Type implements Command.
func (TaskStatus) Type() Type { return TypeTaskStatus }

// Type implements Command.
func (DeleteTasks) Type() Type { return TypeDeleteTasks }

// Type implements Command.
func (TrimTasks) Type() Type { return TypeTrimTasks }

// Type implements Command.
func (UpsertImage) Type() Type { return TypeUpsertImage }

// Type implements Command.
func (SetImageNode) Type() Type { return TypeSetImageNode }

// Type implements Command.
func (DeleteImage) Type() Type { return TypeDeleteImage }

// Type implements Command.
func (Batch) Type() Type { return TypeBatch }

// Type implements Command.
func (SealClusterKeys) Type() Type { return TypeSealClusterKeys }

// Type implements Command.
func (RotateCA) Type() Type { return TypeRotateCA }

// Type implements Command.
func (FinishCARotation) Type() Type { return TypeFinishCARotation }

// Type implements Command.
func (SetNodeCert) Type() Type { return TypeSetNodeCert }

// Type implements Command.
func (RecordCertExpiry) Type() Type { return TypeRecordCertExpiry }

// Type implements Command.
func (TrimRevoked) Type() Type { return TypeTrimRevoked }

func (StageNodeCert) Type() Type { return TypeStageNodeCert }

func (ConfirmNodeCert) Type() Type { return TypeConfirmNodeCert }

// Type implements Command.
func (ClaimNetworkShare) Type() Type { return TypeClaimNetworkShare }

// Type implements Command.
func (SetRunAttachments) Type() Type { return TypeSetRunAttachments }

// Secrets and configs. A secret's data enters the log only sealed with the
// voters' KEK; a config's is stored as given (consensus/fsm/secrets.go).

// CreateSecret stores a new secret. Secret.Sealed must be set and
// Plaintext empty: Plaintext only carries the data from the node that
// received the request to the leader, which seals it and clears the field
// before proposing; the FSM refuses a command that still holds it.
type CreateSecret struct {
	Secret    consensus.Secret `json:"secret"`
	Plaintext []byte           `json:"plaintext,omitempty"`
	// KeepIfSame (api.SecretCreateRequest.KeepSame) is read by the leader
	// before sealing: a secret of this name with the same plaintext is
	// answered without a proposal, one with other plaintext refused. It is
	// never proposed. A leader of an older release ignores it and the
	// create fails on the name in use, as a plain create does.
	KeepIfSame bool `json:"keep_if_same,omitempty"`
}

// DeleteSecret removes a secret; refused while a service uses it.
type DeleteSecret struct {
	ID string `json:"id"`
}

// CreateConfig stores a new config.
type CreateConfig struct {
	Config consensus.ConfigObject `json:"config"`
}

// DeleteConfig removes a config; refused while a service uses it.
type DeleteConfig struct {
	ID string `json:"id"`
}

// Type implements Command.
func (CreateSecret) Type() Type { return TypeCreateSecret }

// Type implements Command.
func (DeleteSecret) Type() Type { return TypeDeleteSecret }

// Type implements Command.
func (CreateConfig) Type() Type { return TypeCreateConfig }

// Type implements Command.
func (DeleteConfig) Type() Type { return TypeDeleteConfig }

// isCommand seals Command to the types above.
func (BootstrapCluster) isCommand()  {}
func (UpsertNode) isCommand()        {}
func (UpdateOwnNode) isCommand()     {}
func (UpdateNode) isCommand()        {}
func (SetNodeStatus) isCommand()     {}
func (SetNodeVoter) isCommand()      {}
func (RemoveNode) isCommand()        {}
func (RotateToken) isCommand()       {}
func (SetGossipKeys) isCommand()     {}
func (CreateService) isCommand()     {}
func (UpdateService) isCommand()     {}
func (DeleteService) isCommand()     {}
func (UpsertTasks) isCommand()       {}
func (TaskStatus) isCommand()        {}
func (DeleteTasks) isCommand()       {}
func (UpsertImage) isCommand()       {}
func (SetImageNode) isCommand()      {}
func (DeleteImage) isCommand()       {}
func (Batch) isCommand()             {}
func (TrimTasks) isCommand()         {}
func (RevokeCert) isCommand()        {}
func (SetVoterTarget) isCommand()    {}
func (SetClusterEpoch) isCommand()   {}
func (SealClusterKeys) isCommand()   {}
func (RotateCA) isCommand()          {}
func (FinishCARotation) isCommand()  {}
func (SetNodeCert) isCommand()       {}
func (RecordCertExpiry) isCommand()  {}
func (TrimRevoked) isCommand()       {}
func (StageNodeCert) isCommand()     {}
func (ConfirmNodeCert) isCommand()   {}
func (CreateNetwork) isCommand()     {}
func (DeleteNetwork) isCommand()     {}
func (ClaimNetworkShare) isCommand() {}
func (SetRunAttachments) isCommand() {}
func (CreateSecret) isCommand()      {}
func (DeleteSecret) isCommand()      {}
func (CreateConfig) isCommand()      {}
func (DeleteConfig) isCommand()      {}
