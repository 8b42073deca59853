package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// CommandType is the first byte of every log entry; it selects the command.
// Values are part of the on-disk format: never renumber, only append.
type CommandType uint8

// Command types.
const (
	TypeBootstrapCluster CommandType = 1
	TypeUpsertNode       CommandType = 2
	TypeUpdateNode       CommandType = 3
	TypeSetNodeStatus    CommandType = 4
	TypeSetNodeVoter     CommandType = 5
	TypeRemoveNode       CommandType = 6
	TypeRotateToken      CommandType = 7
	TypeSetGossipKeys    CommandType = 8
	TypeCreateService    CommandType = 9
	TypeUpdateService    CommandType = 10
	TypeDeleteService    CommandType = 11
	TypeUpsertTasks      CommandType = 12
	TypeTaskStatus       CommandType = 13
	TypeDeleteTasks      CommandType = 14
	TypeUpsertImage      CommandType = 15
	TypeSetImageNode     CommandType = 16
	TypeDeleteImage      CommandType = 17
	TypeBatch            CommandType = 18
	TypeTrimTasks        CommandType = 19
	TypeRevokeCert       CommandType = 20
	TypeSetVoterTarget   CommandType = 21
	TypeSetClusterEpoch  CommandType = 22
	TypeSealClusterKeys  CommandType = 23
	TypeRotateCA         CommandType = 24
	TypeFinishCARotation CommandType = 25
	TypeSetNodeCert      CommandType = 26
	TypeCreateNetwork    CommandType = 27
	TypeDeleteNetwork    CommandType = 28
	// Secrets and configs (secrets.go).
	TypeCreateSecret CommandType = 29
	TypeDeleteSecret CommandType = 30
	TypeCreateConfig CommandType = 31
	TypeDeleteConfig CommandType = 32
)

// CommandVersion is the second byte of every log entry: the version of the
// JSON body layout. A decoder refuses versions it does not know.
const CommandVersion = 1

// Command is one state change proposed to Raft. Only the types of this
// package implement it. Commands carry every timestamp and generated ID they
// need: applying one never reads the clock or a random source.
type Command interface {
	// Type returns the command's type byte.
	Type() CommandType
	// apply performs the change inside a write transaction. A returned error
	// is a business refusal: the transaction is aborted and the error goes
	// back to the proposer.
	apply(tx *consensus.WriteTxn) (any, error)
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
// Raft configuration.
type SetNodeVoter struct {
	ID    string `json:"id"`
	Voter bool   `json:"voter"`
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

// TrimTasks trims old terminal tasks in every group (see MaxTerminalTasks).
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
// not nest. The response value is a []Result, one per command.
type Batch struct {
	Commands []Command `json:"-"`
}

// CreateNetwork stores a new network. An empty Subnet is allocated from
// the network pool (NetworkPool), a zero VNI is the lowest free one above
// api.DefaultVNI. The stored network is returned.
type CreateNetwork struct {
	Network api.Network `json:"network"`
}

// DeleteNetwork removes a network; refused while a service names it.
type DeleteNetwork struct {
	ID string `json:"id"`
}

// Type implements Command.
func (CreateNetwork) Type() CommandType { return TypeCreateNetwork }

// Type implements Command.
func (DeleteNetwork) Type() CommandType { return TypeDeleteNetwork }

// Type implements Command.
func (BootstrapCluster) Type() CommandType { return TypeBootstrapCluster }

// Type implements Command.
func (UpsertNode) Type() CommandType { return TypeUpsertNode }

// Type implements Command.
func (UpdateNode) Type() CommandType { return TypeUpdateNode }

// Type implements Command.
func (SetNodeStatus) Type() CommandType { return TypeSetNodeStatus }

// Type implements Command.
func (SetNodeVoter) Type() CommandType { return TypeSetNodeVoter }

// Type implements Command.
func (RemoveNode) Type() CommandType { return TypeRemoveNode }

// Type implements Command.
func (RotateToken) Type() CommandType { return TypeRotateToken }

// Type implements Command.
func (SetGossipKeys) Type() CommandType { return TypeSetGossipKeys }

// Type implements Command.
func (RevokeCert) Type() CommandType { return TypeRevokeCert }

// Type implements Command.
func (SetVoterTarget) Type() CommandType { return TypeSetVoterTarget }

// Type implements Command.
func (SetClusterEpoch) Type() CommandType { return TypeSetClusterEpoch }

// Type implements Command.
func (CreateService) Type() CommandType { return TypeCreateService }

// Type implements Command.
func (UpdateService) Type() CommandType { return TypeUpdateService }

// Type implements Command.
func (DeleteService) Type() CommandType { return TypeDeleteService }

// Type implements Command.
func (UpsertTasks) Type() CommandType { return TypeUpsertTasks }

// Type implements Command.
func (TaskStatus) Type() CommandType { return TypeTaskStatus }

// Type implements Command.
func (DeleteTasks) Type() CommandType { return TypeDeleteTasks }

// Type implements Command.
func (TrimTasks) Type() CommandType { return TypeTrimTasks }

// Type implements Command.
func (UpsertImage) Type() CommandType { return TypeUpsertImage }

// Type implements Command.
func (SetImageNode) Type() CommandType { return TypeSetImageNode }

// Type implements Command.
func (DeleteImage) Type() CommandType { return TypeDeleteImage }

// Type implements Command.
func (Batch) Type() CommandType { return TypeBatch }

// Type implements Command.
func (SealClusterKeys) Type() CommandType { return TypeSealClusterKeys }

// Type implements Command.
func (RotateCA) Type() CommandType { return TypeRotateCA }

// Type implements Command.
func (FinishCARotation) Type() CommandType { return TypeFinishCARotation }

// Type implements Command.
func (SetNodeCert) Type() CommandType { return TypeSetNodeCert }

// decoders maps each type byte to a decoder of its JSON body.
var decoders = map[CommandType]func([]byte) (Command, error){
	TypeBootstrapCluster: decodeAs[BootstrapCluster],
	TypeUpsertNode:       decodeAs[UpsertNode],
	TypeUpdateNode:       decodeAs[UpdateNode],
	TypeSetNodeStatus:    decodeAs[SetNodeStatus],
	TypeSetNodeVoter:     decodeAs[SetNodeVoter],
	TypeRemoveNode:       decodeAs[RemoveNode],
	TypeRotateToken:      decodeAs[RotateToken],
	TypeSetGossipKeys:    decodeAs[SetGossipKeys],
	TypeRevokeCert:       decodeAs[RevokeCert],
	TypeSetVoterTarget:   decodeAs[SetVoterTarget],
	TypeCreateService:    decodeAs[CreateService],
	TypeUpdateService:    decodeAs[UpdateService],
	TypeDeleteService:    decodeAs[DeleteService],
	TypeUpsertTasks:      decodeAs[UpsertTasks],
	TypeTaskStatus:       decodeAs[TaskStatus],
	TypeDeleteTasks:      decodeAs[DeleteTasks],
	TypeTrimTasks:        decodeAs[TrimTasks],
	TypeUpsertImage:      decodeAs[UpsertImage],
	TypeSetImageNode:     decodeAs[SetImageNode],
	TypeDeleteImage:      decodeAs[DeleteImage],
	TypeBatch:            decodeAs[Batch],
	TypeSetClusterEpoch:  decodeAs[SetClusterEpoch],
	TypeSealClusterKeys:  decodeAs[SealClusterKeys],
	TypeRotateCA:         decodeAs[RotateCA],
	TypeFinishCARotation: decodeAs[FinishCARotation],
	TypeSetNodeCert:      decodeAs[SetNodeCert],
	TypeCreateNetwork:    decodeAs[CreateNetwork],
	TypeDeleteNetwork:    decodeAs[DeleteNetwork],
	// Secrets and configs (secrets.go).
	TypeCreateSecret: decodeAs[CreateSecret],
	TypeDeleteSecret: decodeAs[DeleteSecret],
	TypeCreateConfig: decodeAs[CreateConfig],
	TypeDeleteConfig: decodeAs[DeleteConfig],
}

func decodeAs[T Command](body []byte) (Command, error) {
	var c T
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, err
	}
	return c, nil
}

// EncodeCommand encodes a command as a log entry: type byte, version byte,
// JSON body.
func EncodeCommand(cmd Command) ([]byte, error) {
	if isNil(cmd) {
		return nil, fmt.Errorf("encode command: nil: %w", consensus.ErrInvalid)
	}
	if _, ok := decoders[cmd.Type()]; !ok {
		return nil, fmt.Errorf("encode command type %d: unknown type: %w", cmd.Type(), consensus.ErrInvalid)
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command type %d: %w", cmd.Type(), err)
	}
	out := make([]byte, 0, len(body)+2)
	out = append(out, byte(cmd.Type()), CommandVersion)
	return append(out, body...), nil
}

// DecodeCommand decodes a log entry made by EncodeCommand. It returns an
// error wrapping ErrMalformed for anything else and never panics.
func DecodeCommand(data []byte) (Command, error) {
	if len(data) < 2 {
		return nil, fmt.Errorf("decode command: %d bytes: %w", len(data), consensus.ErrMalformed)
	}
	t, v := CommandType(data[0]), data[1]
	dec, ok := decoders[t]
	if !ok {
		return nil, fmt.Errorf("decode command: unknown type %d: %w", t, consensus.ErrMalformed)
	}
	if v != CommandVersion {
		return nil, fmt.Errorf("decode command type %d: unknown version %d: %w", t, v, consensus.ErrMalformed)
	}
	cmd, err := dec(data[2:])
	if err != nil {
		return nil, fmt.Errorf("decode command type %d: %w: %w", t, consensus.ErrMalformed, err)
	}
	return cmd, nil
}

// isNil reports a nil interface or a typed nil pointer (callers may pass
// &UpsertNode{...} as well as UpsertNode{...}).
func isNil(c Command) bool {
	if c == nil {
		return true
	}
	v := reflect.ValueOf(c)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// batchEntry is one command inside a Batch body.
type batchEntry struct {
	Type    CommandType     `json:"type"`
	Version uint8           `json:"version"`
	Body    json.RawMessage `json:"body"`
}

// MarshalJSON encodes the batch as {"commands":[{type,version,body}...]}.
func (b Batch) MarshalJSON() ([]byte, error) {
	entries := make([]batchEntry, 0, len(b.Commands))
	for i, c := range b.Commands {
		if isNil(c) {
			return nil, fmt.Errorf("batch command %d: nil: %w", i, consensus.ErrInvalid)
		}
		if c.Type() == TypeBatch {
			return nil, fmt.Errorf("batch command %d: nested batch: %w", i, consensus.ErrInvalid)
		}
		body, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("batch command %d: %w", i, err)
		}
		entries = append(entries, batchEntry{Type: c.Type(), Version: CommandVersion, Body: body})
	}
	return json.Marshal(struct {
		Commands []batchEntry `json:"commands"`
	}{entries})
}

// UnmarshalJSON decodes what MarshalJSON wrote; nested batches are refused.
func (b *Batch) UnmarshalJSON(data []byte) error {
	var raw struct {
		Commands []batchEntry `json:"commands"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	b.Commands = make([]Command, 0, len(raw.Commands))
	for i, e := range raw.Commands {
		if e.Type == TypeBatch {
			return fmt.Errorf("batch command %d: nested batch", i)
		}
		dec, ok := decoders[e.Type]
		if !ok {
			return fmt.Errorf("batch command %d: unknown type %d", i, e.Type)
		}
		if e.Version != CommandVersion {
			return fmt.Errorf("batch command %d: unknown version %d", i, e.Version)
		}
		body := []byte(e.Body)
		if len(body) == 0 {
			body = []byte("null")
		}
		c, err := dec(body)
		if err != nil {
			return fmt.Errorf("batch command %d: %w", i, err)
		}
		b.Commands = append(b.Commands, c)
	}
	return nil
}

// Version skew (docs/upgrades.md). A cluster runs two releases side by side
// while it is upgraded one node at a time, and every node — voter or not —
// applies every committed entry: an entry of a type a node's binary does not
// know fails to decode there, which is a bug (the FSM panics). So the leader
// proposes a command only when every member of the Raft configuration runs a
// binary that knows its type. Releases are compared by protocol level, an
// integer, not by their version strings ("dev" and `git describe` output do
// not order).

// ProtocolLevel is the newest command level this binary can apply. Raise it
// by one in the change that appends a command type, and give the new type
// that level in commandSince. Nodes advertise it in their gossip metadata.
const ProtocolLevel = 1

// BaseProtocolLevel is assumed for a node that advertises no level: the
// builds before the gate existed. Level 1 is every type up to
// TypeDeleteConfig, the types of the tree the gate was added to; no
// release was made before it. A type merged after the gate gets level 2
// (and ProtocolLevel becomes 2); the next release that adds types, 3.
const BaseProtocolLevel = 1

// commandSince is the protocol level that introduced each command type. A
// type missing here is treated as ProtocolLevel (the newest), so forgetting
// an entry gates too much rather than too little; a test requires an entry
// for every decodable type.
var commandSince = map[CommandType]int{
	TypeBootstrapCluster: 1,
	TypeUpsertNode:       1,
	TypeUpdateNode:       1,
	TypeSetNodeStatus:    1,
	TypeSetNodeVoter:     1,
	TypeRemoveNode:       1,
	TypeRotateToken:      1,
	TypeSetGossipKeys:    1,
	TypeCreateService:    1,
	TypeUpdateService:    1,
	TypeDeleteService:    1,
	TypeUpsertTasks:      1,
	TypeTaskStatus:       1,
	TypeDeleteTasks:      1,
	TypeUpsertImage:      1,
	TypeSetImageNode:     1,
	TypeDeleteImage:      1,
	TypeBatch:            1,
	TypeTrimTasks:        1,
	TypeRevokeCert:       1,
	TypeSetVoterTarget:   1,
	TypeSetClusterEpoch:  1,
	TypeSealClusterKeys:  1,
	TypeRotateCA:         1,
	TypeFinishCARotation: 1,
	TypeSetNodeCert:      1,
	TypeCreateNetwork:    1,
	TypeDeleteNetwork:    1,
	TypeCreateSecret:     1,
	TypeDeleteSecret:     1,
	TypeCreateConfig:     1,
	TypeDeleteConfig:     1,
}

// ErrCommandUnsupported: a member of the Raft configuration runs a release
// too old to apply the command; the leader refuses to propose it until that
// member is upgraded (or removed).
var ErrCommandUnsupported = errors.New("command not supported by every node of the cluster yet")

// SinceLevel returns the protocol level a node needs to apply cmd: the level
// that introduced its type, and for a batch the highest of its commands.
func SinceLevel(cmd Command) int {
	if b, ok := cmd.(Batch); ok {
		lvl := commandSince[TypeBatch]
		for _, c := range b.Commands {
			lvl = max(lvl, SinceLevel(c))
		}
		return lvl
	}
	if b, ok := cmd.(*Batch); ok && b != nil {
		return SinceLevel(*b)
	}
	if lvl, ok := commandSince[cmd.Type()]; ok {
		return lvl
	}
	return ProtocolLevel
}

// PeerLevel is what the leader knows of one member of the Raft
// configuration: its advertised protocol level and release (Known false when
// gossip has not reported the member since this leader started).
type PeerLevel struct {
	ID      string
	Level   int
	Version string
	Known   bool
}

// CheckCommandLevel refuses cmd, with ErrCommandUnsupported naming the
// nodes that hold it back, unless every peer's level reaches SinceLevel(cmd).
// A peer of unknown level counts as BaseProtocolLevel: it may come back
// running the oldest release that can still be in the cluster. Pure.
func CheckCommandLevel(cmd Command, peers []PeerLevel) error {
	return CheckLevel(cmd.Type(), SinceLevel(cmd), peers)
}

// CheckLevel is CheckCommandLevel for a command of type t that needs level
// need (tests pass levels above this binary's).
func CheckLevel(t CommandType, need int, peers []PeerLevel) error {
	var behind []string
	for _, p := range peers {
		lvl := p.Level
		if !p.Known || lvl <= 0 {
			lvl = BaseProtocolLevel
		}
		if lvl < need {
			v := p.Version
			if v == "" {
				v = "unknown release"
			}
			id := p.ID
			if len(id) > 12 {
				id = id[:12]
			}
			behind = append(behind, fmt.Sprintf("%s (%s, level %d)", id, v, lvl))
		}
	}
	if len(behind) == 0 {
		return nil
	}
	sort.Strings(behind)
	return fmt.Errorf("%w: command type %d needs protocol level %d, and these nodes run an older release: %s; upgrade them first (docs/upgrades.md)",
		ErrCommandUnsupported, t, need, strings.Join(behind, ", "))
}
