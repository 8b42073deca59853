// Package authz is the leader's authorization table: which caller (the
// leader's own loops, a member node by its certificate, a user on a node's
// API socket) may propose which command, what a node may change of its own
// record, which ports no service may publish, and who may speak Raft. It is
// pure: the agent (node) looks up the caller and its record and asks.
package authz

// Authorization on the leader. A node's certificate speaks only for that
// node (DESIGN.md, Trust model); the leader checks every command that
// arrives over the cluster port against the identity the TLS handshake
// proved, before it proposes anything to Raft:
//
//   - rpcApply carries a raw command a node proposes about itself: status
//     reports for its own tasks, its own image holdings, the fields of its
//     own node record that the node owns (addresses, ports, resources).
//     Nothing else: every cluster-internal command (bootstrap, token,
//     gossip keys, revocations, voters, node status, task assignments…) is
//     proposed by the leader's own loops only, never accepted from a peer.
//   - rpcAdminWrite carries what a user asked on a node's API socket
//     ("a user on node X asked to create service S"): one narrow action per
//     request (create/update/delete a service, update a node, rotate the
//     token), re-validated on the leader, recorded with who asked, and
//     refused when node X is a worker: a worker's root cannot change the
//     cluster.
//   - Either way the caller must be a member the leader's replica holds a
//     record of (Caller.Member): a certificate that outlived its node's
//     record speaks for nobody.
//
// Authorize is the whole decision, a pure function of the caller, the
// command and the caller's stored node record, table-tested over every
// command type (authz_test.go). Raft traffic is gated separately at accept
// time (node/clusterport, RaftPeerAllowed): only voters of the Raft configuration may open it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
	"github.com/shoal-org/shoal/overlay"
)

var (
	// ErrForbidden: the caller's identity does not allow the command.
	ErrForbidden = errors.New("forbidden")
	// ErrWorker: a worker node's API socket answers reads only.
	ErrWorker = errors.New("this node is a worker")
	// ErrReservedPort: a service spec publishes a port the cluster itself uses.
	ErrReservedPort = errors.New("reserved port")
)

// Kind is who proposes a command, as the leader sees it.
type Kind int

const (
	// Leader is the leader's own loops (scheduler, autopilot, node
	// status, join admission): everything is allowed.
	Leader Kind = iota
	// Node is a member node proposing a raw command (rpcApply): it may
	// only speak about its own objects.
	Node
	// Admin is a user on a node's API socket (rpcAdminWrite, or the
	// leader's own socket): admin actions only, and never from a worker.
	Admin
)

func (k Kind) String() string {
	switch k {
	case Leader:
		return "leader"
	case Node:
		return "node"
	case Admin:
		return "admin"
	}
	return "unknown"
}

// Caller identifies the proposer of a command.
//
// It fails closed: the zero value of Member (a caller the leader's replica
// holds no record of) is refused everything but what the leader's own
// loops propose. A valid certificate without a record is a removed node
// (one whose certificate outlived its removal, or was dropped by a
// snapshot restore) or one not admitted yet: it may join, and that is all;
// without a record there is no role to read, and reading none as "not a
// worker" made it an admin.
type Caller struct {
	Kind   Kind
	NodeID string // from the peer certificate; the leader's own ID for Leader
	// Member is true when the leader's replica holds the caller's node
	// record (and so its role).
	Member bool
	// Worker is true when the caller's node record has role worker.
	Worker bool
}

// notMember refuses a Node or Admin caller without a node record.
func notMember(c Caller, what string) error {
	return fmt.Errorf("%w: node %s has no record in the cluster's state (removed, or not admitted): it cannot %s",
		ErrForbidden, api.ShortID(c.NodeID), what)
}

// Admin actions: the narrow requests a node's API socket may forward.
const (
	ActionCreateService = "create_service"
	ActionUpdateService = "update_service"
	ActionDeleteService = "delete_service"
	ActionUpdateNode    = "update_node"
	ActionRotateToken   = "rotate_token"
	// Secrets and configs (node/writes secrets.go).
	ActionCreateSecret  = "create_secret"
	ActionDeleteSecret  = "delete_secret"
	ActionCreateConfig  = "create_config"
	ActionDeleteConfig  = "delete_config"
	ActionCreateNetwork = "create_network"
	ActionDeleteNetwork = "delete_network"
)

// AdminAction names the admin action a command performs, or "" for a
// command that is not an admin action (a node's own report, or a
// cluster-internal command).
func AdminAction(cmd command.Command) string {
	if cmd == nil {
		return ""
	}
	switch cmd.Type() {
	case command.TypeCreateService:
		return ActionCreateService
	case command.TypeUpdateService:
		return ActionUpdateService
	case command.TypeDeleteService:
		return ActionDeleteService
	case command.TypeUpdateNode:
		return ActionUpdateNode
	case command.TypeRotateToken:
		return ActionRotateToken
	case command.TypeCreateSecret:
		return ActionCreateSecret
	case command.TypeDeleteSecret:
		return ActionDeleteSecret
	case command.TypeCreateConfig:
		return ActionCreateConfig
	case command.TypeDeleteConfig:
		return ActionDeleteConfig
	case command.TypeCreateNetwork:
		return ActionCreateNetwork
	case command.TypeDeleteNetwork:
		return ActionDeleteNetwork
	}
	return ""
}

// Authorize decides whether c may propose cmd. self is the caller's node
// record in the leader's replica (nil when unknown); only UpsertNode reads
// it. A Node or Admin caller that is not a Member is refused. It returns
// nil or an error wrapping ErrForbidden (ErrWorker for an admin action from
// a worker) that says why. It does not validate the
// command's content beyond identity (specs: CheckSpecOnLeader).
func Authorize(c Caller, cmd command.Command, self *api.Node) error {
	if cmd == nil {
		return fmt.Errorf("%w: empty command", ErrForbidden)
	}
	switch c.Kind {
	case Leader:
		return nil
	case Admin:
		if AdminAction(cmd) == "" {
			return fmt.Errorf("%w: %s is not an admin action: only the leader proposes it", ErrForbidden, TypeName(cmd))
		}
		if !c.Member {
			return notMember(c, "change the cluster")
		}
		if c.Worker {
			return fmt.Errorf("%w: node %s is a worker: workers cannot change the cluster (make it a manager with `shoal node update --role manager` on a manager)",
				ErrWorker, api.ShortID(c.NodeID))
		}
		return nil
	case Node:
		if !c.Member {
			return notMember(c, "report about itself")
		}
		return authorizeOwn(c.NodeID, cmd, self)
	}
	return fmt.Errorf("%w: unknown caller", ErrForbidden)
}

// authorizeOwn allows the commands by which a node speaks for itself.
func authorizeOwn(id string, cmd command.Command, self *api.Node) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: node %s: %s", ErrForbidden, api.ShortID(id), fmt.Sprintf(format, args...))
	}
	if id == "" {
		return fmt.Errorf("%w: a node certificate is required", ErrForbidden)
	}
	switch c := deref(cmd).(type) {
	case command.TaskStatus:
		// The FSM ignores reports about tasks not assigned to NodeID, so a
		// node that names itself can only touch its own tasks.
		if c.NodeID != id {
			return refuse("may report status only for its own tasks, not for node %s", api.ShortID(c.NodeID))
		}
		return nil
	case command.SetImageNode:
		if c.NodeID != id {
			return refuse("may record only its own images, not node %s's", api.ShortID(c.NodeID))
		}
		return nil
	case command.ClaimNetworkShare:
		// A `shoal run` container's network share, for the node that
		// runs it.
		if c.NodeID != id {
			return refuse("may claim a network share only for itself, not for node %s", api.ShortID(c.NodeID))
		}
		return nil
	case command.SetRunAttachments:
		// Its `shoal run` containers on networks: a node speaks only for
		// the containers it runs.
		if c.NodeID != id {
			return refuse("may record only its own run containers, not node %s's", api.ShortID(c.NodeID))
		}
		return nil
	case command.UpsertImage:
		for _, n := range c.Image.Nodes {
			if n != id {
				return refuse("may record only itself as holding image %s, not node %s", c.Image.ID, api.ShortID(n))
			}
		}
		return nil
	case command.UpsertNode:
		if c.Node.ID != id {
			return refuse("may update only its own node record, not node %s's", api.ShortID(c.Node.ID))
		}
		if self == nil {
			return refuse("has no node record to update (it joins through the join RPC)")
		}
		if f := NodeFieldsNotOwned(*self, c.Node); len(f) > 0 {
			return refuse("may change only the fields a node owns (resources, WireGuard keys), not %s (hostname, address and ports change only by joining again)", strings.Join(f, ", "))
		}
		return nil
	case command.UpdateOwnNode:
		// Only the owned fields apply (api.CopyOwnedNodeFields).
		if c.Node.ID != id {
			return refuse("may update only its own node record, not node %s's", api.ShortID(c.Node.ID))
		}
		if self == nil {
			return refuse("has no node record to update (it joins through the join RPC)")
		}
		return nil
	case command.Batch:
		for i, inner := range c.Commands {
			if err := authorizeOwn(id, inner, self); err != nil {
				return fmt.Errorf("batch command %d: %w", i, err)
			}
		}
		return nil
	}
	return refuse("%s is cluster-internal: only the leader proposes it", TypeName(cmd))
}

// deref turns the *T commands callers build into the T values the decoder
// makes, so one type switch sees both.
func deref(cmd command.Command) command.Command {
	switch c := cmd.(type) {
	case *command.TaskStatus:
		return *c
	case *command.SetImageNode:
		return *c
	case *command.UpsertImage:
		return *c
	case *command.ClaimNetworkShare:
		return *c
	case *command.SetRunAttachments:
		return *c
	case *command.UpdateOwnNode:
		return *c
	case *command.UpsertNode:
		return *c
	case *command.Batch:
		return *c
	}
	return cmd
}

// NodeFieldsNotOwned lists the JSON fields in which next differs from cur
// other than those a node owns about itself.
func NodeFieldsNotOwned(cur, next api.Node) []string {
	// Copy the node-owned fields over, then compare what is left.
	//
	// The hostname, address and ports are not among them: they are fixed
	// when the leader admits the node (the join, which the token
	// authorizes) and change only by joining again. Other nodes act on
	// them: a hostname another node's short ID could be resolved to in
	// place of that node (`node update --role manager ID`), an address is
	// where others dial and send overlay traffic, and a node's ports are
	// reserved from publishing cluster-wide. The agent never changes them
	// in its own writes.
	owned := cur
	api.CopyOwnedNodeFields(&owned, next)
	// Derived at read time or by the FSM: never compared.
	owned.Version, next.Version = 0, 0
	owned.ManagerStatus, next.ManagerStatus = "", ""
	var a, b map[string]json.RawMessage
	ja, _ := json.Marshal(owned)
	jb, _ := json.Marshal(next)
	_ = json.Unmarshal(ja, &a)
	_ = json.Unmarshal(jb, &b)
	var diff []string
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			diff = append(diff, k)
		}
	}
	sort.Strings(diff)
	return diff
}

// TypeName names a command type for messages.
func TypeName(cmd command.Command) string {
	name := fmt.Sprintf("%T", deref(cmd))
	return strings.TrimPrefix(name, "consensus.")
}

// AdminOpCheck gates the membership operations of the admin RPC: any
// member may leave (itself: node/joining checks), only a manager may remove
// another node, and a node without a record may do neither.
func AdminOpCheck(op string, c Caller) error {
	if op == "remove" {
		return AdminCheck(c, "remove nodes")
	}
	if !c.Member {
		return notMember(c, op)
	}
	return nil
}

// AdminCheck gates what a user on node c's API socket asks of the leader
// beyond the admin actions (removing a node, restoring the cluster): a
// member that is not a worker. what says what was refused ("restore the
// cluster").
func AdminCheck(c Caller, what string) error {
	if !c.Member {
		return notMember(c, what)
	}
	if c.Worker {
		return fmt.Errorf("%w: node %s is a worker: workers cannot %s", ErrWorker, api.ShortID(c.NodeID), what)
	}
	return nil
}

// Ports the cluster itself uses on every node, whatever the flags say: a
// service publishing one would take the cluster down on every node.
var DefaultReservedPorts = []int{2377, 7946, overlay.DefaultPort, 51820}

// ReservedPorts returns the port numbers no service may publish: the
// defaults plus the cluster and gossip ports every node advertises in its
// record.
func ReservedPorts(nodes []*api.Node) map[int]string {
	out := map[int]string{}
	for _, p := range DefaultReservedPorts {
		out[p] = "a port of the cluster (raft/RPC 2377, gossip 7946, VXLAN 4789, WireGuard 51820)"
	}
	for _, n := range nodes {
		if n.ClusterPort > 0 {
			out[n.ClusterPort] = "the cluster port of node " + n.Hostname
		}
		if n.GossipPort > 0 {
			out[n.GossipPort] = "the gossip port of node " + n.Hostname
		}
	}
	return out
}

// CheckReservedPorts refuses published ports the cluster uses. Ports in
// keep (already published by the stored spec) are not checked again, so a
// service stored before this rule can still be scaled or removed.
func CheckReservedPorts(spec api.ServiceSpec, reserved map[int]string, keep []api.PortConfig) error {
	kept := map[int]bool{}
	for _, p := range keep {
		kept[p.Published] = true
	}
	var bad []string
	for _, p := range spec.Ports {
		if why, ok := reserved[p.Published]; ok && !kept[p.Published] {
			bad = append(bad, strconv.Itoa(p.Published)+" ("+why+")")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: service %s cannot publish %s: the cluster needs these ports on every node",
			ErrReservedPort, spec.Name, strings.Join(bad, ", "))
	}
	return nil
}

// CheckSpecOnLeader re-validates a spec the leader is about to commit for
// an admin action: the shared validation of node/scheduler and the
// reserved ports. old is the stored service for an update (nil on create).
func CheckSpecOnLeader(spec api.ServiceSpec, old *api.Service, nodes []*api.Node) error {
	if err := servicespec.Validate(spec); err != nil {
		return fmt.Errorf("%w: %w", consensus.ErrInvalid, err) // err says "invalid service spec: ..."
	}
	var keep []api.PortConfig
	if old != nil {
		keep = old.Spec.Ports
	}
	if err := CheckReservedPorts(spec, ReservedPorts(nodes), keep); err != nil {
		return fmt.Errorf("%w: %w", consensus.ErrInvalid, err)
	}
	return nil
}

// RaftLostAfter is how long a follower may go without hearing from a
// leader before it stops trusting its own Raft configuration to be current.
const RaftLostAfter = 10 * time.Second

// RaftPeerAllowed decides at accept time whether a certified peer may speak
// Raft to this node. Only voters of the Raft configuration may: a node
// with a valid certificate that is not a member (removed, or from before a
// --force-new-cluster) must not make a follower adopt its term or a leader
// step down, and neither may a non-voter (every worker is one). Raft
// traffic is opened by leaders (AppendEntries, InstallSnapshot,
// TimeoutNow) and candidates (RequestVote), voters all; a non-voter only
// answers on the connections the leader opens. A non-voter let through
// could speak as a leader: an AppendEntries with a higher term made the
// node adopt it, and its entries, committed by its own commit index, were
// applied — commands no authorization saw (a worker making itself a
// manager). Two exceptions keep the cluster able to grow and heal:
//
//   - a node joining (an empty configuration, or a replica still short of
//     the index the leader admitted it at: joining is true): the leader
//     added it as a non-voter and dials it (the joiner never dials Raft:
//     it is no candidate until it votes, and followers only answer), so
//     the first AppendEntries comes from a peer it cannot know yet; and
//     the configuration its first entries or the leader's snapshot bring
//     is older than its admission, maybe from before the leader voted (a
//     snapshot of a --force-new-cluster, a voter promoted since): judged
//     by it, the leader's next connection was refused until the 10 s
//     below ran out, and the leader marked the new node down meanwhile;
//   - a follower that has not heard from a leader for RaftLostAfter may
//     hold a stale configuration (it was away while nodes joined and one of
//     them became leader); it has no leader to lose, so it listens.
//
// A leader never accepts a non-member.
func RaftPeerAllowed(servers []raftnode.Server, peerID string, leader, joining bool, lastContact, now time.Time) error {
	if len(servers) == 0 || (joining && !leader) {
		return nil
	}
	member := false
	for _, s := range servers {
		if s.ID == peerID && s.Voter {
			return nil
		}
		member = member || s.ID == peerID
	}
	if !leader && now.Sub(lastContact) > RaftLostAfter {
		return nil
	}
	if member {
		return fmt.Errorf("%w: node %s does not vote in the raft configuration: only voters speak raft first", ErrForbidden, api.ShortID(peerID))
	}
	return fmt.Errorf("%w: node %s is not a member of the raft configuration", ErrForbidden, api.ShortID(peerID))
}
