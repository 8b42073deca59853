package servicespec

import (
	"fmt"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler/placement"
)

// Docker's defaults, applied by Defaults.
const (
	DefaultReplicas        = 1
	DefaultRestartDelay    = 5 * time.Second
	DefaultUpdateMonitor   = 5 * time.Second
	DefaultStopGracePeriod = 10 * time.Second
	DefaultProtocol        = "tcp"
	maxNameLen             = 63
	// MaxReplicas bounds Replicas so that a typo cannot take a cluster
	// down: every task is a record on every node, and creating them costs
	// the leader about 11 KiB of RSS per task at peak (10,000 pending tasks:
	// 23 → 131 MiB, test/BenchmarkLeaderRSS10kTasks). 65,536 is what the cluster can
	// place at all with the default network: each node gets a /24 of the
	// 10.42.0.0/16 cluster CIDR, 256 nodes × 253 task addresses = 64,768
	// tasks running at once, far beyond DESIGN's 3 to ~100 machines (about
	// 25,000). Larger counts could never all run; they would only cost
	// memory on every node. The planner creates at most Config.MaxCreate
	// tasks per plan whatever the count, so even this maximum arrives in
	// bounded rounds. (api.MaxReplicas, for the CLI's scale.)
	MaxReplicas = api.MaxReplicas
)

// Defaults returns spec with Docker's defaults filled into zero fields: mode
// replicated, 1 replica, restart condition any with a 5s delay, update and
// rollback parallelism 1, order stop-first, failure action pause, monitor
// 5s, stop grace period 10s, port protocol tcp.
//
// A uint64 cannot tell "unset" from 0, so Replicas 0 becomes 1: a caller that
// means 0 (`service create --replicas 0`, `service scale web=0`) sets Replicas
// after calling Defaults. An update (or rollback) config that is entirely
// unset gets parallelism 1, as Docker's API does when UpdateConfig is
// absent; one with any field set keeps its parallelism, so 0 ("all at once",
// `--update-parallelism 0`) stays 0. The input is not modified (slices that
// change are copied).
func Defaults(spec api.ServiceSpec) api.ServiceSpec {
	if spec.Mode == "" {
		spec.Mode = api.ModeReplicated
	}
	if (spec.Mode == api.ModeReplicated || spec.Mode == api.ModeReplicatedJob) && spec.Replicas == 0 {
		spec.Replicas = DefaultReplicas
	}
	if spec.RestartPolicy.Condition == "" {
		spec.RestartPolicy.Condition = api.RestartAny
		if api.IsJob(spec.Mode) {
			// Docker's default for jobs: a task that completed is done.
			spec.RestartPolicy.Condition = api.RestartOnFailure
		}
	}
	if spec.RestartPolicy.Delay == 0 {
		spec.RestartPolicy.Delay = DefaultRestartDelay
	}
	spec.UpdateConfig = UpdateDefaults(spec.UpdateConfig, true)
	spec.RollbackConfig = UpdateDefaults(spec.RollbackConfig, true)
	if spec.StopGracePeriod == 0 {
		spec.StopGracePeriod = DefaultStopGracePeriod
	}
	if spec.EndpointMode == api.EndpointVIP {
		spec.EndpointMode = "" // the default: one spelling, so specs compare equal
	}
	if len(spec.Ports) > 0 {
		ports := make([]api.PortConfig, len(spec.Ports))
		copy(ports, spec.Ports)
		for i := range ports {
			if ports[i].Protocol == "" {
				ports[i].Protocol = DefaultProtocol
			}
			if ports[i].Mode == api.PublishIngress {
				ports[i].Mode = "" // the default: one spelling, so specs compare equal
			}
		}
		spec.Ports = ports
	}
	return spec
}

// UpdateDefaults fills an update or rollback config; parallelism is only
// defaulted when asked (the planner treats a stored 0 as "all at once" and
// fills the rest when it reads a stored spec).
func UpdateDefaults(u api.UpdateConfig, parallelism bool) api.UpdateConfig {
	if parallelism && u == (api.UpdateConfig{}) {
		u.Parallelism = 1
	}
	if u.Order == "" {
		u.Order = api.OrderStopFirst
	}
	if u.FailureAction == "" {
		u.FailureAction = api.FailurePause
	}
	if u.Monitor == 0 {
		u.Monitor = DefaultUpdateMonitor
	}
	return u
}

// Validate checks a service spec before it is written to Raft and says
// exactly what is wrong: the returned error wraps ErrInvalidSpec and lists
// every problem, each naming its field. Fields Defaults fills (mode, restart
// condition, update order and failure action, port protocol) may be empty.
func Validate(spec api.ServiceSpec) error {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if err := validateName(spec.Name); err != "" {
		bad("name %q: %s", spec.Name, err)
	}
	switch spec.Mode {
	case "", api.ModeReplicated, api.ModeGlobal, api.ModeReplicatedJob, api.ModeGlobalJob:
	default:
		bad("mode %q: want %s, %s, %s or %s", spec.Mode, api.ModeReplicated, api.ModeGlobal, api.ModeReplicatedJob, api.ModeGlobalJob)
	}
	if spec.MaxConcurrent > 0 && spec.Mode != api.ModeReplicatedJob {
		bad("max_concurrent %d: applies to %s services only", spec.MaxConcurrent, api.ModeReplicatedJob)
	}
	if spec.MaxConcurrent > MaxReplicas {
		bad("max_concurrent %d: more than %d", spec.MaxConcurrent, MaxReplicas)
	}
	if spec.Replicas > MaxReplicas {
		bad("replicas %d: more than %d", spec.Replicas, MaxReplicas)
	}
	if api.GlobalMode(spec.Mode) && spec.Replicas != 0 {
		bad("replicas %d: a %s service runs one task on every eligible node; replicas applies to replicated services only", spec.Replicas, spec.Mode)
	}
	checkNoNUL(bad, spec)
	if strings.TrimSpace(spec.Image) == "" {
		bad("image: must not be empty")
	}
	for i, e := range spec.Env {
		if e == "" || strings.HasPrefix(e, "=") {
			bad("env[%d] %q: want KEY=VALUE", i, e)
		}
	}
	for k := range spec.Labels {
		if k == "" {
			bad("labels: empty key")
		}
	}
	seen := map[string]bool{}
	for i, port := range spec.Ports {
		proto := port.Protocol
		if proto == "" {
			proto = DefaultProtocol
		}
		// 0 asks the leader for one of api.AutoPortMin-AutoPortMax: the
		// state machine picks it (consensus/fsm publishPorts).
		if port.Published < 0 || port.Published > 65535 {
			bad("ports[%d]: published port %d out of range 1-65535 (or none: the cluster picks one of %d-%d)",
				i, port.Published, api.AutoPortMin, api.AutoPortMax)
		}
		if port.Target < 1 || port.Target > 65535 {
			bad("ports[%d]: target port %d out of range 1-65535", i, port.Target)
		}
		if proto != "tcp" && proto != "udp" {
			bad("ports[%d]: protocol %q: want tcp or udp", i, port.Protocol)
		}
		if port.Mode != "" && port.Mode != api.PublishIngress && port.Mode != api.PublishHost {
			bad("ports[%d]: mode %q: want ingress or host", i, port.Mode)
		}
		key := fmt.Sprintf("%d/%s", port.Published, proto)
		if port.Published != 0 && seen[key] {
			bad("ports[%d]: published port %s listed twice", i, key)
		}
		seen[key] = true
	}
	if _, err := placement.ParseConstraints(spec.Constraints); err != nil {
		bad("constraints: %v", err)
	}
	placementProblems(bad, spec)
	checkResources := func(field string, r api.Resources) {
		nonNegative(bad, field+".nano_cpus", r.NanoCPUs)
		nonNegative(bad, field+".memory_bytes", r.MemoryBytes)
		nonNegative(bad, field+".pids", r.Pids)
	}
	checkResources("resources.limits", spec.Resources.Limits)
	if lim := spec.Resources.Limits.MemoryBytes; lim > 0 && lim < api.MinMemoryLimit {
		// Every task would be rejected at its start, one after another.
		bad("resources.limits.memory_bytes %d is below the 6MiB minimum", lim)
	}
	checkResources("resources.reservations", spec.Resources.Reservations)
	if lim, res := spec.Resources.Limits.MemoryBytes, spec.Resources.Reservations.MemoryBytes; lim > 0 && res > lim {
		// The container's soft limit cannot exceed its hard limit (runc
		// would refuse every task, as docker refuses the container).
		bad("resources.reservations.memory_bytes %d is above resources.limits.memory_bytes %d", res, lim)
	}

	rp := spec.RestartPolicy
	switch rp.Condition {
	case "", api.RestartAny, api.RestartOnFailure, api.RestartNone:
	default:
		bad("restart_policy.condition %q: want any, on-failure or none", rp.Condition)
	}
	if rp.Delay != api.ExplicitZero {
		nonNegative(bad, "restart_policy.delay", rp.Delay)
	}
	nonNegative(bad, "restart_policy.max_attempts", rp.MaxAttempts)
	nonNegative(bad, "restart_policy.window", rp.Window)
	checkUpdate := func(field string, u api.UpdateConfig, rollback bool) {
		nonNegative(bad, field+".parallelism", u.Parallelism)
		nonNegative(bad, field+".delay", u.Delay)
		if u.Monitor != api.ExplicitZero {
			nonNegative(bad, field+".monitor", u.Monitor)
		}
		switch u.Order {
		case "", api.OrderStopFirst, api.OrderStartFirst:
		default:
			bad("%s.order %q: want stop-first or start-first", field, u.Order)
		}
		switch u.FailureAction {
		case "", api.FailurePause, api.FailureContinue:
		case api.FailureRollback:
			if rollback {
				bad("%s.failure_action %q: want pause or continue", field, u.FailureAction)
			}
		default:
			bad("%s.failure_action %q: want pause, rollback or continue", field, u.FailureAction)
		}
		if u.MaxFailureRatio < 0 || u.MaxFailureRatio > 1 {
			bad("%s.max_failure_ratio %g: must be between 0 and 1", field, u.MaxFailureRatio)
		}
	}
	checkUpdate("update_config", spec.UpdateConfig, false)
	checkUpdate("rollback_config", spec.RollbackConfig, true)
	if spec.AtMostOnce {
		// Start-first runs the new task of a slot beside the old one.
		if spec.UpdateConfig.Order == api.OrderStartFirst {
			bad("update_config.order start-first: an at-most-once service never runs two tasks of one slot; use stop-first")
		}
		if spec.RollbackConfig.Order == api.OrderStartFirst {
			bad("rollback_config.order start-first: an at-most-once service never runs two tasks of one slot; use stop-first")
		}
	}
	if h := spec.Healthcheck; h != nil {
		if len(h.Test) > 0 {
			switch h.Test[0] {
			case "NONE":
			case "CMD", "CMD-SHELL":
				if len(h.Test) < 2 {
					bad("healthcheck.test: %s needs a command", h.Test[0])
				}
			default:
				bad("healthcheck.test[0] %q: want CMD, CMD-SHELL or NONE", h.Test[0])
			}
		}
		nonNegative(bad, "healthcheck.interval", h.Interval)
		nonNegative(bad, "healthcheck.timeout", h.Timeout)
		nonNegative(bad, "healthcheck.start_period", h.StartPeriod)
		nonNegative(bad, "healthcheck.retries", h.Retries)
	}
	if spec.StopGracePeriod != api.ExplicitZero {
		nonNegative(bad, "stop_grace_period", spec.StopGracePeriod)
	}
	p = append(p, api.MountsProblems(spec.Mounts)...)
	nonNegative(bad, "disconnect_grace", spec.DisconnectGrace)
	p = append(p, autoscaleProblems(spec)...)
	p = append(p, optionProblems(spec)...)
	p = append(p, endpointProblems(spec)...)
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidSpec, strings.Join(p, "; "))
}

// validateName returns why name is not a valid service name, or "": a
// service name is one DNS label (api.ServiceNameProblem, the rule the state
// machine applies too). Names differing only in case are refused by the
// state machine, which sees every service.
func validateName(name string) string {
	return api.ServiceNameProblem(name)
}

// CheckPortClash reports whether spec publishes a port+protocol that another
// service in existing already publishes. The service named spec.Name is
// skipped, so an update may keep its own ports, and so are ports without a
// published port (0), which the state machine gives a free one. The error
// wraps ErrPortInUse and names the other service.
func CheckPortClash(spec api.ServiceSpec, existing []api.Service) error {
	used := map[string]string{}
	for _, s := range existing {
		if s.Spec.Name == spec.Name || s.Name == spec.Name {
			continue
		}
		for _, p := range s.Spec.Ports {
			used[portKey(p)] = s.Spec.Name
		}
	}
	for _, p := range spec.Ports {
		if p.Published == 0 {
			continue
		}
		if other, ok := used[portKey(p)]; ok {
			return fmt.Errorf("%w: %s is published by service %s", ErrPortInUse, portKey(p), other)
		}
	}
	return nil
}

func portKey(p api.PortConfig) string {
	proto := p.Protocol
	if proto == "" {
		proto = DefaultProtocol
	}
	return fmt.Sprintf("%d/%s", p.Published, proto)
}

// nonNegative reports a negative count, size or duration.
func nonNegative[T ~int | ~int64](bad func(string, ...any), field string, v T) {
	if v < 0 {
		bad("%s %v: must not be negative", field, v)
	}
}

// checkNoNUL reports NUL bytes in the strings that become a container's
// argv, environment, user, working directory, labels or health check: the
// kernel takes C strings, so runc refuses them and every task of the
// service would fail and restart forever.
func checkNoNUL(bad func(string, ...any), spec api.ServiceSpec) {
	nul := func(field, s string) {
		if strings.IndexByte(s, 0) >= 0 {
			bad("%s %q: contains a NUL byte", field, s)
		}
	}
	list := func(field string, l []string) {
		for i, s := range l {
			nul(fmt.Sprintf("%s[%d]", field, i), s)
		}
	}
	nul("image", spec.Image)
	list("command", spec.Command)
	list("entrypoint", spec.Entrypoint)
	list("env", spec.Env)
	nul("workdir", spec.Workdir)
	nul("user", spec.User)
	for k, v := range spec.Labels {
		nul("labels key", k)
		nul("labels["+k+"]", v)
	}
	list("constraints", spec.Constraints)
	if spec.Healthcheck != nil {
		list("healthcheck.test", spec.Healthcheck.Test)
	}
}

// placementProblems checks the max replicas per node and the placement
// preferences: a limit on a global service (one task per node already),
// as Swarm refuses it, or above MaxReplicas; a preference other than
// spread=node.labels.NAME.
func placementProblems(bad func(string, ...any), spec api.ServiceSpec) {
	if m := spec.MaxReplicasPerNode; m > 0 {
		if api.GlobalMode(spec.Mode) {
			bad("max_replicas_per_node %d: a global service runs one task per node; the limit applies to replicated services only", m)
		}
		if m > MaxReplicas {
			bad("max_replicas_per_node %d: more than %d", m, MaxReplicas)
		}
	}
	if _, err := placement.ParsePreferences(spec.PlacementPreferences); err != nil {
		bad("placement_preferences: %v", err)
	}
}
