package specflags

// Flags of `service create` and `service update`, and their translation into
// an api.ServiceSpec. Both commands start from a spec (Docker's defaults for
// create, the current spec for update) and apply only the flags the user set.

import (
	"fmt"
	"maps"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// DefaultSpec is what `service create` starts from: Docker's defaults.
func DefaultSpec() api.ServiceSpec {
	upd := api.UpdateConfig{
		Parallelism:   1,
		Order:         api.OrderStopFirst,
		FailureAction: api.FailurePause,
		Monitor:       5 * time.Second,
	}
	return api.ServiceSpec{
		Mode:            api.ModeReplicated,
		Replicas:        1,
		RestartPolicy:   api.RestartPolicy{Condition: api.RestartAny, Delay: 5 * time.Second},
		UpdateConfig:    upd,
		RollbackConfig:  upd,
		StopGracePeriod: 10 * time.Second,
	}
}

// Flags are the flags that shape a ServiceSpec. update selects the
// update variants (--env-add instead of --env, ...).
func Flags(update bool) []cli.Flag {
	flags := slices.Concat([]cli.Flag{
		&cli.Uint64Flag{Name: "replicas", Usage: "number of tasks (replicated mode; completions of a replicated-job, default 1)"},
		&cli.StringFlag{Name: "limit-memory", Usage: "memory limit (e.g. 64M, 1g)"},
		&cli.StringFlag{Name: "limit-cpu", Usage: "CPU limit (e.g. 0.5)"},
		&cli.StringFlag{Name: "limit-pids", Usage: "maximum number of processes"},
		&cli.StringFlag{Name: "reserve-memory", Usage: "memory the scheduler reserves on the node; also the task's memory soft limit"},
		&cli.StringFlag{Name: "reserve-cpu", Usage: "CPUs the scheduler reserves on the node"},
	}, HealthFlags("command (run by /bin/sh -c) that checks health"), []cli.Flag{
		&cli.StringFlag{Name: "restart-condition", Usage: "any, on-failure or none (default any)"},
		&cli.DurationFlag{Name: "restart-delay", Usage: "wait before a task that ended is replaced; 0 replaces it at once (default 5s)"},
		&cli.IntFlag{Name: "restart-max-attempts", Usage: "maximum restarts per window (0 = unlimited)"},
		&cli.DurationFlag{Name: "restart-window", Usage: "window in which restarts are counted"},
		&cli.DurationFlag{Name: "stop-grace-period", Usage: "time to wait after the stop signal (SIGTERM) before SIGKILL; 0 kills at once (default 10s)"},
		&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory in the container"},
		&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user[:group] in the container"},
		&cli.StringFlag{Name: "entrypoint", Usage: "override the image's entrypoint"},
		&cli.DurationFlag{Name: "disconnect-grace", Usage: "how long the tasks of a node that stopped answering are kept for it; replacements run meanwhile and the originals win if it returns (default 60s)"},
		&cli.BoolFlag{Name: "at-most-once", Usage: "never run two tasks of one slot at once: tasks of an unreachable or removed node are replaced only after --disconnect-grace plus the stop grace, and that node stops them itself; never rebalanced or updated start-first"},
		&cli.BoolFlag{Name: "no-rebalance", Usage: "do not move running tasks: no evening out of the spread when a node joins or returns, and no moving of the excess above a lowered --replicas-max-per-node"},
		&cli.StringFlag{Name: "autoscale", Usage: "scale with load: min=N,max=M,cpu=P%[,memory=P%][,up-delay=15s][,down-delay=60s] ('off' on update)"},
	})
	for _, p := range []string{"update", "rollback"} {
		flags = append(flags,
			&cli.IntFlag{Name: p + "-parallelism", Usage: "tasks changed at once, 0 = all (default 1)"},
			&cli.DurationFlag{Name: p + "-delay", Usage: "delay between batches"},
			&cli.StringFlag{Name: p + "-order", Usage: "stop-first or start-first"},
			&cli.StringFlag{Name: p + "-failure-action", Usage: "pause, continue (or rollback, for updates)"},
			&cli.DurationFlag{Name: p + "-monitor", Usage: "time to watch each task for failure after it starts; 0 watches none, and a create or scale returns once its tasks run (default 5s)"},
			&cli.Float64Flag{Name: p + "-max-failure-ratio", Usage: "tolerated failure ratio, 0 to 1"},
		)
	}
	if update {
		flags = append(flags,
			&cli.StringFlag{Name: "image", Usage: "new image"},
			&cli.StringFlag{Name: "args", Usage: "new command arguments"},
			&cli.StringSliceFlag{Name: "env-add", Usage: "add or update an environment variable"},
			&cli.StringSliceFlag{Name: "env-rm", Usage: "remove an environment variable"},
			&cli.StringSliceFlag{Name: "label-add", Usage: "add or update a service label"},
			&cli.StringSliceFlag{Name: "label-rm", Usage: "remove a service label"},
			&cli.StringSliceFlag{Name: "constraint-add", Usage: "add a placement constraint"},
			&cli.StringSliceFlag{Name: "constraint-rm", Usage: "remove a placement constraint"},
			&cli.StringSliceFlag{Name: "publish-add", Usage: "publish a port, P:T[/proto], or T[/proto] for a port the cluster picks (30000-32767, kept across updates)"},
			&cli.StringSliceFlag{Name: "publish-rm", Usage: "unpublish a port, by target port (T[/proto]) or P:T"},
			&cli.StringSliceFlag{Name: "secret-add", Usage: "mount a secret: NAME or source=NAME,target=T,mode=0400,uid=U,gid=G"},
			&cli.StringSliceFlag{Name: "secret-rm", Usage: "stop mounting a secret (by name)"},
			&cli.StringSliceFlag{Name: "config-add", Usage: "mount a config: source=NAME,target=/path[,mode=0444]"},
			&cli.StringSliceFlag{Name: "config-rm", Usage: "stop mounting a config (by name)"},
			&cli.StringSliceFlag{Name: "mount-add", Usage: "add or replace a mount (--mount syntax)"},
			&cli.StringSliceFlag{Name: "mount-rm", Usage: "remove a mount, by target path"},
			&cli.StringSliceFlag{Name: "network-add", Usage: "join a network (tasks are replaced): NAME, or name=NAME,alias=ALIAS (repeatable alias) which sets all of the network's aliases, on a network the service is on too (no task is replaced then)"},
			&cli.StringSliceFlag{Name: "network-rm", Usage: "leave a network (tasks are replaced); its aliases go too; a service that leaves every network is on the default one"},
			&cli.BoolFlag{Name: "force", Usage: "replace every task even if nothing changed"},
			&cli.BoolFlag{Name: "rollback", Usage: "roll back to the previous spec"},
		)
	} else {
		flags = append(flags,
			&cli.StringFlag{Name: "name", Usage: "service name"},
			&cli.StringFlag{Name: "mode", Usage: "replicated, global, replicated-job or global-job (default replicated)"},
			&cli.StringSliceFlag{Name: "publish", Aliases: []string{"p"}, Usage: "publish a port, P:T[/proto] or published=P,target=T[,protocol=udp][,mode=host] (repeatable; mode=host: only on nodes running a task, client address kept; without P the cluster picks a free port of 30000-32767, kept across updates)"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "environment variable K=V (repeatable)"},
			&cli.StringSliceFlag{Name: "label", Aliases: []string{"l"}, Usage: "service label k=v (repeatable)"},
			&cli.StringSliceFlag{Name: "constraint", Usage: "placement constraint, e.g. node.labels.zone==a (repeatable)"},
			&cli.StringSliceFlag{Name: "secret", Usage: "mount a secret at /run/secrets: NAME or source=NAME,target=T,mode=0400,uid=U,gid=G (repeatable)"},
			&cli.StringSliceFlag{Name: "config", Usage: "mount a config: source=NAME,target=/path[,mode=0444] (repeatable)"},
			MountFlag(),
			&cli.StringSliceFlag{Name: "network", Usage: "network to join: NAME or name=NAME,alias=ALIAS (repeatable, alias too: more names of the service on that network only; default: the default network)"},
		)
	}
	flags = append(flags, optionFlags(update)...)
	flags = append(flags, endpointFlags()...)
	flags = append(flags, placementFlags(update)...)
	flags = append(flags, logFlags(update)...)
	flags = append(flags, jobFlags()...)
	helpDefaults(flags, update)
	flags = append(flags, WithRegistryAuthFlag())
	return append(flags, WaitFlags()...)
}

// usageDefaultRE finds a default written in a flag's usage: "... (default
// 5s)" or "(replicated mode, default 1)".
var usageDefaultRE = regexp.MustCompile(`(, | \()default ([^()]+)\)$`)

// helpDefaults makes the help show each flag's real default once. urfave/cli
// appends the Go zero value, so --replicas read "number of tasks
// (replicated mode, default 1) (default: 0)"; on update, where a flag not
// given leaves the spec as it is, no default applies but "unchanged".
func helpDefaults(flags []cli.Flag, update bool) {
	for _, f := range flags {
		df, ok := f.(cli.DocGenerationFlag)
		if !ok || !df.TakesValue() {
			continue
		}
		usage, def := df.GetUsage(), ""
		if m := usageDefaultRE.FindStringSubmatchIndex(usage); m != nil {
			def = usage[m[4]:m[5]]
			if usage[m[2]:m[3]] == ", " {
				usage = usage[:m[0]] + ")"
			} else {
				usage = usage[:m[0]]
			}
		}
		if update {
			def = "unchanged"
		}
		switch f := f.(type) {
		case *cli.IntFlag:
			f.Usage, f.DefaultText = usage, def
		case *cli.Uint64Flag:
			f.Usage, f.DefaultText = usage, def
		case *cli.Float64Flag:
			f.Usage, f.DefaultText = usage, def
		case *cli.DurationFlag:
			f.Usage, f.DefaultText = usage, def
		case *cli.StringFlag:
			f.Usage, f.DefaultText = usage, def
		}
	}
}

// HealthFlags are the --health-* flags of `run` and of the service
// commands (ApplyHealth reads them); cmdUsage describes --health-cmd.
func HealthFlags(cmdUsage string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "health-cmd", Usage: cmdUsage},
		&cli.DurationFlag{Name: "health-interval", Usage: "time between health checks"},
		&cli.DurationFlag{Name: "health-timeout", Usage: "maximum time a check may run"},
		&cli.DurationFlag{Name: "health-start-period", Usage: "grace period before failed checks count"},
		&cli.IntFlag{Name: "health-retries", Usage: "consecutive failures before unhealthy"},
		&cli.BoolFlag{Name: "no-healthcheck", Usage: "disable the image's health check"},
	}
}

// WaitFlags control the progress display of commands that change a service.
func WaitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "return at once instead of waiting for convergence"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "do not print progress"},
		&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "give up waiting for convergence after this long"},
	}
}

// SpecError marks a bad flag value as a usage error naming the flag.
func SpecError(flag string, err error) error {
	return &UsageError{Err: fmt.Errorf("--%s: %w", flag, err)}
}

// Apply changes spec according to the flags the user set. update
// selects the update variants. It does not touch Name, Image or Command.
func Apply(c *cli.Context, spec *api.ServiceSpec, update bool) error {
	set := c.IsSet
	if !update {
		if set("mode") {
			switch m := c.String("mode"); m {
			case api.ModeReplicated, api.ModeGlobal, api.ModeReplicatedJob, api.ModeGlobalJob:
				spec.Mode = m
			default:
				return UsageErrorf("invalid --mode %q: want replicated, global, replicated-job or global-job", m)
			}
		}
		if api.GlobalMode(spec.Mode) {
			spec.Replicas = 0
		}
	}
	if set("replicas") {
		if api.GlobalMode(spec.Mode) {
			return UsageErrorf("--replicas cannot be used with a %s service", spec.Mode)
		}
		spec.Replicas = c.Uint64("replicas")
	}
	if err := applyJob(c, spec, update); err != nil {
		return err
	}
	if err := SetParsed(c, "autoscale", parseAutoscale, &spec.Autoscale); err != nil {
		return err
	}
	if !update && spec.Autoscale != nil && spec.Mode == api.ModeReplicated && !set("replicas") {
		spec.Replicas = spec.Autoscale.Min // start at the minimum
	}
	if err := applyResources(c, &spec.Resources); err != nil {
		return err
	}
	if err := ApplyHealth(c, &spec.Healthcheck); err != nil {
		return err
	}
	if err := applyRestart(c, &spec.RestartPolicy); err != nil {
		return err
	}
	if err := applyUpdateConfig(c, "update", &spec.UpdateConfig); err != nil {
		return err
	}
	if err := applyUpdateConfig(c, "rollback", &spec.RollbackConfig); err != nil {
		return err
	}
	if err := setZeroable(c, "stop-grace-period", &spec.StopGracePeriod); err != nil {
		return err
	}
	if err := setNonNegative(c, "disconnect-grace", c.Duration, &spec.DisconnectGrace); err != nil {
		return err
	}
	if set("at-most-once") {
		spec.AtMostOnce = c.Bool("at-most-once")
	}
	if set("no-rebalance") {
		spec.NoRebalance = c.Bool("no-rebalance")
	}
	if set("workdir") {
		spec.Workdir = c.String("workdir")
	}
	if set("user") {
		spec.User = c.String("user")
	}
	if err := SetParsed(c, "entrypoint", SplitWords, &spec.Entrypoint); err != nil {
		return err
	}
	if err := applyOptions(c, spec, update); err != nil {
		return err
	}
	if err := applyEndpointMode(c, spec); err != nil {
		return err
	}
	lists := applyCreateLists
	if update {
		lists = applyUpdateLists
	}
	if err := lists(c, spec); err != nil {
		return err
	}
	if err := applyPlacement(c, spec, update); err != nil {
		return err
	}
	if err := ApplyLogging(c, &spec.LogDriver, &spec.LogOptions, update); err != nil {
		return err
	}
	return ApplyRegistryAuth(c, spec) // after --image
}

// applyCreateLists sets the repeatable list flags of `service create`.
func applyCreateLists(c *cli.Context, spec *api.ServiceSpec) error {
	var err error
	if spec.Ports, err = appendPorts(spec.Ports, c.StringSlice("publish")); err != nil {
		return SpecError("publish", err)
	}
	if spec.Env, err = SetEnvs(spec.Env, c.StringSlice("env")); err != nil {
		return SpecError("env", err)
	}
	if spec.Labels, err = SetLabels(spec.Labels, c.StringSlice("label")); err != nil {
		return SpecError("label", err)
	}
	if spec.Constraints, err = addConstraints(spec.Constraints, c.StringSlice("constraint")); err != nil {
		return SpecError("constraint", err)
	}
	if spec.Secrets, err = addFileRefs(spec.Secrets, spec.Configs, c.StringSlice("secret"), true); err != nil {
		return SpecError("secret", err)
	}
	if spec.Configs, err = addFileRefs(spec.Configs, spec.Secrets, c.StringSlice("config"), false); err != nil {
		return SpecError("config", err)
	}
	if spec.Mounts, err = AddMounts(spec.Mounts, c.StringSlice("mount")); err != nil {
		return SpecError("mount", err)
	}
	return applyNetworks(c, spec, false)
}

// applyUpdateLists applies the -add/-rm flags and the other update-only
// flags of `service update`.
func applyUpdateLists(c *cli.Context, spec *api.ServiceSpec) error {
	if c.IsSet("image") {
		if c.String("image") == "" {
			return UsageErrorf("--image must not be empty")
		}
		spec.Image = c.String("image")
	}
	if err := SetParsed(c, "args", SplitWords, &spec.Command); err != nil {
		return err
	}
	var err error
	for _, k := range c.StringSlice("env-rm") {
		n := len(spec.Env)
		spec.Env = slices.DeleteFunc(spec.Env, func(e string) bool { return envKey(e) == envKey(k) })
		if len(spec.Env) == n {
			return notInSpec("env-rm", k, "environment variable", mapSlice(spec.Env, envKey))
		}
	}
	if spec.Env, err = SetEnvs(spec.Env, c.StringSlice("env-add")); err != nil {
		return SpecError("env-add", err)
	}
	for _, k := range c.StringSlice("label-rm") {
		if _, ok := spec.Labels[k]; !ok {
			return notInSpec("label-rm", k, "label", slices.Sorted(maps.Keys(spec.Labels)))
		}
		delete(spec.Labels, k)
	}
	if spec.Labels, err = SetLabels(spec.Labels, c.StringSlice("label-add")); err != nil {
		return SpecError("label-add", err)
	}
	for _, s := range c.StringSlice("constraint-rm") {
		con, err := ParseConstraint(s)
		if err != nil {
			return SpecError("constraint-rm", err)
		}
		if !slices.Contains(spec.Constraints, con) {
			return notInSpec("constraint-rm", s, "constraint", spec.Constraints)
		}
		spec.Constraints = slices.DeleteFunc(spec.Constraints, func(x string) bool { return x == con })
	}
	if spec.Constraints, err = addConstraints(spec.Constraints, c.StringSlice("constraint-add")); err != nil {
		return SpecError("constraint-add", err)
	}
	for _, p := range c.StringSlice("publish-rm") {
		pc, err := parsePublish(p)
		if err != nil {
			return SpecError("publish-rm", err)
		}
		n := len(spec.Ports)
		spec.Ports = slices.DeleteFunc(spec.Ports, func(x api.PortConfig) bool {
			return x.Target == pc.Target && protoOf(x) == pc.Protocol && (pc.Published == 0 || pc.Published == x.Published)
		})
		if len(spec.Ports) == n {
			return notInSpec("publish-rm", p, "published port", mapSlice(spec.Ports, func(x api.PortConfig) string {
				return fmt.Sprintf("%d:%d/%s", x.Published, x.Target, protoOf(x))
			}))
		}
	}
	for _, p := range c.StringSlice("publish-add") {
		pc, err := parsePublish(p)
		if err != nil {
			return SpecError("publish-add", err)
		}
		spec.Ports = slices.DeleteFunc(spec.Ports, func(x api.PortConfig) bool {
			if pc.Published != 0 {
				return x.Published == pc.Published && protoOf(x) == pc.Protocol
			}
			return x.Target == pc.Target && protoOf(x) == pc.Protocol
		})
		spec.Ports = append(spec.Ports, pc)
	}
	// Removals first, so that --secret-rm or --config-rm frees a target
	// that an --secret-add or --config-add of the same update takes.
	if spec.Secrets, err = removeFileRefs(spec.Secrets, c.StringSlice("secret-rm"), "secret"); err != nil {
		return err
	}
	if spec.Configs, err = removeFileRefs(spec.Configs, c.StringSlice("config-rm"), "config"); err != nil {
		return err
	}
	if spec.Secrets, err = addFileRefs(spec.Secrets, spec.Configs, c.StringSlice("secret-add"), true); err != nil {
		return SpecError("secret-add", err)
	}
	if spec.Configs, err = addFileRefs(spec.Configs, spec.Secrets, c.StringSlice("config-add"), false); err != nil {
		return SpecError("config-add", err)
	}
	for _, t := range c.StringSlice("mount-rm") {
		target := path.Clean(t)
		if !path.IsAbs(target) {
			return SpecError("mount-rm", fmt.Errorf("%q: want the absolute target path of a mount", t))
		}
		n := len(spec.Mounts)
		spec.Mounts = slices.DeleteFunc(slices.Clone(spec.Mounts), func(m api.Mount) bool { return m.Target == target })
		if len(spec.Mounts) == n {
			return notInSpec("mount-rm", t, "mount at that target", mapSlice(spec.Mounts, func(m api.Mount) string { return m.Target }))
		}
	}
	if spec.Mounts, err = AddMounts(spec.Mounts, c.StringSlice("mount-add")); err != nil {
		return SpecError("mount-add", err)
	}
	if err := applyNetworks(c, spec, true); err != nil {
		return err
	}
	if c.Bool("force") {
		spec.ForceUpdate++
	}
	return nil
}

// notInSpec refuses a --*-rm of something the service does not have: a
// typo'd name was silently ignored (docker ignores it too), and the update
// went through, rolling the tasks for nothing when other flags changed
// them. --network-rm already refused the same way.
func notInSpec(flag, v, what string, have []string) error {
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return UsageErrorf("invalid --%s %q: the service has no such %s (it has: %s)", flag, v, what, list)
}

// mapSlice maps a slice.
func mapSlice[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// MountFlag is the --mount flag of `service create` and `run`.
func MountFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "mount", Usage: "type=volume|bind|tmpfs,source=S,target=T[,readonly][,volume-nocopy][,tmpfs-size=64M] (repeatable; an empty volume gets the image's content at T unless volume-nocopy)"}
}

// AddMounts adds mounts given in the --mount syntax; one on a target
// already mounted replaces it (as docker's --mount-add does).
func AddMounts(ms []api.Mount, values []string) ([]api.Mount, error) {
	for _, v := range values {
		m, err := parseMount(v)
		if err != nil {
			return ms, err
		}
		ms = slices.DeleteFunc(slices.Clone(ms), func(x api.Mount) bool { return x.Target == m.Target })
		ms = append(ms, m)
	}
	return ms, nil
}

// parseMount parses docker's --mount syntax: comma-separated key=value
// pairs type (default volume), source|src, target|destination|dst,
// readonly|ro and volume-nocopy (bare or =true|false|1|0), tmpfs-size (64M) and tmpfs-mode
// (octal). Absolute paths are cleaned ("/data/" is "/data"); the result is
// checked with api.MountProblem.
func parseMount(s string) (api.Mount, error) {
	m := api.Mount{Type: api.MountVolume}
	if strings.TrimSpace(s) == "" {
		return m, fmt.Errorf("empty mount: want type=volume|bind|tmpfs,source=S,target=T")
	}
	seen := map[string]bool{}
	for _, field := range strings.Split(s, ",") {
		k, v, hasVal := strings.Cut(strings.TrimSpace(field), "=")
		k = strings.ToLower(k)
		canon := map[string]string{"src": "source", "destination": "target", "dst": "target", "ro": "readonly"}[k]
		if canon == "" {
			canon = k
		}
		if seen[canon] {
			return m, fmt.Errorf("%q: %s given twice", s, canon)
		}
		seen[canon] = true
		if !hasVal && canon != "readonly" && canon != "volume-nocopy" {
			return m, fmt.Errorf("%q: %q needs a value (key=value)", s, field)
		}
		switch canon {
		case "type":
			// docker lowercases the type: type=Volume, type=BIND work there.
			m.Type = strings.ToLower(v)
		case "source":
			m.Source = v
		case "target":
			m.Target = v
		case "readonly":
			switch strings.ToLower(v) {
			case "", "1", "true":
				m.ReadOnly = true
			case "0", "false":
				m.ReadOnly = false
			default:
				return m, fmt.Errorf("%q: readonly=%q: want true or false", s, v)
			}
		case "volume-nocopy":
			switch strings.ToLower(v) {
			case "", "1", "true":
				m.NoCopy = true
			case "0", "false":
				m.NoCopy = false
			default:
				return m, fmt.Errorf("%q: volume-nocopy=%q: want true or false", s, v)
			}
		case "tmpfs-size":
			n, err := ParseSize(v)
			if err != nil {
				return m, fmt.Errorf("%q: tmpfs-size: %w", s, err)
			}
			m.TmpfsSize = n
		case "tmpfs-mode":
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return m, fmt.Errorf("%q: tmpfs-mode %q: want an octal mode such as 1777", s, v)
			}
			m.TmpfsMode = uint32(n)
		default:
			return m, fmt.Errorf("%q: unknown key %q (want type, source, target, readonly, volume-nocopy, tmpfs-size, tmpfs-mode)", s, k)
		}
	}
	for _, p := range []*string{&m.Source, &m.Target} {
		if path.IsAbs(*p) {
			*p = path.Clean(*p)
		}
	}
	if p := api.MountProblem(m); p != "" {
		return m, fmt.Errorf("%q: %s", s, p)
	}
	return m, nil
}

// applyNetworks reads --network (create) or --network-add/--network-rm
// (update). Leaving every network puts the service back on the default one.
func applyNetworks(c *cli.Context, spec *api.ServiceSpec, update bool) error {
	if !update {
		for _, v := range c.StringSlice("network") {
			n, aliases, err := parseNetwork(v)
			if err != nil {
				return SpecError("network", err)
			}
			if slices.Contains(spec.Networks, n) {
				return UsageErrorf("invalid --network %q: network %s given twice", v, n)
			}
			spec.Networks = append(spec.Networks, n)
			setAliases(spec, n, aliases)
		}
		return nil
	}
	rm, add := c.StringSlice("network-rm"), c.StringSlice("network-add")
	if len(rm) == 0 && len(add) == 0 {
		return nil
	}
	nets := slices.Clone(api.SpecNetworks(*spec))
	for _, n := range rm {
		if !slices.Contains(nets, n) {
			return UsageErrorf("invalid --network-rm %q: the service is not on that network (it is on %s)", n, strings.Join(nets, ", "))
		}
		nets = slices.DeleteFunc(nets, func(x string) bool { return x == n })
		setAliases(spec, n, nil)
	}
	for _, v := range add {
		n, aliases, err := parseNetwork(v)
		if err != nil {
			return SpecError("network-add", err)
		}
		if !slices.Contains(nets, n) {
			nets = append(nets, n)
		}
		if strings.Contains(v, "=") { // the long form says all of the network's aliases
			setAliases(spec, n, aliases)
		}
	}
	if slices.Contains(rm, api.DefaultNetwork) && (len(nets) == 0 || slices.Equal(nets, []string{api.DefaultNetwork})) {
		// A service on no network is on the default one: this update
		// would change nothing, yet it was sent and reported done.
		return UsageErrorf("invalid --network-rm %s: a service on no other network stays on the default network (--network-add another one)", api.DefaultNetwork)
	}
	if len(nets) == 1 && nets[0] == api.DefaultNetwork {
		nets = nil
	}
	spec.Networks = nets
	return nil
}

// SetParsed parses the value of flag into dst when the user set it; a bad
// value is a usage error naming the flag.
func SetParsed[T any](c *cli.Context, flag string, parse func(string) (T, error), dst *T) error {
	if !c.IsSet(flag) {
		return nil
	}
	v, err := parse(c.String(flag))
	if err != nil {
		return SpecError(flag, err)
	}
	*dst = v
	return nil
}

// setNonNegative copies a number flag the user set (read with get, e.g.
// c.Int or c.Duration) into dst; a negative value is a usage error.
func setNonNegative[T int | time.Duration](c *cli.Context, flag string, get func(string) T, dst *T) error {
	if !c.IsSet(flag) {
		return nil
	}
	v := get(flag)
	if v < 0 {
		return UsageErrorf("--%s must not be negative", flag)
	}
	*dst = v
	return nil
}

// setZeroable is setNonNegative for a duration whose 0 on the wire is its
// default: a 0 given to flag is stored as api.ExplicitZero (which says why).
func setZeroable(c *cli.Context, flag string, dst *time.Duration) error {
	if err := setNonNegative(c, flag, c.Duration, dst); err != nil {
		return err
	}
	if c.IsSet(flag) && *dst == 0 {
		*dst = api.ExplicitZero
	}
	return nil
}

// FirstError returns the first non-nil error, in argument order.
func FirstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// SetEnvs applies K=V values (a bare K takes the caller's variable, or
// is skipped when unset) to env.
func SetEnvs(env, values []string) ([]string, error) {
	for _, e := range values {
		v, ok, err := parseEnv(e)
		if err != nil {
			return env, err
		}
		if ok {
			env = setEnv(env, v)
		}
	}
	return env, nil
}

// SetLabels adds k=v values to labels, making the map on the first one.
func SetLabels(labels map[string]string, values []string) (map[string]string, error) {
	for _, l := range values {
		k, v, err := parseLabel(l)
		if err != nil {
			return labels, err
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[k] = v
	}
	return labels, nil
}

// addConstraints appends the constraints not already in cons.
func addConstraints(cons, values []string) ([]string, error) {
	for _, s := range values {
		con, err := ParseConstraint(s)
		if err != nil {
			return cons, err
		}
		if !slices.Contains(cons, con) {
			cons = append(cons, con)
		}
	}
	return cons, nil
}

// appendPorts appends published ports given in the --publish syntax.
func appendPorts[S ~string](ports []api.PortConfig, values []S) ([]api.PortConfig, error) {
	for _, p := range values {
		pc, err := parsePublish(string(p))
		if err != nil {
			return ports, err
		}
		ports = append(ports, pc)
	}
	return ports, nil
}

// protoOf returns a port's protocol, tcp when unset.
func protoOf(p api.PortConfig) string {
	if p.Protocol == "" {
		return "tcp"
	}
	return p.Protocol
}

// setEnv replaces or appends "K=V" in env.
func setEnv(env []string, kv string) []string {
	k := envKey(kv)
	for i, e := range env {
		if envKey(e) == k {
			out := slices.Clone(env)
			out[i] = kv
			return out
		}
	}
	return append(env, kv)
}

// applyResources sets limits and reservations.
func applyResources(c *cli.Context, r *api.ResourceRequirements) error {
	return FirstError(
		SetParsed(c, "limit-memory", ParseSize, &r.Limits.MemoryBytes),
		SetParsed(c, "reserve-memory", ParseSize, &r.Reservations.MemoryBytes),
		SetParsed(c, "limit-cpu", ParseCPUs, &r.Limits.NanoCPUs),
		SetParsed(c, "reserve-cpu", ParseCPUs, &r.Reservations.NanoCPUs),
		SetParsed(c, "limit-pids", ParsePids, &r.Limits.Pids),
	)
}

// ParsePids parses a process count limit (0 = unlimited).
func ParsePids(s string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid process count %q", s)
	}
	return n, nil
}

// ApplyHealth sets the health check from the --health-* flags.
func ApplyHealth(c *cli.Context, hc **api.HealthConfig) error {
	names := []string{"health-cmd", "no-healthcheck", "health-interval", "health-timeout", "health-start-period", "health-retries"}
	if !slices.ContainsFunc(names, c.IsSet) {
		return nil
	}
	h := &api.HealthConfig{}
	if *hc != nil {
		cp := **hc
		h = &cp
	}
	if c.IsSet("health-cmd") && c.Bool("no-healthcheck") {
		return UsageErrorf("--health-cmd and --no-healthcheck are mutually exclusive")
	}
	if c.IsSet("health-cmd") {
		if strings.TrimSpace(c.String("health-cmd")) == "" {
			h.Test = nil
		} else {
			h.Test = []string{"CMD-SHELL", c.String("health-cmd")}
		}
	}
	if c.Bool("no-healthcheck") {
		h.Test = []string{"NONE"}
	}
	if err := FirstError(
		setNonNegative(c, "health-interval", c.Duration, &h.Interval),
		setNonNegative(c, "health-timeout", c.Duration, &h.Timeout),
		setNonNegative(c, "health-start-period", c.Duration, &h.StartPeriod),
		setNonNegative(c, "health-retries", c.Int, &h.Retries),
	); err != nil {
		return err
	}
	*hc = h
	return nil
}

// applyRestart sets the restart policy.
func applyRestart(c *cli.Context, rp *api.RestartPolicy) error {
	if c.IsSet("restart-condition") {
		switch v := c.String("restart-condition"); v {
		case api.RestartAny, api.RestartOnFailure, api.RestartNone:
			rp.Condition = v
		default:
			return UsageErrorf("invalid --restart-condition %q: want any, on-failure or none", v)
		}
	}
	return FirstError(
		setZeroable(c, "restart-delay", &rp.Delay),
		setNonNegative(c, "restart-window", c.Duration, &rp.Window),
		setNonNegative(c, "restart-max-attempts", c.Int, &rp.MaxAttempts),
	)
}

// applyUpdateConfig sets the --update-* or --rollback-* flags.
func applyUpdateConfig(c *cli.Context, prefix string, u *api.UpdateConfig) error {
	f := func(n string) string { return prefix + "-" + n }
	if err := FirstError(
		setNonNegative(c, f("parallelism"), c.Int, &u.Parallelism),
		setNonNegative(c, f("delay"), c.Duration, &u.Delay),
		setZeroable(c, f("monitor"), &u.Monitor),
	); err != nil {
		return err
	}
	if c.IsSet(f("order")) {
		switch v := c.String(f("order")); v {
		case api.OrderStopFirst, api.OrderStartFirst:
			u.Order = v
		default:
			return UsageErrorf("invalid --%s %q: want stop-first or start-first", f("order"), v)
		}
	}
	if c.IsSet(f("failure-action")) {
		v := c.String(f("failure-action"))
		ok := v == api.FailurePause || v == api.FailureContinue || (prefix == "update" && v == api.FailureRollback)
		if !ok {
			want := "pause or continue"
			if prefix == "update" {
				want = "pause, continue or rollback"
			}
			return UsageErrorf("invalid --%s %q: want %s", f("failure-action"), v, want)
		}
		u.FailureAction = v
	}
	if c.IsSet(f("max-failure-ratio")) {
		r := c.Float64(f("max-failure-ratio"))
		if r < 0 || r > 1 {
			return UsageErrorf("--%s must be between 0 and 1", f("max-failure-ratio"))
		}
		u.MaxFailureRatio = r
	}
	return nil
}

// parseAutoscale parses --autoscale: `min=N,max=M,cpu=P%[,memory=P%]
// [,up-delay=D][,down-delay=D]`, or `off` (nil: autoscaling disabled). The
// leader checks the ranges again (servicespec.Validate).
func parseAutoscale(s string) (*api.AutoscaleConfig, error) {
	if strings.TrimSpace(s) == "off" {
		return nil, nil
	}
	var a api.AutoscaleConfig
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("%q: want key=value (min, max, cpu, memory, up-delay, down-delay) or off", part)
		}
		if seen[k] {
			return nil, fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
		var err error
		switch k {
		case "min", "max":
			var n uint64
			if n, err = strconv.ParseUint(v, 10, 64); err != nil {
				return nil, fmt.Errorf("%s=%s: want a whole number", k, v)
			}
			if k == "min" {
				a.Min = n
			} else {
				a.Max = n
			}
		case "cpu", "memory":
			var f float64
			f, err = strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
			if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, fmt.Errorf("%s=%s: want a percentage above 0, like 70%%", k, v)
			}
			if k == "cpu" {
				a.CPUPercent = f
			} else {
				a.MemoryPercent = f
			}
		case "up-delay", "down-delay":
			var d time.Duration
			if d, err = time.ParseDuration(v); err != nil || d < 0 {
				return nil, fmt.Errorf("%s=%s: want a non-negative duration like 30s", k, v)
			}
			if k == "up-delay" {
				a.ScaleUpDelay = d
			} else {
				a.ScaleDownDelay = d
			}
		default:
			return nil, fmt.Errorf("unknown key %q: want min, max, cpu, memory, up-delay or down-delay", k)
		}
	}
	switch {
	case !seen["min"] || !seen["max"]:
		return nil, fmt.Errorf("%q: min and max are required", s)
	case a.Min < 1:
		return nil, fmt.Errorf("min=%d: must be at least 1", a.Min)
	case a.Max < a.Min:
		return nil, fmt.Errorf("max=%d: must be at least min (%d)", a.Max, a.Min)
	case !seen["cpu"] && !seen["memory"]:
		return nil, fmt.Errorf("%q: needs a cpu or memory target", s)
	}
	return &a, nil
}
