package node

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
//
// authorize is the whole decision, a pure function of the caller, the
// command and the caller's stored node record, table-tested over every
// command type (authz_test.go). Raft traffic is gated separately at accept
// time (mux.go): only members of the Raft configuration may send it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/scheduler"
	"github.com/shoal-org/shoal/overlay"
	"github.com/shoal-org/shoal/runtime/image"
)

var (
	// ErrForbidden: the caller's identity does not allow the command.
	ErrForbidden = errors.New("forbidden")
	// ErrWorker: a worker node's API socket answers reads only.
	ErrWorker = errors.New("this node is a worker")
	// ErrReservedPort: a service spec publishes a port the cluster itself uses.
	ErrReservedPort = errors.New("reserved port")
)

// codeForbidden carries ErrForbidden and ErrWorker refusals across RPC.
const codeForbidden = "forbidden"

// callerKind is who proposes a command, as the leader sees it.
type callerKind int

const (
	// callerLeader is the leader's own loops (scheduler, autopilot, node
	// status, join admission): everything is allowed.
	callerLeader callerKind = iota
	// callerNode is a member node proposing a raw command (rpcApply): it may
	// only speak about its own objects.
	callerNode
	// callerAdmin is a user on a node's API socket (rpcAdminWrite, or the
	// leader's own socket): admin actions only, and never from a worker.
	callerAdmin
)

func (k callerKind) String() string {
	switch k {
	case callerLeader:
		return "leader"
	case callerNode:
		return "node"
	case callerAdmin:
		return "admin"
	}
	return "unknown"
}

// caller identifies the proposer of a command.
type caller struct {
	Kind   callerKind
	NodeID string // from the peer certificate; the leader's own ID for callerLeader
	// Worker is true when the caller's node record has role worker.
	Worker bool
}

// Admin actions: the narrow requests a node's API socket may forward.
const (
	actionCreateService = "create_service"
	actionUpdateService = "update_service"
	actionDeleteService = "delete_service"
	actionUpdateNode    = "update_node"
	actionRotateToken   = "rotate_token"
	// Secrets and configs (secrets.go).
	actionCreateSecret  = "create_secret"
	actionDeleteSecret  = "delete_secret"
	actionCreateConfig  = "create_config"
	actionDeleteConfig  = "delete_config"
	actionCreateNetwork = "create_network"
	actionDeleteNetwork = "delete_network"
)

// adminAction names the admin action a command performs, or "" for a
// command that is not an admin action (a node's own report, or a
// cluster-internal command).
func adminAction(cmd consensus.Command) string {
	if cmd == nil {
		return ""
	}
	switch cmd.Type() {
	case consensus.TypeCreateService:
		return actionCreateService
	case consensus.TypeUpdateService:
		return actionUpdateService
	case consensus.TypeDeleteService:
		return actionDeleteService
	case consensus.TypeUpdateNode:
		return actionUpdateNode
	case consensus.TypeRotateToken:
		return actionRotateToken
	case consensus.TypeCreateSecret:
		return actionCreateSecret
	case consensus.TypeDeleteSecret:
		return actionDeleteSecret
	case consensus.TypeCreateConfig:
		return actionCreateConfig
	case consensus.TypeDeleteConfig:
		return actionDeleteConfig
	case consensus.TypeCreateNetwork:
		return actionCreateNetwork
	case consensus.TypeDeleteNetwork:
		return actionDeleteNetwork
	}
	return ""
}

// authorize decides whether c may propose cmd. self is the caller's node
// record in the leader's replica (nil when unknown); only UpsertNode reads
// it. It returns nil or an error wrapping ErrForbidden (ErrWorker for an
// admin action from a worker) that says why. It does not validate the
// command's content beyond identity (specs: checkSpecOnLeader).
func authorize(c caller, cmd consensus.Command, self *api.Node) error {
	if cmd == nil {
		return fmt.Errorf("%w: empty command", ErrForbidden)
	}
	switch c.Kind {
	case callerLeader:
		return nil
	case callerAdmin:
		if adminAction(cmd) == "" {
			return fmt.Errorf("%w: %s is not an admin action: only the leader proposes it", ErrForbidden, typeName(cmd))
		}
		if c.Worker {
			return fmt.Errorf("%w: node %s is a worker: workers cannot change the cluster (make it a manager with `shoal node update --role manager` on a manager)",
				ErrWorker, shortID(c.NodeID))
		}
		return nil
	case callerNode:
		return authorizeOwn(c.NodeID, cmd, self)
	}
	return fmt.Errorf("%w: unknown caller", ErrForbidden)
}

// authorizeOwn allows the commands by which a node speaks for itself.
func authorizeOwn(id string, cmd consensus.Command, self *api.Node) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: node %s: %s", ErrForbidden, shortID(id), fmt.Sprintf(format, args...))
	}
	if id == "" {
		return fmt.Errorf("%w: a node certificate is required", ErrForbidden)
	}
	switch c := deref(cmd).(type) {
	case consensus.TaskStatus:
		// The FSM ignores reports about tasks not assigned to NodeID, so a
		// node that names itself can only touch its own tasks.
		if c.NodeID != id {
			return refuse("may report status only for its own tasks, not for node %s", shortID(c.NodeID))
		}
		return nil
	case consensus.SetImageNode:
		if c.NodeID != id {
			return refuse("may record only its own images, not node %s's", shortID(c.NodeID))
		}
		return nil
	case consensus.UpsertImage:
		for _, n := range c.Image.Nodes {
			if n != id {
				return refuse("may record only itself as holding image %s, not node %s", c.Image.ID, shortID(n))
			}
		}
		return nil
	case consensus.UpsertNode:
		if c.Node.ID != id {
			return refuse("may update only its own node record, not node %s's", shortID(c.Node.ID))
		}
		if self == nil {
			return refuse("has no node record to update (it joins through the join RPC)")
		}
		if f := nodeFieldsNotOwned(*self, c.Node); len(f) > 0 {
			return refuse("may change only the fields a node owns (addresses, ports, resources), not %s", strings.Join(f, ", "))
		}
		return nil
	case consensus.Batch:
		for i, inner := range c.Commands {
			if err := authorizeOwn(id, inner, self); err != nil {
				return fmt.Errorf("batch command %d: %w", i, err)
			}
		}
		return nil
	}
	return refuse("%s is cluster-internal: only the leader proposes it", typeName(cmd))
}

// deref turns the *T commands callers build into the T values the decoder
// makes, so one type switch sees both.
func deref(cmd consensus.Command) consensus.Command {
	switch c := cmd.(type) {
	case *consensus.TaskStatus:
		return *c
	case *consensus.SetImageNode:
		return *c
	case *consensus.UpsertImage:
		return *c
	case *consensus.UpsertNode:
		return *c
	case *consensus.Batch:
		return *c
	}
	return cmd
}

// nodeFieldsNotOwned lists the JSON fields in which next differs from cur
// other than those a node owns about itself.
func nodeFieldsNotOwned(cur, next api.Node) []string {
	// Copy the node-owned fields over, then compare what is left.
	owned := cur
	owned.Hostname = next.Hostname
	owned.Addr = next.Addr
	owned.ClusterPort = next.ClusterPort
	owned.GossipPort = next.GossipPort
	owned.Resources = next.Resources
	owned.WireGuardKey = next.WireGuardKey
	owned.UpdatedAt = next.UpdatedAt
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

// typeName names a command type for messages.
func typeName(cmd consensus.Command) string {
	name := fmt.Sprintf("%T", deref(cmd))
	return strings.TrimPrefix(name, "consensus.")
}

// adminOpCheck gates the membership operations of rpcAdmin: any node may
// leave (itself: join.go checks), only a manager may remove another node.
func adminOpCheck(op string, c caller) error {
	if op == "remove" && c.Worker {
		return fmt.Errorf("%w: node %s is a worker: workers cannot remove nodes", ErrWorker, shortID(c.NodeID))
	}
	return nil
}

// adminOpAllowed is adminOpCheck for a peer, from this node's replica.
func (a *Agent) adminOpAllowed(peerID, op string) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	c, _ := callerOf(cl, callerAdmin, peerID)
	return adminOpCheck(op, c)
}

// fetchAllowed limits what a peer may read from this node to what a node
// needs: blobs and descriptors of images recorded in the cluster (a task
// anywhere may need them), and the logs of task containers (`service logs`
// from any node), never of one-off `shoal run` containers.
func (a *Agent) fetchAllowed(req rpcRequest) error {
	cl, err := a.clusterOrErr()
	if err != nil {
		return err
	}
	switch req.Method {
	case rpcBlob:
		var b blobRPCRequest
		if err := json.Unmarshal(req.Body, &b); err != nil {
			return fmt.Errorf("malformed blob request: %w", err)
		}
		if !a.clusterBlob(cl, b.Digest) {
			return fmt.Errorf("%w: blob %s belongs to no image of the cluster", ErrForbidden, b.Digest)
		}
	case rpcManifest:
		var m manifestRPCRequest
		if err := json.Unmarshal(req.Body, &m); err != nil {
			return fmt.Errorf("malformed manifest request: %w", err)
		}
		if _, ok := findClusterImage(cl, m.Ref); !ok {
			return fmt.Errorf("%w: image %s is not an image of the cluster", ErrForbidden, m.Ref)
		}
	case rpcLogs:
		var l logsRPCRequest
		if err := json.Unmarshal(req.Body, &l); err != nil {
			return fmt.Errorf("malformed logs request: %w", err)
		}
		c, err := a.rt.Get(l.ContainerID)
		if err != nil {
			return err
		}
		if c.TaskID == "" {
			return fmt.Errorf("%w: container %s is not a task's", ErrForbidden, l.ContainerID)
		}
	}
	return nil
}

// clusterBlob reports whether digest is the config or a layer of an image
// recorded in the cluster state.
func (a *Agent) clusterBlob(cl *cluster, digest string) bool {
	if digest == "" {
		return false
	}
	for _, img := range cl.store.Images() {
		if img.ID == digest || slices.Contains(img.Layers, digest) {
			return true
		}
	}
	// Records made without layer digests: ask the local descriptors.
	for _, img := range cl.store.Images() {
		raw, err := a.images.Manifest(img.ID)
		if err != nil {
			continue
		}
		d, err := image.ParseDescriptor(raw)
		if err == nil && slices.Contains(d.Blobs(), digest) {
			return true
		}
	}
	return false
}

// Ports the cluster itself uses on every node, whatever the flags say: a
// service publishing one would take the cluster down on every node.
var defaultReservedPorts = []int{2377, 7946, overlay.DefaultPort, 51820}

// reservedPorts returns the port numbers no service may publish: the
// defaults plus the cluster and gossip ports every node advertises in its
// record.
func reservedPorts(nodes []*api.Node) map[int]string {
	out := map[int]string{}
	for _, p := range defaultReservedPorts {
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

// checkReservedPorts refuses published ports the cluster uses. Ports in
// keep (already published by the stored spec) are not checked again, so a
// service stored before this rule can still be scaled or removed.
func checkReservedPorts(spec api.ServiceSpec, reserved map[int]string, keep []api.PortConfig) error {
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

// checkSpecOnLeader re-validates a spec the leader is about to commit for
// an admin action: the shared validation of node/scheduler and the
// reserved ports. old is the stored service for an update (nil on create).
func checkSpecOnLeader(spec api.ServiceSpec, old *api.Service, nodes []*api.Node) error {
	if err := scheduler.ValidateSpec(spec); err != nil {
		return fmt.Errorf("%w: invalid service spec: %w", consensus.ErrInvalid, err)
	}
	var keep []api.PortConfig
	if old != nil {
		keep = old.Spec.Ports
	}
	if err := checkReservedPorts(spec, reservedPorts(nodes), keep); err != nil {
		return fmt.Errorf("%w: %w", consensus.ErrInvalid, err)
	}
	return nil
}

// raftLostAfter is how long a follower may go without hearing from a
// leader before it stops trusting its own Raft configuration to be current.
const raftLostAfter = 10 * time.Second

// raftPeerAllowed decides at accept time whether a certified peer may speak
// Raft to this node. Only members of the Raft configuration may: a node
// with a valid certificate that is not a member (removed, or from before a
// --force-new-cluster) must not make a follower adopt its term or a leader
// step down. Two exceptions keep the cluster able to grow and heal:
//
//   - an empty configuration is a node joining: the leader added it as a
//     non-voter and dials it (the joiner never dials Raft: it is no
//     candidate until it votes, and followers only answer), so the first
//     AppendEntries comes from a peer it cannot know yet;
//   - a follower that has not heard from a leader for raftLostAfter may
//     hold a stale configuration (it was away while nodes joined and one of
//     them became leader); it has no leader to lose, so it listens.
//
// A leader never accepts a non-member.
func raftPeerAllowed(servers []consensus.Server, peerID string, leader bool, lastContact, now time.Time) error {
	if len(servers) == 0 {
		return nil
	}
	for _, s := range servers {
		if s.ID == peerID {
			return nil
		}
	}
	if !leader && now.Sub(lastContact) > raftLostAfter {
		return nil
	}
	return fmt.Errorf("%w: node %s is not a member of the raft configuration", ErrForbidden, shortID(peerID))
}

// raftGate is the mux's Raft admission check for the running raft r.
func raftGate(r *consensus.Raft) func(peerID string) error {
	return func(peerID string) error {
		servers, err := r.Servers()
		if err != nil {
			return err
		}
		return raftPeerAllowed(servers, peerID, r.IsLeader(), r.LastContact(), time.Now())
	}
}
