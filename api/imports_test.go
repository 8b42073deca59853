package api_test

// The import rules of DESIGN.md ("Packages"), enforced. They keep the
// layers honest: consensus, runtime, overlay and lb expose small interfaces
// that node wires together, so none of them may reach into node, and the
// wire types in api stay free of everything but the standard library.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/shoal-org/shoal"

// listedPackage is the part of `go list -json` output the rules read.
type listedPackage struct {
	ImportPath   string
	Standard     bool
	DepOnly      bool
	Imports      []string
	Deps         []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// importRule says which packages of this module the non-test code of the
// packages under pkg may import. A pattern ending in "/..." matches the package and everything
// below it.
type importRule struct {
	pkg   string
	allow []string
}

var importRules = []importRule{
	// api and its subpackages: the standard library only, checked apart.
	// The subpackages are stdlib-only helpers every layer may share
	// (api/atomicfile), since the layers may share nothing but api, and the
	// agent's client, which no layer needs (api/client).
	{"api/...", []string{"api/..."}},
	// The agent's HTTP client (api/client/README.md): the wire types and
	// nothing else. No layer may take it (their rules leave it out): only
	// callers of an agent's socket, the CLI and the tests, need it.
	{"api/client/...", []string{"api", "api/client/..."}},
	{"consensus/...", []string{"api", "api/atomicfile", "consensus/..."}},
	// The raft log store on bbolt (consensus/logstore/README.md): consensus
	// opens it, so it never imports consensus.
	{"consensus/logstore/...", []string{"api/atomicfile", "consensus/logstore/..."}},
	// The voter planner (consensus/autopilot/README.md): pure over raftnode's
	// Server and api's nodes, and ApplyVoterChange drives a *raftnode.Raft;
	// neither consensus nor raftnode imports the planner.
	{"consensus/autopilot/...", []string{"api", "consensus", "consensus/raftnode", "consensus/autopilot/..."}},
	// The store's one writer (consensus/fsm/README.md): the FSM and its
	// appliers, over consensus's store and types; consensus never imports it.
	{"consensus/fsm/...", []string{"api", "consensus", "consensus/fsm/..."}},
	// The log entry format (consensus/fsm/command/README.md): the commands,
	// their codec and protocol levels. Proposers import it without the FSM,
	// so it never imports the FSM back.
	{"consensus/fsm/command/...", []string{"api", "consensus", "consensus/fsm/command/..."}},
	// The FSM's allocator (consensus/fsm/alloc/README.md): deterministic
	// scans of the write transaction for free subnets, VIPs and VNIs; the
	// FSM imports it, never the other way round.
	{"consensus/fsm/alloc/...", []string{"api", "consensus", "consensus/fsm/alloc/..."}},
	// Backup files (consensus/snapshotfile/README.md): the store's snapshot
	// document behind a verified header, and the restore plan (pure).
	{"consensus/snapshotfile/...", []string{"api", "consensus", "consensus/snapshotfile/..."}},
	// This node's raft instance (consensus/raftnode/README.md): the log
	// store, the FSM it drives into the store, and the restore plans it
	// installs, and the commands it proposes; consensus, fsm and
	// snapshotfile never import it.
	{"consensus/raftnode/...", []string{"api", "consensus", "consensus/fsm", "consensus/fsm/command", "consensus/heartbeat", "consensus/logstore", "consensus/snapshotfile", "consensus/raftnode/..."}},
	// raft's heartbeat thinning transport (consensus/heartbeat/README.md):
	// hashicorp/raft only; raftnode builds it.
	{"consensus/heartbeat/...", []string{"consensus/heartbeat/..."}},
	// The store itself: its subpackages import it, never the other way
	// round (the log store's ErrLogUnreadable is re-exported).
	{"consensus", []string{"api", "api/atomicfile", "consensus/logstore"}},
	{"runtime/...", []string{"api", "api/atomicfile", "api/containeropts", "api/timerslack", "runtime/..."}},
	// The layer unpacker (runtime/image/unpack/README.md): untrusted bytes
	// to disk, so nothing of this module; the image store imports it (and
	// re-exports its sentinel errors and Limits), never the other way round.
	{"runtime/image/unpack/...", []string{"runtime/image/unpack/..."}},
	// The OCI spec builder (runtime/ocispec/README.md): pure, so the
	// runtime imports it and it never imports the runtime back.
	{"runtime/ocispec/...", []string{"api", "api/containeropts", "runtime/ocispec/..."}},
	// The mountpoints layer (runtime/mountlayer/README.md): which mount
	// destinations it holds, against the image's layer dirs, and building
	// its dir; the runtime imports it and keeps the layers on disk, and it
	// never imports the runtime back.
	{"runtime/mountlayer/...", []string{"runtime/ocispec", "runtime/mountlayer/..."}},
	// The node supervisor's client (runtime/supclient/README.md): the
	// protocol from runtime/supervisor, nothing of the runtime.
	{"runtime/supclient/...", []string{"api/timerslack", "runtime/supervisor", "runtime/supclient/..."}},
	// Named volumes on disk and their copy-up (runtime/volume/README.md).
	{"runtime/volume/...", []string{"api", "runtime/ocispec", "runtime/rmtree", "runtime/volume/..."}},
	// Removing a tree a container wrote with a bounded number of open
	// descriptors and no link followed (runtime/rmtree/README.md): the
	// standard library and x/sys only.
	{"runtime/rmtree/...", []string{"runtime/rmtree/..."}},
	// A container's cgroup usage and OOM kills (runtime/cgstats/README.md):
	// the standard library only, so the autoscaler and the metrics
	// collector read usage without the runtime.
	{"runtime/cgstats/...", []string{"runtime/cgstats/..."}},
	// A container's persistent network namespace (runtime/netns/README.md).
	{"runtime/netns/...", []string{"runtime/netns/..."}},
	// The parts of a container's life split out of the runtime
	// (runtime/README.md, "Packages"): each has one job, takes small inputs
	// and never imports the runtime (the runtime imports them).
	// Exec: a process in a running container through the supervisor.
	{"runtime/execproc/...", []string{"api", "runtime/ocispec", "runtime/supervisor", "runtime/execproc/..."}},
	// Health checks: Docker's rules, the loop over health.Container and
	// the `runc exec` probe.
	{"runtime/health/...", []string{"api", "runtime/ocispec", "runtime/supervisor", "runtime/health/..."}},
	// Reading, tailing and following a container's log files.
	{"runtime/logfile/...", []string{"api", "runtime/containerinit", "runtime/supervisor", "runtime/logfile/..."}},
	// The exit record of a run: its code, error and end.
	{"runtime/exitrecord/...", []string{"runtime/containerinit", "runtime/supervisor", "runtime/exitrecord/..."}},
	// Where a container's files are (data dir and run dir): pure.
	{"runtime/layout/...", []string{"runtime/layout/..."}},
	// A container's bundle files (/etc files, config.json).
	{"runtime/bundle/...", []string{"api", "runtime/layout", "runtime/ocispec", "runtime/rootfs", "runtime/bundle/..."}},
	// runc's seccomp programs, captured once per profile for the
	// containers' inits to install: the standard library, x/sys and the
	// OCI types only.
	{"runtime/seccompprog/...", []string{"runtime/seccompprog/..."}},
	// The overlay rootfs mount and unmount.
	{"runtime/rootfs/...", []string{"runtime/ocispec", "runtime/rootfs/..."}},
	// A task's secret and config files on a tmpfs of its own.
	{"runtime/secretfs/...", []string{"runtime/ocispec", "runtime/rootfs", "runtime/secretfs/..."}},
	// A container's init by pid: ready for SIGTERM, signalled by pidfd.
	{"runtime/initproc/...", []string{"runtime/initproc/..."}},
	// Finding and checking shoal-init and shoal-supervisor.
	{"runtime/companion/...", []string{"runtime/companion/..."}},
	// Container events and their subscribers.
	{"runtime/eventhub/...", []string{"api", "runtime/eventhub/..."}},
	// A container's record (container.json): its format, load, save and
	// what a start and an exit change in it.
	{"runtime/record/...", []string{"api", "api/atomicfile", "runtime/layout", "runtime/ocispec", "runtime/record/..."}},
	// The runtime's configuration, its defaults and its checks.
	{"runtime/config/...", []string{"api", "runtime/companion", "runtime/containerinit", "runtime/config/..."}},
	{"overlay/...", []string{"api", "api/atomicfile", "api/timerslack", "overlay/..."}},
	// The overlay's parts (overlay/README.md): IPAM, the WireGuard side and
	// the device process it starts, the ports' anti-spoofing table, the
	// routing mesh's return path, and what they share (sentinel errors,
	// netlink steps). overlay imports them, so none may import overlay.
	{"overlay/ipam/...", []string{"overlay/overlayerr", "overlay/ipam/..."}},
	// The guard table (overlay/guard/README.md): nftables only; the overlay
	// hands it the ports.
	{"overlay/guard/...", []string{"overlay/guard/..."}},
	// The mesh return path (overlay/meshreturn/README.md): netlink and the
	// sysctl steps of linkutil; the overlay hands it the peers.
	{"overlay/meshreturn/...", []string{"overlay/linkutil", "overlay/meshreturn/..."}},
	{"overlay/wireguard/...", []string{"api/timerslack", "overlay/linkutil", "overlay/overlayerr", "overlay/wgdevice", "overlay/wireguard/..."}},
	{"overlay/wgdevice/...", []string{"overlay/wgdevice/..."}},
	{"overlay/linkutil/...", []string{"overlay/linkutil/..."}},
	{"overlay/overlayerr/...", []string{"overlay/overlayerr/..."}},
	{"lb/...", []string{"api", "api/atomicfile", "lb/..."}},
	// The embedded DNS server (lb/dns/README.md): nothing of this module,
	// and lb itself never imports it (nor the other way round): they share
	// only the bridge address, which the agent hands to both, so the load
	// balancer's rules and the resolver change and are tested apart.
	{"lb", []string{"api", "api/atomicfile"}},
	{"lb/dns/...", []string{"lb/dns/..."}},
	// The scheduler's packages (node/scheduler/README.md), all pure. The
	// planner (orchestration) uses placement and the spec rules; those never
	// reach back into it, so the admin routes and each node's planner take
	// the spec rules without the planner. simcluster, the planner's
	// in-memory cluster for tests and benchmarks, is the only one that
	// imports the planner.
	{"node/scheduler", []string{"api", "node/scheduler/jobs", "node/scheduler/placement", "node/scheduler/restartpolicy", "node/scheduler/servicespec", "node/scheduler/sightings", "node/scheduler/updatemonitor"}},
	{"node/scheduler/updatemonitor/...", []string{"api", "node/scheduler/updatemonitor/..."}},
	// The planner's first sights of nodes down and task events, its one
	// memory between plans (node/scheduler/sightings/README.md).
	{"node/scheduler/sightings/...", []string{"api", "node/scheduler/sightings/..."}},
	// What becomes of a task that ended (node/scheduler/restartpolicy/README.md).
	{"node/scheduler/restartpolicy/...", []string{"api", "node/scheduler/restartpolicy/..."}},
	// What a job service's tasks need (node/scheduler/jobs/README.md).
	{"node/scheduler/jobs/...", []string{"api", "node/scheduler/restartpolicy", "node/scheduler/jobs/..."}},
	{"node/scheduler/placement/...", []string{"api", "node/scheduler/placement/..."}},
	{"node/scheduler/servicespec/...", []string{"api", "api/containeropts", "node/scheduler/placement", "node/scheduler/servicespec/..."}},
	{"node/scheduler/simcluster/...", []string{"api", "node/scheduler", "node/scheduler/simcluster/..."}},
	// Each node's planner beside the leader's: what this node's containers
	// should do, from one snapshot (the reconciler's pure compute half; the
	// disconnect grace from the spec rules, node/scheduler/servicespec). The
	// runtime and the store stay in node.
	{"node/taskplan/...", []string{"api", "node/scheduler/servicespec", "node/taskplan/..."}},
	// The leaf parts of the agent (node/README.md): each has one job and
	// never reaches back into node, so they stay testable on their own.
	{"node/authz/...", []string{"api", "consensus", "consensus/fsm/command", "consensus/raftnode", "overlay", "node/scheduler/servicespec", "node/authz/..."}},
	// The autoscaler's arithmetic, the decision included (Decide), and
	// every node's sampling of its tasks' cgroups (runtime/cgstats); the
	// replica and the runtime come in as interfaces.
	{"node/autoscale/...", []string{"api", "runtime/cgstats", "node/autoscale/..."}},
	// A task's secrets and configs on a tmpfs of its own (runtime/secretfs,
	// the replica's config type); the secrets fetch comes in as a func.
	{"node/taskfiles/...", []string{"api", "consensus", "runtime/ocispec", "runtime/secretfs", "node/taskfiles/..."}},
	{"node/events/...", []string{"api", "consensus", "runtime", "node/autoscale", "node/httpapi", "node/events/..."}},
	{"node/metrics/...", []string{"node/metrics/..."}},
	// What `shoal agent` is told: settings, defaults and their checks; the
	// limits it checks against come from the packages that own them.
	{"node/agentconfig/...", []string{"node/pki", "node/profile", "node/ui", "node/agentconfig/..."}},
	// A node's identity across restarts (DATA/node.json) and random IDs.
	{"node/identity/...", []string{"api/atomicfile", "node/identity/..."}},
	// The agent's resync clock: the standard library only.
	{"node/resync/...", []string{"node/resync/..."}},
	// The agent's trim of its binary's resident pages (node/memtrim): the
	// standard library and x/sys only.
	{"node/memtrim/...", []string{"node/memtrim/..."}},
	// Whether this node can persist its state (node/diskhealth): the
	// standard library and x/sys only; the agent hands it its readings.
	{"node/diskhealth/...", []string{"node/diskhealth/..."}},
	// The dashboard serves its routes with httpapi's router and error
	// mapping; the agent comes in as ui.Backend.
	{"node/ui/...", []string{"api", "api/atomicfile", "node/hostguard", "node/httpapi", "node/ui/..."}},
	// Loopback listeners answer only to loopback names (DNS rebinding):
	// the standard library only, shared by the dashboard, metrics and pprof.
	{"node/hostguard/...", []string{"node/hostguard/..."}},
	// Gossip: epochs and protocol levels from consensus; the agent's fence
	// comes in as an interface. Its join and reconnect loop reads the
	// replica's nodes (api), keeps peers.json (api/atomicfile) and ticks on
	// the agent's resync clock (node/resync).
	{"node/membership/...", []string{"api", "api/atomicfile", "consensus", "consensus/fsm/command", "consensus/raftnode", "node/resync", "node/membership/..."}},
	// The failure-detection profiles: gossip's timing and raft's, chosen
	// together.
	{"node/profile/...", []string{"consensus/raftnode", "node/membership", "node/profile/..."}},
	// The HTTP side of the API socket: it reaches the agent only through
	// its interfaces, and consensus only for the sentinel errors it maps.
	{"node/httpapi/...", []string{"api", "consensus", "consensus/fsm/command", "node/httpapi/..."}},
	// The agent's side of the cluster routes: the replica (consensus), the
	// spec rules (node/scheduler/servicespec), image tags (runtime/image), the log
	// options and writer of node/localapi; writes go through handlers.Agent.
	{"node/handlers/...", []string{"api", "consensus", "consensus/fsm/command", "consensus/raftnode", "consensus/snapshotfile", "runtime", "runtime/image", "node/httpapi", "node/localapi", "node/scheduler/servicespec", "node/handlers/..."}},
	// This node's images, containers and exec: the runtime and the image
	// store behind interfaces, the cluster through localapi.Agent.
	// A node's record of its `shoal run` containers on networks.
	{"node/runattach/...", []string{"api", "consensus", "consensus/fsm/command", "node/resync", "node/runattach/..."}},
	{"node/localapi/...", []string{"api", "runtime", "runtime/image", "node/httpapi", "node/localapi/..."}},
	// The RPC protocol as bytes: the refusals it maps to codes come from
	// consensus and node/authz.
	{"node/wire/...", []string{"api", "consensus", "consensus/fsm/command", "node/authz", "node/wire/..."}},
	// The cluster port: TLS, the protocol byte, caps, one RPC per
	// connection and the Raft epoch handshake. The agent's fence, its
	// connection trackers and its RPC handlers come in as interfaces and
	// funcs.
	{"node/clusterport/...", []string{"api", "consensus", "node/pki", "node/wire", "node/clusterport/..."}},
	// Images and task logs between peers: the image store as an interface,
	// RPCs through a caller the agent binds to its TLS, and the rule of
	// what a peer may fetch (its refusal is authz's ErrForbidden).
	{"node/imagedist/...", []string{"api", "runtime", "runtime/image", "node/authz", "node/clusterport", "node/wire", "node/imagedist/..."}},
	// What this node's data plane should be, from one snapshot (pure): the
	// replica's types, and the load balancer's and overlay's desired-state
	// types it fills in; the agent applies them.
	{"node/netplan/...", []string{"api", "consensus", "lb", "lb/dns", "overlay", "overlay/wireguard", "node/netplan/..."}},
	// What only the leader runs (scheduling passes, autoscale polling,
	// node status, re-admission, autopilot): the replica and Raft from
	// consensus, gossip's verdicts, the planners; the agent's gossip key
	// rotation and its RPC caller come in as funcs.
	{"node/leaderloop/...", []string{"api", "consensus", "consensus/fsm/command", "consensus/raftnode", "consensus/autopilot", "node/autoscale", "node/membership", "node/metrics", "node/resync", "node/scheduler", "node/leaderloop/..."}},
	// How a write reaches the leader and is applied once: Raft and the
	// replica, the authorization table, the leader's re-validation
	// (node/handlers), sealing (node/pki), the RPC protocol and the
	// cluster port's restore call; the agent's RPC caller, dialler, KEK
	// and token rotation come in as funcs.
	{"node/writes/...", []string{"api", "consensus", "consensus/fsm", "consensus/fsm/command", "consensus/snapshotfile", "consensus/raftnode", "node/authz", "node/clusterport", "node/handlers", "node/membership", "node/pki", "node/wire", "node/writes/..."}},
	// --metrics-addr: the registry, the server and the collector that
	// reads the replica, Raft, gossip, the data plane's desired state
	// (node/netplan) and the containers' cgroups at scrape time; the agent
	// comes in as collector.Config.
	{"node/collector/...", []string{"api", "consensus", "consensus/raftnode", "runtime/cgstats", "node/hostguard", "node/membership", "node/metrics", "node/netplan", "node/collector/..."}},
	// This node's keys and certificate against the replicated record, and
	// the leader's key work (KEK, sealing, trust, renewal, CA rotation, node
	// IDs at join): the replica, crypto and files (node/pki), the RPC
	// bodies, and the agent's beat grid (node/resync) for its loop's timer;
	// Raft and the RPC caller come in as an interface and a func.
	{"node/keyring/...", []string{"api", "api/atomicfile", "consensus", "consensus/fsm/command", "consensus/raftnode", "node/pki", "node/resync", "node/wire", "node/keyring/..."}},
	// What `node rm` means on every node: connection trackers, the gossip
	// key rotation's steps, the removal question and its loop. Gossip and
	// Raft come in as interfaces, the RPC caller as a func.
	{"node/revocation/...", []string{"api", "api/atomicfile", "consensus", "consensus/fsm", "consensus/fsm/command", "consensus/raftnode", "node/membership", "node/pki", "node/resync", "node/wire", "node/revocation/..."}},
	// The node-side loops' apply halves: the reconciler (the runtime, the
	// replica, its plan in node/taskplan, the traffic rule of node/netplan,
	// netloop's context of a container's networks) and the network loop
	// (the replica, overlay, lb, gossip's member type, the metrics it
	// reports, and the index-file format of node/revocation for its
	// WireGuard key epochs). The agent comes in through their Config.
	{"node/reconciler/...", []string{"api", "api/atomicfile", "consensus", "consensus/fsm/command", "runtime", "runtime/ocispec", "node/netloop", "node/netplan", "node/resync", "node/taskplan", "node/reconciler/..."}},
	{"node/netloop/...", []string{"api", "consensus", "consensus/fsm/command", "lb", "lb/dns", "overlay", "overlay/wireguard", "node/membership", "node/metrics", "node/netplan", "node/resync", "node/revocation", "node/netloop/..."}},
	// How a node gets into a cluster and out of it: the joiner's side
	// (token, CA pin, CSR, the cluster files) and the leader's admission,
	// removal and lost-log rejoin. The files and checks of node/keyring,
	// node/revocation and node/epoch; Raft comes in as an interface, the
	// agent's RPC caller, cluster start and keys as funcs.
	{"node/joining/...", []string{"api", "api/atomicfile", "consensus", "consensus/fsm/command", "consensus/raftnode", "node/clusterport", "node/epoch", "node/keyring", "node/membership", "node/pki", "node/revocation", "node/wire", "node/joining/..."}},
	// A cluster instance's epoch: the verdicts of consensus, the voters and
	// the epoch's write through raftnode and fsm/command, the probe over
	// clusterport (the peer named by its certificate, node/pki).
	{"node/epoch/...", []string{"api/atomicfile", "consensus", "consensus/fsm/command", "consensus/raftnode", "node/clusterport", "node/pki", "node/epoch/..."}},
	// The agent's cluster half: one instance's parts (TLS, the cluster
	// port, Raft, gossip), its start and stop, its loops and what its parts
	// make (the write path, the keeper, the leader's side of membership and
	// removal, task files, images from peers). It wires the leaf packages
	// and the loops; the agent lends it the runtime, the image store, the
	// network and its own answers through instance.Host, so it never
	// imports node, and no leaf imports it.
	{"node/instance/...", []string{"api", "consensus", "consensus/fsm/command", "consensus/raftnode", "runtime", "runtime/image",
		"node/agentconfig", "node/authz", "node/autoscale", "node/clusterport", "node/diskhealth", "node/epoch", "node/handlers", "node/imagedist",
		"node/joining", "node/keyring", "node/leaderloop", "node/membership", "node/metrics", "node/netloop", "node/pki",
		"node/profile", "node/reconciler", "node/resync", "node/revocation", "node/runattach", "node/taskfiles", "node/wire", "node/writes",
		"node/instance/..."}},
	// The cluster port's RPC methods: each handler asks the running
	// instance (node/instance) for the work, which the leaf packages do;
	// the image store and the runtime serve what peers fetch.
	{"node/rpcserver/...", []string{"api", "consensus", "runtime", "runtime/image", "node/authz", "node/clusterport",
		"node/handlers", "node/imagedist", "node/instance", "node/revocation", "node/wire", "node/writes", "node/rpcserver/..."}},
	// cmd/shoal starts the agent (and the node's container supervisor)
	// through node and otherwise talks to it only through api and its
	// client (api/client); the command
	// groups, the compose translation and the service-spec flags are its
	// own leaves (cmd/shoal/README.md), which main wires into one tree.
	{"cmd/shoal", []string{"api", "api/client", "node", "cmd/shoal/agent", "cmd/shoal/cluster", "cmd/shoal/exec", "cmd/shoal/logs", "cmd/shoal/output", "cmd/shoal/service", "cmd/shoal/shell", "cmd/shoal/specflags", "cmd/shoal/stack"}},
	// What every command shares (streams, client, argument checks, exit
	// codes, list and inspect builders): never a command group.
	{"cmd/shoal/shell/...", []string{"api", "api/client", "cmd/shoal/output", "cmd/shoal/specflags", "cmd/shoal/shell/..."}},
	// `shoal agent`: node only to start the agent, nothing of api.
	{"cmd/shoal/agent/...", []string{"api/timerslack", "node", "node/hostguard", "cmd/shoal/shell", "cmd/shoal/specflags", "cmd/shoal/agent/..."}},
	// The command groups talk to the agent only through api and
	// api/client, and never import one another.
	{"cmd/shoal/cluster/...", []string{"api", "api/atomicfile", "api/client", "cmd/shoal/output", "cmd/shoal/shell", "cmd/shoal/cluster/..."}},
	{"cmd/shoal/exec/...", []string{"api", "api/client", "cmd/shoal/shell", "cmd/shoal/specflags", "cmd/shoal/exec/..."}},
	{"cmd/shoal/service/...", []string{"api", "api/client", "cmd/shoal/logs", "cmd/shoal/output", "cmd/shoal/progress", "cmd/shoal/shell", "cmd/shoal/specflags", "cmd/shoal/service/..."}},
	{"cmd/shoal/stack/...", []string{"api", "api/client", "cmd/shoal/compose", "cmd/shoal/output", "cmd/shoal/progress", "cmd/shoal/shell", "cmd/shoal/specflags", "cmd/shoal/stack/..."}},
	// The log flags and lines of `logs` and `service logs` (the client's
	// LogOptions).
	{"cmd/shoal/logs/...", []string{"api", "api/client", "cmd/shoal/specflags", "cmd/shoal/logs/..."}},
	// Compose files → service specs (cmd/shoal/compose/README.md): the
	// wire types and the flags' value parsers, never the command tree.
	{"cmd/shoal/compose/...", []string{"api", "api/containeropts", "cmd/shoal/specflags", "cmd/shoal/compose/..."}},
	// Tables, JSON and --format templates of the wire types; a bad
	// template is a specflags.UsageError.
	{"cmd/shoal/output/...", []string{"api", "cmd/shoal/specflags", "cmd/shoal/output/..."}},
	// A --detach=false wait: the convergence verdict (pure, the wire types)
	// and the loop that polls the agent and prints it, for `service` and
	// `stack deploy`.
	{"cmd/shoal/progress/...", []string{"api", "api/client", "cmd/shoal/output", "cmd/shoal/progress/..."}},
	// Service-spec flags → api types: the wire types only.
	{"cmd/shoal/specflags/...", []string{"api", "api/containeropts", "cmd/shoal/specflags/..."}},
}

// neverNode are the trees that must not depend on node, even transitively
// or from their tests.
var neverNode = []string{"api/...", "consensus/...", "runtime/...", "overlay/...", "lb/..."}

// matches reports whether the module-relative path rel matches pattern.
func matches(pattern, rel string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return rel == base || strings.HasPrefix(rel, base+"/")
	}
	return rel == pattern
}

// rel returns path relative to the module, and false for other modules.
func rel(path string) (string, bool) {
	if path == module {
		return "", true
	}
	return strings.CutPrefix(path, module+"/")
}

// listPackages runs `go list -e -deps -json ./...` at the module root.
func listPackages(t *testing.T) (ours []listedPackage, std map[string]bool) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "list", "-e", "-deps", "-test=false", "-json", "./...")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("go list failed (no go toolchain?): %v: %s", err, stderr.String())
	}
	std = map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		if p.Standard {
			std[p.ImportPath] = true
		}
		if _, ok := rel(p.ImportPath); ok && !p.DepOnly {
			ours = append(ours, p)
		}
	}
	if len(ours) == 0 {
		t.Fatal("go list found no package of this module")
	}
	return ours, std
}

func TestImportRules(t *testing.T) {
	pkgs, std := listPackages(t)
	used := map[string]bool{}
	for _, p := range pkgs {
		name, _ := rel(p.ImportPath)
		if p.Error != nil {
			// Another package may be half-written; its imports may be
			// incomplete, but what is listed is still checked.
			t.Logf("%s: %s", name, p.Error.Err)
		}
		all := uniq(p.Imports, p.TestImports, p.XTestImports)

		if matches("api/...", name) {
			for _, imp := range p.Imports {
				if _, ours := rel(imp); ours {
					continue // the api/... rule below
				}
				if !std[imp] && !isStdPath(imp) {
					t.Errorf("%s imports %s: api and its subpackages may import the standard library only", name, imp)
				}
			}
		}
		for _, r := range importRules {
			if !matches(r.pkg, name) {
				continue
			}
			used[r.pkg] = true
			// Product code only: a test may import a sibling to check that
			// a type satisfies its interface (overlay's test imports
			// runtime.Network), which creates no dependency of the product.
			for _, imp := range p.Imports {
				ir, ok := rel(imp)
				if !ok {
					continue
				}
				allowed := false
				for _, a := range r.allow {
					if matches(a, ir) {
						allowed = true
						break
					}
				}
				if !allowed {
					t.Errorf("%s imports %s; packages under %s may import only %v of this module", name, ir, r.pkg, r.allow)
				}
			}
		}
		for _, nn := range neverNode {
			if !matches(nn, name) {
				continue
			}
			for _, imp := range uniq(p.Deps, all) {
				if ir, ok := rel(imp); ok && matches("node/...", ir) {
					t.Errorf("%s depends on %s: %s must never import node (DESIGN.md, Packages)", name, ir, nn)
				}
			}
		}
	}
	var unused []string
	for _, r := range importRules {
		if !used[r.pkg] {
			unused = append(unused, r.pkg)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("rules match no package (renamed? update the rules): %v", unused)
	}
}

// uniq returns the sorted union of lists.
func uniq(lists ...[]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lists {
		for _, s := range l {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	sort.Strings(out)
	return out
}

// isStdPath is the toolchain's own test: a standard library path has no
// dot in its first element. It covers std packages go list did not report
// as dependencies (a package that failed to load).
func isStdPath(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return path == "C" || !strings.Contains(first, ".")
}

func TestImportRuleMatching(t *testing.T) {
	for _, tt := range []struct {
		pattern, rel string
		want         bool
	}{
		{"runtime/...", "runtime", true},
		{"runtime/...", "runtime/image", true},
		{"runtime/...", "runtimex", false},
		{"runtime", "runtime/image", false},
		{"node/...", "node/scheduler", true},
		{"node", "node", true},
	} {
		if got := matches(tt.pattern, tt.rel); got != tt.want {
			t.Errorf("matches(%q, %q) = %v, want %v", tt.pattern, tt.rel, got, tt.want)
		}
	}
	if !isStdPath("net/http") || isStdPath("github.com/x/y") || isStdPath(module) {
		t.Error("isStdPath misjudges")
	}
}
