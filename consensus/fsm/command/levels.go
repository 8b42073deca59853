package command

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/shoal-org/shoal/api"
)

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
const ProtocolLevel = 8

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
var commandSince = map[Type]int{
	TypeBootstrapCluster:  1,
	TypeUpsertNode:        1,
	TypeUpdateNode:        1,
	TypeSetNodeStatus:     1,
	TypeSetNodeVoter:      1,
	TypeRemoveNode:        1,
	TypeRotateToken:       1,
	TypeSetGossipKeys:     1,
	TypeCreateService:     1,
	TypeUpdateService:     1,
	TypeDeleteService:     1,
	TypeUpsertTasks:       1,
	TypeTaskStatus:        1,
	TypeDeleteTasks:       1,
	TypeUpsertImage:       1,
	TypeSetImageNode:      1,
	TypeDeleteImage:       1,
	TypeBatch:             1,
	TypeTrimTasks:         1,
	TypeRevokeCert:        1,
	TypeSetVoterTarget:    1,
	TypeSetClusterEpoch:   1,
	TypeSealClusterKeys:   1,
	TypeRotateCA:          1,
	TypeFinishCARotation:  1,
	TypeSetNodeCert:       1,
	TypeCreateNetwork:     1,
	TypeDeleteNetwork:     1,
	TypeCreateSecret:      1,
	TypeDeleteSecret:      1,
	TypeCreateConfig:      1,
	TypeDeleteConfig:      1,
	TypeUpdateOwnNode:     2,
	TypeRecordCertExpiry:  2,
	TypeTrimRevoked:       2,
	TypeStageNodeCert:     3,
	TypeConfirmNodeCert:   3,
	TypeClaimNetworkShare: SharesLevel,
	TypeSetRunAttachments: RunAttachmentsLevel,
}

// RunAttachmentsLevel is the level whose state machine records the `shoal
// run` containers attached to each network (SetRunAttachments) and refuses
// to delete a network while one is. An older binary cannot decode the
// command; in a cluster with such a member the gate refuses it and a
// network rm is checked against services only, as before.
const RunAttachmentsLevel = 7

// VoterTimeLevel is the level whose state machine stores SetNodeVoter's
// Now as the node's UpdatedAt (the time of its promoted or demoted
// event). An older replica decodes the command without Now and keeps the
// old UpdatedAt: the replicas would differ, so a SetNodeVoter that
// carries Now needs every member at this level; the leader sends it
// without Now otherwise (node/leaderloop's recordVoters).
const VoterTimeLevel = 7

// EndpointLevel is the protocol level whose state machine knows a service
// spec's EndpointMode and NetworkAliases: a dnsrr service holds no VIP, an
// alias that clashes on a network is refused. An older binary decodes a
// CreateService or UpdateService without those fields and applies it
// differently — it would allocate the dnsrr service a VIP, and every
// later VIP would then differ between replicas — so a command whose spec
// sets either needs this level (bodySince), though its type is older.
const EndpointLevel = 4

// AutoPortLevel is the level that applies a service create or update with
// a port whose published port is 0 by picking one (consensus/fsm's
// publishPorts). Older releases refuse such a spec when they apply it
// while this one stores it: the replicas would diverge, so the leader
// proposes it only when every member has this level (bodySince).
const AutoPortLevel = 4

// PlacementLevel is the level whose state machine keeps a spec's
// MaxReplicasPerNode and PlacementPreferences: an older replica would
// store the spec without them, and should it lead, place the tasks as if
// unlimited and unspread.
const PlacementLevel = 4

// LoggingLevel is the level whose state machine keeps a spec's LogDriver
// and LogOptions: an older replica would store the spec without them,
// and should it lead, its tasks would keep the node's default logs.
const LoggingLevel = 4

// JobLevel is the level whose state machine and planner know the job
// modes (replicated-job, global-job) and MaxConcurrent: an older replica
// would store the spec without MaxConcurrent and, should it lead, plan a
// job as a service it does not know. A create or update of a job needs
// every member at this level.
const JobLevel = 5

// SharesLevel is the level whose state machine and agents know
// allocated node shares (api.Network.ShareBits, Shares): networks too small
// for index-derived shares. An older state machine refuses to create such
// a network (too small) and would assign no shares when a task is placed,
// and an older agent finds no share for itself (it cannot run the
// network's containers, never misroutes them). So a CreateNetwork with
// ShareBits needs every member at this level, ClaimNetworkShare is a type
// of this level, and the scheduler places a task on such a network only
// on nodes of this level.
const SharesLevel = 6

// JobGiveUpLevel is the level whose leader reads a job task that failed
// and is stored desired shutdown as its slot's end, retried or not by the
// restart policy (node/scheduler/jobs' classify). An older leader reads a
// slot whose tasks are all desired shutdown as empty and runs it again, so
// the planner stores a failed job task that will not be retried desired
// shutdown (as swarmkit does) only while every node is at this level, and
// keeps it desired running otherwise. No command or field changes: the
// level orders leaders, not state machines (behaviourSince).
const JobGiveUpLevel = 8

// bodySince lists the levels that introduced fields an older state machine
// would apply differently (a test requires ProtocolLevel to cover them).
var bodySince = []int{EndpointLevel, AutoPortLevel, PlacementLevel, LoggingLevel, JobLevel, SharesLevel, VoterTimeLevel}

// behaviourSince lists the levels that introduced a way of writing the
// state that an older leader would read differently, though every state
// machine applies it alike (a test requires ProtocolLevel to cover them).
var behaviourSince = []int{JobGiveUpLevel}

// bodyLevel is the level cmd's content needs beyond its type's: the
// fields of bodySince, for the service commands (an endpoint mode or
// aliases; a port that asks for its published port; a placement limit or
// preference; log options), in the spec and in the previous spec a
// rollback goes back to: an older replica stores both without those
// fields, and should it lead, would roll back to a spec without them.
func bodyLevel(cmd Command) int {
	var svc *api.Service
	switch c := cmd.(type) {
	case CreateNetwork:
		return networkLevel(&c.Network)
	case *CreateNetwork:
		return networkLevel(&c.Network)
	case SetNodeVoter:
		return voterLevel(c)
	case *SetNodeVoter:
		return voterLevel(*c)
	case CreateService:
		svc = &c.Service
	case *CreateService:
		svc = &c.Service
	case UpdateService:
		svc = &c.Service
	case *UpdateService:
		svc = &c.Service
	}
	if svc == nil {
		return BaseProtocolLevel
	}
	lvl := specLevel(&svc.Spec)
	if svc.PreviousSpec != nil {
		lvl = max(lvl, specLevel(svc.PreviousSpec))
	}
	for _, p := range svc.Spec.Ports {
		// Only the spec's ports are picked (a previous spec's were
		// when it was the spec).
		if p.Published == 0 {
			lvl = max(lvl, AutoPortLevel)
		}
	}
	return lvl
}

// voterLevel is the level a SetNodeVoter needs: VoterTimeLevel when it
// carries Now.
func voterLevel(c SetNodeVoter) int {
	if !c.Now.IsZero() {
		return VoterTimeLevel
	}
	return BaseProtocolLevel
}

// networkLevel is the level a network record needs: SharesLevel for one
// with allocated shares.
func networkLevel(n *api.Network) int {
	if n.ShareBits != 0 || len(n.Shares) > 0 {
		return SharesLevel
	}
	return BaseProtocolLevel
}

// specLevel is the level of the fields of bodySince that spec sets, but
// its ports.
func specLevel(spec *api.ServiceSpec) int {
	lvl := BaseProtocolLevel
	if spec.EndpointMode != "" || len(spec.NetworkAliases) > 0 {
		lvl = max(lvl, EndpointLevel)
	}
	if spec.MaxReplicasPerNode > 0 || len(spec.PlacementPreferences) > 0 {
		lvl = max(lvl, PlacementLevel)
	}
	if spec.LogDriver != "" || len(spec.LogOptions) > 0 {
		lvl = max(lvl, LoggingLevel)
	}
	if api.IsJob(spec.Mode) || spec.MaxConcurrent > 0 {
		lvl = max(lvl, JobLevel)
	}
	return lvl
}

// ErrUnsupported: a member of the Raft configuration runs a release too
// old to apply the command; the leader refuses to propose it until that
// member is upgraded (or removed).
var ErrUnsupported = errors.New("command not supported by every node of the cluster yet")

// SinceLevel returns the protocol level a node needs to apply cmd: the level
// that introduced its type or the fields it sets (bodyLevel), and for a
// batch the highest of its commands.
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
		return max(lvl, bodyLevel(cmd))
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

// CheckPeers refuses cmd, with ErrUnsupported naming the nodes that hold
// it back, unless every peer's level reaches SinceLevel(cmd).
// A peer of unknown level counts as BaseProtocolLevel: it may come back
// running the oldest release that can still be in the cluster. Pure.
func CheckPeers(cmd Command, peers []PeerLevel) error {
	return CheckLevel(cmd.Type(), SinceLevel(cmd), peers)
}

// CheckLevel is CheckPeers for a command of type t that needs level need
// (node's gate, with levels tests may raise above this binary's).
func CheckLevel(t Type, need int, peers []PeerLevel) error {
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
		ErrUnsupported, t, need, strings.Join(behind, ", "))
}
