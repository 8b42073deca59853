// Package api holds the wire types shared by the CLI, the agent's HTTP API and
// the replicated state; the HTTP client that speaks them is api/client. It
// imports only the standard library so every other package may depend on it.
//
// JSON field names are snake_case; DESIGN.md lists the fields tests rely on.
// Durations are encoded as integer nanoseconds, as Docker does in inspect.
package api

import "time"

// Node states as gossip and the leader see them.
const (
	NodeReady = "ready"
	NodeDown  = "down"
)

// Node availability, set by the operator.
const (
	AvailabilityActive = "active"
	AvailabilityPause  = "pause"
	AvailabilityDrain  = "drain"
)

// Manager status of a node, derived from the Raft configuration at read time.
const (
	ManagerLeader      = "leader"
	ManagerReachable   = "reachable"
	ManagerUnreachable = "unreachable"
)

// Node roles, set by the operator (`shoal node update --role`). A manager may
// vote and may change the cluster through its API socket; a worker runs tasks,
// never votes, and its API socket only answers reads. An empty stored role is
// a manager (nodes recorded before roles existed).
const (
	RoleManager = "manager"
	RoleWorker  = "worker"
)

// MinMemoryLimit is the smallest memory limit a container may have (as
// Docker's: 6 MiB). Below it the container's init cannot start, so a spec
// asking less is refused where it is written (a service spec's Validate,
// `shoal run`), not on every task's start.
const MinMemoryLimit = 6 << 20

// Resources are CPU and memory quantities, on a node (capacity) or in a spec
// (limits and reservations).
type Resources struct {
	NanoCPUs    int64 `json:"nano_cpus,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	Pids        int64 `json:"pids,omitempty"`
}

// Node is one machine running `shoal agent`, as recorded in Raft.
type Node struct {
	ID       string `json:"id"`
	Hostname string `json:"hostname"`
	// Addr is the advertise IP of the node (no port).
	Addr string `json:"addr"`
	// ClusterPort is the mutual-TLS port (raft + RPC), GossipPort the memberlist port.
	ClusterPort  int               `json:"cluster_port"`
	GossipPort   int               `json:"gossip_port"`
	Status       string            `json:"status"`
	Availability string            `json:"availability"`
	Labels       map[string]string `json:"labels"`
	Resources    Resources         `json:"resources"`
	// Subnet is the /24 of the cluster CIDR the leader gave this node at join.
	Subnet string `json:"subnet,omitempty"`
	// Voter is true when the node votes in Raft (desired by autopilot and
	// reflected from the Raft configuration).
	Voter bool `json:"voter"`
	// ManagerStatus is filled at read time: leader, reachable, unreachable or
	// empty for non-voters.
	ManagerStatus string `json:"manager_status"`
	CertSerial    string `json:"cert_serial,omitempty"`
	// PendingCertSerial is a renewed certificate the leader signed but the
	// node has not yet confirmed it installed (consensus/fsm/command
	// StageNodeCert); CertSerial stays valid until it does
	// (ConfirmNodeCert), so a renewal whose answer is lost leaves the node
	// its certificate. At most one per node. PendingCertCA is the
	// fingerprint of the CA that signed it.
	PendingCertSerial string `json:"pending_cert_serial,omitempty"`
	PendingCertCA     string `json:"pending_cert_ca,omitempty"`
	// CertKey is the hex SHA-256 of the public key the leader certified at
	// the node's join: a join retried after a lost reply proves it with a
	// CSR signed by that key.
	CertKey   string    `json:"cert_key,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// StatusChangedAt is when Status last changed (leader clock, put in the command).
	StatusChangedAt time.Time `json:"status_changed_at"`
	Version         uint64    `json:"version"`
	// Role is manager or worker (RoleManager, RoleWorker); the API shows an
	// empty stored role as manager.
	Role string `json:"role"`
	// WireGuardKey is the node's WireGuard public key (base64), published
	// by the node itself once an encrypted network exists; its private key
	// never leaves the node.
	WireGuardKey string `json:"wireguard_key,omitempty"`
	// WireGuardKeyEpoch is the Raft index of the last node removal
	// WireGuardKey postdates (consensus.ClusterState.LastRemovalIndex):
	// a removal after it makes the node rotate its key (node/netloop/wgkeys.go).
	WireGuardKeyEpoch uint64 `json:"wireguard_key_epoch,omitempty"`
	// WireGuardNextKey is the key the node rotates to, published before
	// it is used, with the removal index it answers (WireGuardNextEpoch);
	// every node switches to it once all nodes have published theirs.
	WireGuardNextKey   string `json:"wireguard_next_key,omitempty"`
	WireGuardNextEpoch uint64 `json:"wireguard_next_epoch,omitempty"`
	// WireGuardBackend is how the node runs its WireGuard device,
	// "kernel" or "userspace" (wireguard-go on a TUN device, where the
	// kernel has no WireGuard), published by the node with its key.
	WireGuardBackend string `json:"wireguard_backend,omitempty"`
	// AgentVersion is the release the node's agent runs (as its gossip
	// last said; empty when unknown). Filled at read time, not in Raft.
	AgentVersion string `json:"agent_version"`
	// StatusMessage says why a ready node takes no new tasks, as Swarm's
	// node status message does: "disk full: ..." when the node cannot
	// persist its state (it gossips so: node/diskhealth). Empty when it is
	// fit. Filled at read time, not in Raft.
	StatusMessage string `json:"status_message,omitempty"`
}

// CopyOwnedNodeFields copies onto dst the fields of a node record that the
// node itself reports and may change (its resources and WireGuard keys, and
// when it last said so); the rest belong to the leader and the admins. The
// leader's check of a node's own writes and the state machine's UpdateOwnNode
// share it, so the two cannot disagree on what a node owns.
func CopyOwnedNodeFields(dst *Node, src Node) {
	dst.Resources = src.Resources
	dst.WireGuardKey = src.WireGuardKey
	dst.WireGuardKeyEpoch = src.WireGuardKeyEpoch
	dst.WireGuardNextKey = src.WireGuardNextKey
	dst.WireGuardNextEpoch = src.WireGuardNextEpoch
	dst.WireGuardBackend = src.WireGuardBackend
	dst.UpdatedAt = src.UpdatedAt
}

// NodeUpdate is the body of POST /v1/nodes/{id}/update. Nil or empty fields
// leave the node unchanged.
type NodeUpdate struct {
	Availability string            `json:"availability,omitempty"`
	LabelAdd     map[string]string `json:"label_add,omitempty"`
	LabelRm      []string          `json:"label_rm,omitempty"`
	// Role is manager or worker; empty leaves it unchanged.
	Role string `json:"role,omitempty"`
}

// StackLabel marks the services of a stack with the stack's name (docker's
// label, so habits and scripts carry over). Stack services are named
// STACK_KEY; the embedded DNS resolves KEY for the stack's own containers.
const StackLabel = "com.docker.stack.namespace"

// Service modes.
const (
	ModeReplicated = "replicated"
	ModeGlobal     = "global"
	// ModeReplicatedJob runs tasks until Replicas of them have completed
	// (exited 0), at most MaxConcurrent at once; ModeGlobalJob runs one
	// task to completion on every eligible node, nodes that join later
	// included. A completed task is never restarted; any update of the
	// service (a new version) runs the job again. Docker's jobs.
	ModeReplicatedJob = "replicated-job"
	ModeGlobalJob     = "global-job"
)

// PortConfig publishes a service's target port on every node (the routing
// mesh, Mode ingress) or only on the nodes running a task (Mode host).
type PortConfig struct {
	Published int    `json:"published"`
	Target    int    `json:"target"`
	Protocol  string `json:"protocol"` // tcp or udp
	// Mode is PublishIngress (also when empty) or PublishHost.
	Mode string `json:"mode,omitempty"`
}

// Publish modes of a PortConfig. Ingress answers on every node and may
// hide the client's address from a backend on another node; host answers
// only on nodes running a task, to local tasks, keeping the client's
// address (Swarm's mode=host without a per-task port mapping).
const (
	PublishIngress = "ingress"
	PublishHost    = "host"
)

// ResourceRequirements bound a task: limits are enforced by the runtime,
// reservations are what the scheduler counts against a node's capacity,
// and the memory reservation is also the container's memory soft limit
// (as Swarm sets it: under memory pressure the kernel reclaims from
// containers above their reservation first).
type ResourceRequirements struct {
	Limits       Resources `json:"limits"`
	Reservations Resources `json:"reservations"`
}

// Restart conditions.
const (
	RestartAny       = "any"
	RestartOnFailure = "on-failure"
	RestartNone      = "none"
)

// RestartPolicy says when a task whose container ended gets a replacement.
type RestartPolicy struct {
	Condition string `json:"condition"`
	// Delay: the wait before a task that ended is replaced; 0 is the
	// default (5 s), ExplicitZero none. Read it with DelayPeriod.
	Delay       time.Duration `json:"delay"`
	MaxAttempts int           `json:"max_attempts"` // 0 = unlimited
	Window      time.Duration `json:"window"`
}

// Update orders and failure actions.
const (
	OrderStopFirst  = "stop-first"
	OrderStartFirst = "start-first"

	FailurePause    = "pause"
	FailureRollback = "rollback"
	FailureContinue = "continue"
)

// UpdateConfig drives a rolling update (and, as RollbackConfig, a rollback).
type UpdateConfig struct {
	Parallelism   int           `json:"parallelism"` // 0 = all at once
	Delay         time.Duration `json:"delay"`
	Order         string        `json:"order"`
	FailureAction string        `json:"failure_action"`
	// Monitor: how long each updated task is watched for failure after it
	// starts; 0 is the default (5 s, filled in when the spec is written),
	// ExplicitZero watches none. Read it with MonitorPeriod.
	Monitor         time.Duration `json:"monitor"`
	MaxFailureRatio float64       `json:"max_failure_ratio"`
}

// ExplicitZero is a zero the user asked for, in a duration field whose 0
// means its default: UpdateConfig.Monitor (`--update-monitor 0`: no task
// is watched after it starts, and a create or scale does not wait for its
// tasks to stay up), RestartPolicy.Delay (`--restart-delay 0`: a task is
// replaced as soon as it ends) and ServiceSpec.StopGracePeriod
// (`--stop-grace-period 0`: SIGKILL at once; the runtime reads a negative
// grace so). Why not 0 itself: 0 has always meant "the default" on the
// wire (a client that leaves the field out sends 0), and a spec written
// with 0 is stored with the default, so a stored 0 could not survive the
// next update either. An older agent refuses the value as negative,
// rather than silently giving the default to a user who asked for none.
// Read the fields with MonitorPeriod and DelayPeriod, and the stop grace
// as the runtime does.
const ExplicitZero time.Duration = -1

// MonitorPeriod is how long each task is watched after it starts: Monitor,
// or 0 for ExplicitZero.
func (u UpdateConfig) MonitorPeriod() time.Duration { return max(u.Monitor, 0) }

// DelayPeriod is the wait before a task that ended is replaced: Delay, or
// 0 for ExplicitZero.
func (r RestartPolicy) DelayPeriod() time.Duration { return max(r.Delay, 0) }

// HealthConfig mirrors Docker's HEALTHCHECK: Test is ["CMD", args...],
// ["CMD-SHELL", "cmd"] or ["NONE"].
type HealthConfig struct {
	Test        []string      `json:"test,omitempty"`
	Interval    time.Duration `json:"interval,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	StartPeriod time.Duration `json:"start_period,omitempty"`
	Retries     int           `json:"retries,omitempty"`
}

// MaxReplicas bounds ServiceSpec.Replicas (node/scheduler/servicespec
// says why); here so that the CLI can refuse a `service scale` beyond it
// before it scales the other services the command names.
const MaxReplicas = 1 << 16

// ServiceSpec is what the user asks for. It is validated by the leader before
// it is written to Raft.
type ServiceSpec struct {
	Name            string               `json:"name"`
	Mode            string               `json:"mode"`
	Replicas        uint64               `json:"replicas"`
	Image           string               `json:"image"`
	Command         []string             `json:"command,omitempty"` // overrides the image's Cmd
	Entrypoint      []string             `json:"entrypoint,omitempty"`
	Env             []string             `json:"env,omitempty"`
	Workdir         string               `json:"workdir,omitempty"`
	User            string               `json:"user,omitempty"`
	Labels          map[string]string    `json:"labels,omitempty"`
	Ports           []PortConfig         `json:"ports,omitempty"`
	Resources       ResourceRequirements `json:"resources"`
	Constraints     []string             `json:"constraints,omitempty"`
	RestartPolicy   RestartPolicy        `json:"restart_policy"`
	UpdateConfig    UpdateConfig         `json:"update_config"`
	RollbackConfig  UpdateConfig         `json:"rollback_config"`
	Healthcheck     *HealthConfig        `json:"healthcheck,omitempty"`
	StopGracePeriod time.Duration        `json:"stop_grace_period"`
	// ForceUpdate is bumped by `service update --force` so that an otherwise
	// unchanged spec still differs and every task is replaced.
	ForceUpdate uint64 `json:"force_update,omitempty"`
	// Secrets and Configs are mounted into every task (see FileReference).
	Secrets []FileReference `json:"secrets,omitempty"`
	Configs []FileReference `json:"configs,omitempty"`
	// Mounts are the volumes, bind mounts and tmpfs of each task's
	// container (see Mount and MountProblem).
	Mounts []Mount `json:"mounts,omitempty"`
	// Networks are the names of the networks the tasks join, in order (the
	// first carries the default route). Empty means DefaultNetwork.
	Networks []string `json:"networks,omitempty"`
	// DisconnectGrace is how long the tasks of a node that stopped answering
	// are kept for it (0 = 60s). Replacements start at once elsewhere; if
	// the node returns within the grace period with the tasks still running,
	// they stay and the replacements are stopped, so a network blip restarts
	// nothing. Past it, the tasks are written off (orphaned).
	DisconnectGrace time.Duration `json:"disconnect_grace,omitempty"`
	// AtMostOnce services never have two tasks of one slot running at once:
	// a task on a node that stopped answering is not replaced before the
	// grace period (plus the stop grace period) has passed, and the node
	// stops it by itself once it has not heard from a leader for the grace
	// period (fencing).
	AtMostOnce bool `json:"at_most_once,omitempty"`
	// NoRebalance keeps the tasks where they are when a node joins or
	// returns; by default a few at a time (update parallelism and delay)
	// move to even out the spread, each started before the old one stops.
	NoRebalance bool `json:"no_rebalance,omitempty"`
	// Autoscale, when set on a replicated service, lets the leader change
	// Replicas within [Min, Max] from the usage its tasks report. Nil
	// leaves the replica count to the user.
	Autoscale *AutoscaleConfig `json:"autoscale,omitempty"`
	// RegistryAuth carries the credentials of the image's registry
	// (`--with-registry-auth`), so that every node can pull a private
	// image. Nil: anonymous pulls.
	RegistryAuth *RegistryAuth `json:"registry_auth,omitempty"`
	// ReadOnly mounts each task's root file system read-only
	// (`--read-only`, compose read_only): its /etc/hosts, hostname and
	// resolv.conf, secrets, configs, volumes and tmpfs mounts stay as
	// they are, so a service writes only where it says it does.
	ReadOnly bool `json:"read_only,omitempty"`
	// CapAdd and CapDrop change the capabilities tasks get from Docker's
	// default set (`--cap-add`, `--cap-drop`): names such as
	// CAP_NET_ADMIN, or ALL (api/containeropts.Capabilities applies them).
	CapAdd  []string `json:"cap_add,omitempty"`
	CapDrop []string `json:"cap_drop,omitempty"`
	// Sysctls are kernel parameters of the tasks' own namespaces
	// (`--sysctl net.core.somaxconn=1024`): net.*, kernel.shm*,
	// kernel.msg*, kernel.sem and fs.mqueue.* (containeropts.SysctlProblem).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Ulimits are the tasks' resource limits (`--ulimit nofile=1024:2048`,
	// setrlimit's), each name once.
	Ulimits []Ulimit `json:"ulimits,omitempty"`
	// StopSignal is what a task's container is sent to stop, before the
	// SIGKILL after StopGracePeriod (`--stop-signal SIGQUIT`); empty is
	// SIGTERM. Stored by its canonical name (containeropts.ParseSignal).
	StopSignal string `json:"stop_signal,omitempty"`
	// Hostname is the tasks' hostname (`--hostname`); empty gives each
	// task its name (web.3). See TaskHostname.
	Hostname string `json:"hostname,omitempty"`
	// ExtraHosts are lines added to the tasks' /etc/hosts, HOST:IP each
	// (`--host db:10.0.0.5`, compose extra_hosts).
	ExtraHosts []string `json:"extra_hosts,omitempty"`

	// EndpointMode is how the service is reached by name
	// (`--endpoint-mode`, compose deploy.endpoint_mode): EndpointVIP (or
	// empty, the default) gives it a VIP on each of its networks that its
	// name resolves to and the load balancer spreads; EndpointDNSRR gives
	// it none: its name resolves to its running tasks' addresses, as
	// tasks.NAME does, and no ingress-published port can reach it.
	EndpointMode string `json:"endpoint_mode,omitempty"`
	// NetworkAliases are extra names of the service, per network
	// (`--network name=back,alias=www`, compose
	// services.X.networks.back.aliases): each resolves on that network
	// only, like the service's name (its VIP there, or its tasks under
	// dnsrr). Keys are among the service's networks.
	NetworkAliases map[string][]string `json:"network_aliases,omitempty"`
	// MaxReplicasPerNode caps the tasks of a replicated service meant to
	// run on one node (`--replicas-max-per-node`, compose
	// deploy.placement.max_replicas_per_node); 0 = no limit. A task no node
	// has room for stays pending, saying so.
	MaxReplicasPerNode uint64 `json:"max_replicas_per_node,omitempty"`
	// PlacementPreferences spread the tasks over the values of node labels
	// (`--placement-pref spread=node.labels.zone`), the first preference
	// first, then each next one within every group of the one before.
	PlacementPreferences []PlacementPreference `json:"placement_preferences,omitempty"`

	// LogDriver and LogOptions are the tasks' logging (`--log-driver`,
	// `--log-opt`, compose logging.driver and logging.options), with
	// docker's names: "" or json-file or local keep the node's rotated log
	// files, none keeps no logs; options max-size (10m) and max-file (3)
	// replace the node's rotation for these containers. Anything else is
	// refused (ParseLogging); an empty map is nil.
	LogDriver  string            `json:"log_driver,omitempty"`
	LogOptions map[string]string `json:"log_options,omitempty"`

	// MaxConcurrent caps the tasks of a replicated job that run at once
	// (`--max-concurrent`); 0 = Replicas (all at once), as docker's CLI
	// defaults it.
	MaxConcurrent uint64 `json:"max_concurrent,omitempty"`
}

// IsJob reports whether mode runs tasks to completion (ModeReplicatedJob,
// ModeGlobalJob) rather than keeping them running.
func IsJob(mode string) bool { return mode == ModeReplicatedJob || mode == ModeGlobalJob }

// GlobalMode reports whether mode runs one task per eligible node
// (ModeGlobal, ModeGlobalJob).
func GlobalMode(mode string) bool { return mode == ModeGlobal || mode == ModeGlobalJob }

// PlacementPreference is one Swarm placement preference. Spread is the
// only strategy: "node.labels.NAME", whose distinct values (nodes without
// the label form one more group) get equal shares of the tasks.
type PlacementPreference struct {
	Spread string `json:"spread"`
}

// Endpoint modes of a service (ServiceSpec.EndpointMode).
const (
	EndpointVIP   = "vip"
	EndpointDNSRR = "dnsrr"
)

// IsDNSRR reports whether s is reached by DNS round robin: no VIP, its
// name answers with its tasks' addresses.
func IsDNSRR(s ServiceSpec) bool { return s.EndpointMode == EndpointDNSRR }

// TaskHostname is the hostname of t's container: the spec's Hostname, or
// else the task's name (node/reconciler). Its resolver takes the part
// after the first dot as its search domain (node/netplan).
func TaskHostname(t *Task) string {
	if t.Spec.Hostname != "" {
		return t.Spec.Hostname
	}
	return t.Name
}

// Ulimit is one process resource limit (setrlimit): Name is Docker's
// (nofile, nproc, core, memlock, stack, ...), -1 is unlimited, Soft is at
// most Hard (api/containeropts.UlimitProblem).
type Ulimit struct {
	Name string `json:"name"`
	Soft int64  `json:"soft"`
	Hard int64  `json:"hard"`
}

// RegistryAuth is a registry's credentials as a service carries them. The
// CLI sends Username and Password to its agent; the leader seals them with
// the voters' key (bound to the cluster and the service) into Sealed and
// clears them, so the Raft log and snapshots only hold ciphertext; a node
// gets them in the clear only for a task the leader assigned to it, over
// the cluster port. Registry (the host) is not secret.
type RegistryAuth struct {
	Registry string `json:"registry,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Sealed   []byte `json:"sealed,omitempty"`
	KEKID    string `json:"kek_id,omitempty"`
}

// AutoscaleConfig is `--autoscale min=2,max=10,cpu=70%,memory=80%`. A
// target is the average usage of the service's running tasks the leader
// aims for: CPU as a share of the task's CPU limit (of one core without a
// limit), memory as a share of its memory limit. Zero leaves a metric out;
// at least one is set.
type AutoscaleConfig struct {
	Min           uint64  `json:"min"`
	Max           uint64  `json:"max"`
	CPUPercent    float64 `json:"cpu_percent,omitempty"`
	MemoryPercent float64 `json:"memory_percent,omitempty"`
	// ScaleUpDelay is how long the average must stay above a target
	// before the service grows (0 = 15s); ScaleDownDelay how long it must
	// stay below every target before it shrinks by one (0 = 60s). Both
	// count from the last change of the replica count.
	ScaleUpDelay   time.Duration `json:"scale_up_delay,omitempty"`
	ScaleDownDelay time.Duration `json:"scale_down_delay,omitempty"`
}

// AutoscaleStatus is the autoscaler's last change of a service's replica
// count and why it made it, as the leader recorded it.
type AutoscaleStatus struct {
	From   uint64    `json:"from"`
	To     uint64    `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// CPUPercent and MemoryPercent are the averages the decision saw
	// (0 when the metric is not a target).
	CPUPercent    float64 `json:"cpu_percent,omitempty"`
	MemoryPercent float64 `json:"memory_percent,omitempty"`
}

// Update states of a service.
const (
	UpdateUpdating          = "updating"
	UpdatePaused            = "paused"
	UpdateCompleted         = "completed"
	UpdateRollbackStarted   = "rollback_started"
	UpdateRollbackPaused    = "rollback_paused"
	UpdateRollbackCompleted = "rollback_completed"
)

// UpdateStatus reports a rolling update or rollback in progress or finished.
type UpdateStatus struct {
	State       string    `json:"state"`
	Message     string    `json:"message,omitempty"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at,omitempty"`
}

// Service is a ServiceSpec with its identity and history, as stored in Raft.
// The flat fields Mode, Replicas, Image, Ports and Running are filled for
// display by the API from Spec and the task table.
type Service struct {
	ID       string       `json:"id"`
	Name     string       `json:"name"`
	Mode     string       `json:"mode"`
	Replicas uint64       `json:"replicas"`
	Running  int          `json:"running"`
	Image    string       `json:"image"`
	Ports    []PortConfig `json:"ports"`
	VIP      string       `json:"vip"`
	// Networks lists the service's networks (display, from Spec.Networks;
	// DefaultNetwork when the spec names none).
	Networks []string `json:"networks"`
	// VIPs maps each network of the service to its VIP there. The state
	// machine allocates them; VIP is the one on DefaultNetwork.
	VIPs         map[string]string `json:"vips"`
	Version      uint64            `json:"version"`
	Spec         ServiceSpec       `json:"spec"`
	PreviousSpec *ServiceSpec      `json:"previous_spec,omitempty"`
	UpdateStatus *UpdateStatus     `json:"update_status,omitempty"`
	// AutoscaleStatus is the autoscaler's last decision (nil before its
	// first change of the replica count).
	AutoscaleStatus *AutoscaleStatus `json:"autoscale_status,omitempty"`
	CreatedAt       time.Time        `json:"created_at"`
	UpdatedAt       time.Time        `json:"updated_at"`
	// UpdatedBy is the ID of the node whose API socket asked for the last
	// create or update, as the leader authenticated it.
	UpdatedBy string `json:"updated_by,omitempty"`

	// Completed is, for a job, how many tasks of its current run have
	// completed (display: `service ls` REPLICAS "0/0 (3/3 completed)").
	Completed int `json:"completed,omitempty"`
}

// Task states, in the order a task moves through them. A task's state only
// moves forward.
const (
	TaskNew       = "new"
	TaskAssigned  = "assigned"
	TaskPreparing = "preparing"
	TaskStarting  = "starting"
	TaskRunning   = "running"
	TaskComplete  = "complete"
	TaskFailed    = "failed"
	TaskShutdown  = "shutdown"
	TaskRejected  = "rejected"
	TaskOrphaned  = "orphaned"
)

// TaskStateOrder ranks task states so that observed state only moves forward.
var TaskStateOrder = map[string]int{
	TaskNew: 0, TaskAssigned: 1, TaskPreparing: 2, TaskStarting: 3, TaskRunning: 4,
	TaskComplete: 5, TaskFailed: 5, TaskShutdown: 5, TaskRejected: 5, TaskOrphaned: 5,
}

// TaskTerminal reports whether a task state is final.
func TaskTerminal(state string) bool { return TaskStateOrder[state] >= 5 }

// Task is one scheduled instance of a service on one node. It carries the
// spec it runs so that rolling updates can tell old tasks from new ones.
type Task struct {
	ID           string `json:"id"`
	Name         string `json:"name"` // web.3, or web.NODEID for global
	ServiceID    string `json:"service_id"`
	Service      string `json:"service"` // service name
	Slot         int    `json:"slot"`
	NodeID       string `json:"node_id"`
	Node         string `json:"node"` // hostname, filled at read time
	DesiredState string `json:"desired_state"`
	State        string `json:"state"`
	Message      string `json:"message,omitempty"`
	Error        string `json:"error,omitempty"`
	ExitCode     int    `json:"exit_code"`
	IP           string `json:"ip,omitempty"`
	// IPs maps each network of the task to its address there (IP is the
	// one on the first network).
	IPs         map[string]string `json:"ips,omitempty"`
	Image       string            `json:"image"`
	ContainerID string            `json:"container_id,omitempty"`
	Health      string            `json:"health,omitempty"`
	SpecVersion uint64            `json:"spec_version"`
	Spec        ServiceSpec       `json:"spec"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	StartedAt   time.Time         `json:"started_at,omitempty"`
	// Replaces is the ID of the task of the same slot this one was started
	// to replace when rebalancing moved the slot to another node: that task
	// keeps running until this one is ready, then it is stopped.
	Replaces string `json:"replaces,omitempty"`
}

// TaskStatus is what a node reports about one of its tasks; the leader batches
// these into one Raft command.
type TaskStatus struct {
	TaskID      string `json:"task_id"`
	State       string `json:"state"`
	Message     string `json:"message,omitempty"`
	Error       string `json:"error,omitempty"`
	ExitCode    int    `json:"exit_code"`
	ContainerID string `json:"container_id,omitempty"`
	IP          string `json:"ip,omitempty"`
	// IPs maps network name to address, for tasks on several networks.
	IPs       map[string]string `json:"ips,omitempty"`
	Health    string            `json:"health,omitempty"`
	Timestamp time.Time         `json:"timestamp"`
}

// Container states as `shoal ps` shows them.
const (
	ContainerCreated = "created"
	ContainerRunning = "running"
	ContainerExited  = "exited"
)

// Health states of a container with a health check.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Container is one container on this node, a one-off `shoal run` or a task.
type Container struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Image      string    `json:"image"`
	ImageID    string    `json:"image_id,omitempty"`
	Command    []string  `json:"command,omitempty"`
	State      string    `json:"state"`
	Pid        int       `json:"pid"`
	ExitCode   int       `json:"exit_code"`
	TaskID     string    `json:"task_id"`
	Health     string    `json:"health"`
	IP         string    `json:"ip,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// RunRequest is the body of POST /v1/containers (`shoal run`).
type RunRequest struct {
	Name        string        `json:"name,omitempty"`
	Image       string        `json:"image"`
	Command     []string      `json:"command,omitempty"`
	Entrypoint  []string      `json:"entrypoint,omitempty"`
	Env         []string      `json:"env,omitempty"`
	Workdir     string        `json:"workdir,omitempty"`
	User        string        `json:"user,omitempty"`
	Limits      Resources     `json:"limits"`
	Remove      bool          `json:"remove"` // --rm
	Healthcheck *HealthConfig `json:"healthcheck,omitempty"`
	Mounts      []Mount       `json:"mounts,omitempty"`
	// Networks the container joins (each must be attachable, or the
	// default network); empty means the default network.
	Networks []string `json:"networks,omitempty"`

	// LogDriver and LogOptions are the container's logging (`shoal run
	// --log-driver`, `--log-opt`), as ServiceSpec's: the same names, the
	// same rules (ParseLogging), the same meaning to the node.
	LogDriver  string            `json:"log_driver,omitempty"`
	LogOptions map[string]string `json:"log_options,omitempty"`
}

// Image is a content-addressed image: its ID is the digest of its config.
type Image struct {
	ID      string    `json:"id"`
	Tags    []string  `json:"tags"`
	Size    int64     `json:"size"`
	Layers  []string  `json:"layers"` // compressed layer blob digests, base first
	DiffIDs []string  `json:"diff_ids,omitempty"`
	Created time.Time `json:"created"`
	// Source is where the image came from: import, load or pull REF.
	Source string `json:"source,omitempty"`
	// Nodes that hold all layers of the image (cluster-wide record only).
	Nodes  []string     `json:"nodes,omitempty"`
	Config *ImageConfig `json:"config,omitempty"`
}

// ImageConfig is the part of an OCI image config the runtime honours.
type ImageConfig struct {
	Entrypoint   []string      `json:"entrypoint,omitempty"`
	Cmd          []string      `json:"cmd,omitempty"`
	Env          []string      `json:"env,omitempty"`
	WorkingDir   string        `json:"working_dir,omitempty"`
	User         string        `json:"user,omitempty"`
	ExposedPorts []string      `json:"exposed_ports,omitempty"`
	Healthcheck  *HealthConfig `json:"healthcheck,omitempty"`
}

// PullRequest is the body of POST /v1/images/pull.
type PullRequest struct {
	Ref      string `json:"ref"`
	Insecure bool   `json:"insecure"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Status answers `shoal status`.
type Status struct {
	ClusterID  string   `json:"cluster_id"`
	NodeID     string   `json:"node_id"`
	Hostname   string   `json:"hostname"`
	Addr       string   `json:"addr"`
	Joined     bool     `json:"joined"`
	Leader     string   `json:"leader"`      // leader node ID
	LeaderAddr string   `json:"leader_addr"` // leader IP:cluster-port
	Voters     []string `json:"voters"`      // node IDs
	Voter      bool     `json:"voter"`
	RaftState  string   `json:"raft_state"`
	LastIndex  uint64   `json:"last_index"`
	Members    int      `json:"members"` // alive gossip members
	// AgentVersion is the release of the agent that answers (`shoal
	// version`); empty from agents older than the field.
	AgentVersion string `json:"agent_version"`
}

// InitResponse answers POST /v1/init and GET /v1/token.
type InitResponse struct {
	ClusterID   string `json:"cluster_id"`
	NodeID      string `json:"node_id"`
	Token       string `json:"token"`
	JoinCommand string `json:"join_command"`
}

// CARotateResponse answers POST /v1/ca/rotate: the new CA's fingerprint,
// the new join token (it pins the new CA), and whether every node already
// has a certificate from the new CA (Pending names those that do not; the
// old CA stays trusted until they have).
type CARotateResponse struct {
	CAFingerprint string   `json:"ca_fingerprint"`
	Token         string   `json:"token"`
	JoinCommand   string   `json:"join_command"`
	Complete      bool     `json:"complete"`
	Pending       []string `json:"pending,omitempty"`
}

// JoinRequest is the body of POST /v1/join on the joining node's own socket.
type JoinRequest struct {
	Token string `json:"token"`
	Addr  string `json:"addr"` // HOST:PORT of any cluster member
}

// ErrorResponse is the body of every non-2xx answer of the HTTP API.
type ErrorResponse struct {
	Error string `json:"error"`
}

// LogLine is one line of container output as stored and streamed (JSON lines).
type LogLine struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"` // stdout or stderr
	Line   string    `json:"line"`
	// Task names the task for `service logs`; empty for container logs.
	Task string `json:"task,omitempty"`
	// Node names the node for `service logs`.
	Node string `json:"node,omitempty"`
}

// MaxSecretSize is the largest secret or config, as Swarm allows (500 KiB).
const MaxSecretSize = 500 << 10

// SecretsDir is where a secret with a relative target is mounted in a task.
const SecretsDir = "/run/secrets"

// FileReference mounts a secret or config named Source into a service's
// tasks. Target is a file name under SecretsDir for a secret (default:
// Source; an absolute path is used as is) and an absolute path for a
// config (default: "/" + Source). Mode defaults to 0444, UID and GID to 0.
type FileReference struct {
	Source string `json:"source"`
	Target string `json:"target,omitempty"`
	Mode   uint32 `json:"mode,omitempty"`
	UID    uint32 `json:"uid,omitempty"`
	GID    uint32 `json:"gid,omitempty"`
}

// Secret describes a secret; neither its data nor its size is returned
// by the API.
type Secret struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	CreatedAt time.Time         `json:"created_at"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Config is a config object; configs are not secret and inspect returns
// their data.
type Config struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	CreatedAt time.Time         `json:"created_at"`
	Size      int               `json:"size"`
	Labels    map[string]string `json:"labels,omitempty"`
	Data      []byte            `json:"data,omitempty"`
}

// SecretCreateRequest is the body of POST /v1/secrets and POST /v1/configs.
type SecretCreateRequest struct {
	Name   string            `json:"name"`
	Data   []byte            `json:"data"`
	Labels map[string]string `json:"labels,omitempty"`
	// KeepSame accepts an existing object of this name that holds the same
	// data (the answer is that object, nothing is written) and refuses one
	// with other data saying so: `stack deploy` of a file whose secret or
	// config changed must fail, not run the services with the old data,
	// and a secret's data is never read back to compare it on the client.
	KeepSame bool `json:"keep_same,omitempty"`
}

// Event types.
const (
	EventNode      = "node"
	EventService   = "service"
	EventTask      = "task"
	EventContainer = "container"
)

// Event is one thing that changed in the cluster (node, service, task,
// derived from Raft-committed state) or on the answering node (container,
// from its runtime). `shoal events --format json` prints one per line.
type Event struct {
	Time   time.Time `json:"time"`
	Type   string    `json:"type"`   // node, service, task or container
	Action string    `json:"action"` // e.g. created, scaled, running, die
	ID     string    `json:"id"`
	Name   string    `json:"name"`
	// NodeID is the node the event is about (node events), runs on (task
	// events) or happened on (container events).
	NodeID     string            `json:"node_id"`
	Attributes map[string]string `json:"attributes"`
}

// Mount types.
const (
	// MountVolume mounts a named volume of the node that runs the container
	// (created on first use, kept until `shoal volume rm`).
	MountVolume = "volume"
	// MountBind mounts a path of the node that runs the container.
	MountBind = "bind"
	// MountTmpfs mounts a fresh tmpfs, gone with the container.
	MountTmpfs = "tmpfs"
)

// Mount is one --mount of a service or container. Source is a volume name
// (volume) or an absolute host path (bind), empty for tmpfs. TmpfsSize (bytes,
// 0 = the kernel's default) and TmpfsMode (0 = 01777) apply to tmpfs only.
type Mount struct {
	Type      string `json:"type"`
	Source    string `json:"source,omitempty"`
	Target    string `json:"target"`
	ReadOnly  bool   `json:"readonly,omitempty"`
	TmpfsSize int64  `json:"tmpfs_size,omitempty"`
	TmpfsMode uint32 `json:"tmpfs_mode,omitempty"`
	// NoCopy (`volume-nocopy`) keeps an empty volume empty: by default a
	// named volume that is empty when a container is created gets the
	// image's content at the target, as docker does.
	NoCopy bool `json:"nocopy,omitempty"`
}

// Volume is a named volume of one node (`shoal volume ls|inspect`).
type Volume struct {
	Name string `json:"name"`
	// Mountpoint is the host directory containers see at their target.
	Mountpoint string    `json:"mountpoint"`
	InUse      bool      `json:"in_use"`
	CreatedAt  time.Time `json:"created_at"`
	// Containers are the IDs of this node's containers that mount it.
	Containers []string `json:"containers,omitempty"`
}

// VolumeCreateRequest is the body of POST /v1/volumes.
type VolumeCreateRequest struct {
	Name string `json:"name"`
}

// ExecRequest is the body of POST /v1/containers/{id}/exec, sent with an
// HTTP upgrade; once the agent answers 101 the connection carries exec
// frames (see ExecFrame).
type ExecRequest struct {
	Cmd     []string `json:"cmd"`
	Env     []string `json:"env,omitempty"`
	User    string   `json:"user,omitempty"`
	Workdir string   `json:"workdir,omitempty"`
	Tty     bool     `json:"tty,omitempty"`
	// Stdin relays the client's input (-i); without it the process reads
	// /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// Width and Height are the initial terminal size (with Tty).
	Width  uint16 `json:"width,omitempty"`
	Height uint16 `json:"height,omitempty"`
}
