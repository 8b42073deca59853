package api

import (
	"maps"
	"slices"
)

// MaterialEqual reports whether two specs run the same containers in the
// same places, so that a task of one need not be replaced for the other:
// the planner's test of an outdated task (a rolling update replaces tasks
// whose spec is not materially equal to the service's).
// Replicas, ports (served by the routing mesh), restart, update and rollback
// policies are not material, and neither are labels: they are the service's,
// no container carries them (as docker's --label, not --container-label).
// Placement preferences are material, as constraints are (and as Swarm
// rolls any placement change): a rolling update is how running tasks get
// re-spread. The max replicas per node is not: tasks that still fit keep
// running, pending ones place when it rises, and rebalancing moves the
// excess of a lowered one where there is room (placement.PlanMoves).
func MaterialEqual(a, b *ServiceSpec) bool {
	return a.Image == b.Image &&
		slices.Equal(a.Command, b.Command) &&
		slices.Equal(a.Entrypoint, b.Entrypoint) &&
		slices.Equal(a.Env, b.Env) &&
		a.Workdir == b.Workdir &&
		a.User == b.User &&
		a.Resources == b.Resources &&
		slices.Equal(a.Constraints, b.Constraints) &&
		slices.Equal(a.PlacementPreferences, b.PlacementPreferences) &&
		healthEqual(a.Healthcheck, b.Healthcheck) &&
		a.StopGracePeriod == b.StopGracePeriod &&
		a.ForceUpdate == b.ForceUpdate &&
		slices.Equal(SpecNetworks(*a), SpecNetworks(*b)) && // a task's interfaces are set at start
		slices.Equal(a.Mounts, b.Mounts) && // mounts are made at container creation
		fileRefsEqual(a, b) &&
		a.ReadOnly == b.ReadOnly &&
		slices.Equal(a.CapAdd, b.CapAdd) && slices.Equal(a.CapDrop, b.CapDrop) &&
		maps.Equal(a.Sysctls, b.Sysctls) &&
		slices.Equal(a.Ulimits, b.Ulimits) &&
		a.StopSignal == b.StopSignal && // kept in the container's record
		a.Hostname == b.Hostname &&
		slices.Equal(a.ExtraHosts, b.ExtraHosts) &&
		logEqual(a, b) // the supervisor takes them when it starts the container
}

// logEqual compares what two specs' logging does (the drivers json-file,
// local and the default are the same files; "10m" is "10240k"); specs
// that do not parse compare by their text.
func logEqual(a, b *ServiceSpec) bool {
	la, errA := ParseLogging(a.LogDriver, a.LogOptions)
	lb, errB := ParseLogging(b.LogDriver, b.LogOptions)
	if errA != nil || errB != nil {
		return a.LogDriver == b.LogDriver && maps.Equal(a.LogOptions, b.LogOptions)
	}
	return la == lb
}

// fileRefsEqual compares the secrets and configs of two specs: changing
// them rolls the tasks, as Swarm does.
func fileRefsEqual(a, b *ServiceSpec) bool {
	return slices.Equal(a.Secrets, b.Secrets) && slices.Equal(a.Configs, b.Configs)
}

func healthEqual(a, b *HealthConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Test, b.Test) && a.Interval == b.Interval && a.Timeout == b.Timeout &&
		a.StartPeriod == b.StartPeriod && a.Retries == b.Retries
}
