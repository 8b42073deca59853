package compose

// Compose files → service specs. Loading (interpolation, .env, env_file,
// extends, merging several files, profiles) is compose-go's, so a file means
// here what it means to Docker; StackSpecs, the mapping onto api.ServiceSpec,
// is a pure function of the loaded project.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/tree"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// ErrBadCompose wraps every problem found in a compose file.
var ErrBadCompose = errors.New("invalid compose file")

// Input is what Load reads.
type Input struct {
	// Files are the -c files in order (later ones override earlier ones);
	// Filename is absolute ("-" for stdin) and Content holds the bytes.
	Files []types.ConfigFile
	// WorkingDir is the project directory: .env, env_file, extends files
	// and relative paths are looked up there (the first file's directory).
	WorkingDir string
	// Env is the caller's environment; it wins over .env, as in compose.
	Env map[string]string
	// Profiles to enable; empty means COMPOSE_PROFILES of the environment.
	Profiles []string
	// Name is the stack name from the command line; empty takes the
	// file's name: key.
	Name string
}

// supportedAttributes are the compose keys StackSpecs turns into a spec, or
// that compose-go consumes while loading (env_file, extends, profiles).
// Everything else in a file is reported, by key path, as ignored. A path
// names one node only: maps whose keys are the user's (environment, labels)
// need their ".*" too.
var supportedAttributes = []tree.Path{
	"name",
	"services.*.image",
	"services.*.command",
	"services.*.entrypoint",
	"services.*.environment.*",
	"services.*.env_file.[].path",
	"services.*.env_file.[].required",
	"services.*.env_file.[].format",
	"services.*.extends.service",
	"services.*.extends.file",
	"services.*.profiles",
	"services.*.ports.[].target",
	"services.*.ports.[].published",
	"services.*.ports.[].protocol",
	"services.*.ports.[].mode",
	"services.*.ports.[].host_ip", // refused unless all addresses (serviceSpec)
	"services.*.working_dir",
	"services.*.user",
	"services.*.labels.*",
	"services.*.stop_grace_period",
	// Container options (options.go).
	"services.*.read_only",
	"services.*.stop_signal",
	"services.*.hostname",
	"services.*.extra_hosts",
	"services.*.extra_hosts.*",
	// Every Shoal container runs shoal-init as PID 1 (runtime/init), which
	// is what init: true asks for (Docker's --init, tini): taken silently.
	// init: false cannot be honoured and is reported (unsupportedValues).
	"services.*.init",
	"services.*.cap_add",
	"services.*.cap_drop",
	"services.*.sysctls.*",
	"services.*.ulimits.*",
	"services.*.ulimits.*.soft",
	"services.*.ulimits.*.hard",
	// The compose specification's service-level forms of deploy's
	// (compose-go refuses distinct values in both places).
	"services.*.scale",
	"services.*.cpus",
	"services.*.mem_limit",
	"services.*.mem_reservation",
	"services.*.pids_limit",
	"services.*.healthcheck.test",
	"services.*.healthcheck.interval",
	"services.*.healthcheck.timeout",
	"services.*.healthcheck.start_period",
	"services.*.healthcheck.retries",
	"services.*.healthcheck.disable",
	"services.*.deploy.mode",
	"services.*.deploy.replicas",
	"services.*.deploy.labels.*",
	"services.*.deploy.endpoint_mode", // vip or dnsrr (ServiceSpec.EndpointMode)
	"services.*.deploy.resources.limits.cpus",
	"services.*.deploy.resources.limits.memory",
	"services.*.deploy.resources.limits.pids",
	"services.*.deploy.resources.reservations.cpus",
	"services.*.deploy.resources.reservations.memory",
	"services.*.deploy.placement.constraints",
	"services.*.deploy.placement.max_replicas_per_node",
	"services.*.deploy.placement.preferences.[].spread",
	// restart: is the policy where deploy.restart_policy gives none, as
	// docker stack deploy falls back to it (legacyRestart).
	"services.*.restart",
	"services.*.deploy.restart_policy.condition",
	"services.*.deploy.restart_policy.delay",
	"services.*.deploy.restart_policy.max_attempts",
	"services.*.deploy.restart_policy.window",
	"services.*.deploy.update_config.parallelism",
	"services.*.deploy.update_config.delay",
	"services.*.deploy.update_config.failure_action",
	"services.*.deploy.update_config.monitor",
	"services.*.deploy.update_config.max_failure_ratio",
	"services.*.deploy.update_config.order",
	"services.*.deploy.rollback_config.parallelism",
	"services.*.deploy.rollback_config.delay",
	"services.*.deploy.rollback_config.failure_action",
	"services.*.deploy.rollback_config.monitor",
	"services.*.deploy.rollback_config.max_failure_ratio",
	"services.*.deploy.rollback_config.order",
	// Secrets and configs (secrets.go).
	"services.*.secrets.[].source",
	"services.*.secrets.[].target",
	"services.*.secrets.[].uid",
	"services.*.secrets.[].gid",
	"services.*.secrets.[].mode",
	"services.*.configs.[].source",
	"services.*.configs.[].target",
	"services.*.configs.[].uid",
	"services.*.configs.[].gid",
	"services.*.configs.[].mode",
	"secrets.*.file",
	"secrets.*.environment",
	"secrets.*.name",
	"secrets.*.external",
	"secrets.*.labels.*",
	"configs.*.file",
	"configs.*.environment",
	"configs.*.content",
	"configs.*.name",
	"configs.*.external",
	"configs.*.labels.*",
	// Mounts (serviceMounts) and the stack's named volumes.
	"services.*.volumes.[].type",
	"services.*.volumes.[].source",
	"services.*.volumes.[].target",
	"services.*.volumes.[].read_only",
	"services.*.volumes.[].bind.create_host_path",
	"services.*.volumes.[].volume.nocopy",
	"services.*.volumes.[].tmpfs.size",
	"services.*.volumes.[].tmpfs.mode",
	"services.*.tmpfs",
	"volumes.*.name",
	"volumes.*.external",
	"volumes.*.driver",      // local only (stackVolumes)
	"volumes.*.driver_opts", // refused (stackVolumes)
	"volumes.*.driver_opts.*",
	"services.*.networks.*",
	"networks.*",
	"networks.*.name",
	"networks.*.driver",
	"networks.*.external",
	"networks.*.internal",
	"networks.*.attachable",
	"networks.*.driver_opts",
	"networks.*.driver_opts.encrypted", // --encrypted (StackNetworks)
	"networks.*.labels.*",
	"networks.*.ipam.config.[].subnet",
	"services.*.networks.*.aliases", // ServiceSpec.NetworkAliases (serviceAliases)
	// Logging (options.go): json-file, local or none, max-size and
	// max-file; anything else is refused, not ignored.
	"services.*.logging.driver",
	"services.*.logging.options.*",
}

// unsupportedValues flag supported keys whose value Shoal cannot honour:
// every container has shoal-init as PID 1 (init: false is reported).
var unsupportedValues = []loader.UnsupportedAttributePattern{{
	Path:   "services.*.init",
	Detect: func(v any) bool { return v != true },
}}

// refusedValue is a value Load refuses: one that would not be an error to
// compose-go but would silently run something other than the file says.
type refusedValue struct {
	path tree.Path
	why  func(v any) string // "" when v is fine
}

// refusedValues are checked on the loaded model, after interpolation and
// merging, before compose-go decodes it.
var refusedValues = []refusedValue{
	{"services.*.command", shellStringProblem},
	{"services.*.entrypoint", shellStringProblem},
}

// shellStringProblem refuses a command given as a string with a shell
// operator outside quotes: compose-go splits the string into words and
// stops at the operator, so `a && b` would run a alone, silently.
func shellStringProblem(v any) string {
	s, ok := v.(string)
	if !ok {
		return ""
	}
	if op := shellOperator(s); op != "" {
		return fmt.Sprintf("%q: no shell runs this string, and it is cut at %q (what follows would be dropped): write it as a list, e.g. [\"sh\", \"-c\", \"...\"]", s, op)
	}
	return ""
}

// shellOperator returns the first of ; & | < > (with the character after
// it when it doubles, as in &&) outside quotes and escapes, where
// go-shellwords, compose-go's splitter, stops; "" if there is none.
func shellOperator(s string) string {
	var escaped, single, double, back, dollar bool
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\' && !single:
			escaped = true
		case c == '\'' && !double && !dollar:
			single = !single
		case c == '"' && !single && !dollar:
			double = !double
		case single || double:
		case c == '`' && !dollar:
			back = !back
		case c == '(' && !back && i > 0 && s[i-1] == '$':
			dollar = true
		case c == ')' && !back && dollar:
			dollar = false
		case back || dollar:
		case strings.IndexByte(";&|<>", c) >= 0:
			if i+1 < len(s) && s[i+1] == c {
				return s[i : i+2]
			}
			return s[i : i+1]
		}
	}
	return ""
}

// Load loads and merges the compose files of in and returns the
// project and the key paths it ignores (sorted, each once, e.g.
// "services.db.volumes"). It reads .env, env_file and extends files from
// in.WorkingDir; the compose files themselves are already in in.Files.
func Load(ctx context.Context, in Input) (*types.Project, []string, error) {
	env := types.Mapping{}
	maps.Copy(env, in.Env)
	dotEnv := filepath.Join(in.WorkingDir, ".env")
	if st, err := os.Stat(dotEnv); err == nil && !st.IsDir() {
		data, err := readBounded(dotEnv)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrBadCompose, dotEnv, err)
		}
		vars, err := dotenv.ParseWithLookup(bytes.NewReader(data), func(k string) (string, bool) {
			v, ok := env[k]
			return v, ok
		})
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrBadCompose, dotEnv, err)
		}
		env.Merge(vars) // the caller's environment wins
	}
	profiles := in.Profiles
	if len(profiles) == 0 && env["COMPOSE_PROFILES"] != "" {
		for _, p := range strings.Split(env["COMPOSE_PROFILES"], ",") {
			if p = strings.TrimSpace(p); p != "" {
				profiles = append(profiles, p)
			}
		}
	}
	var ignored []string
	var refused []error
	patterns := slices.Clone(unsupportedValues)
	for _, r := range refusedValues {
		patterns = append(patterns, loader.UnsupportedAttributePattern{Path: r.path, Detect: func(v any) bool { return r.why(v) != "" }})
	}
	report := func(found []loader.UnsupportedAttribute) {
	next:
		for _, f := range found {
			for _, r := range refusedValues {
				if f.Path.Matches(r.path) {
					if why := r.why(f.Value); why != "" {
						refused = append(refused, &keyError{Path: f.Path.String(), Err: errors.New(why)})
						continue next
					}
				}
			}
			k := strings.ReplaceAll(f.Path.String(), ".[]", "[]")
			if !slices.Contains(ignored, k) {
				ignored = append(ignored, k)
			}
		}
	}
	opts := []func(*loader.Options){
		loader.WithProfiles(profiles),
		loader.WithUnsupportedAttributesCheck(patterns, report),
		loader.WithSupportedAttributes(supportedAttributes, nil),
		func(o *loader.Options) {
			if in.Name != "" {
				o.SetProjectName(in.Name, true)
			}
			// files.go reads env files, bounded; label_file is ignored.
			o.SkipResolveEnvironment, o.SkipResolveLabels = true, true
		},
	}
	details := types.ConfigDetails{WorkingDir: in.WorkingDir, ConfigFiles: in.Files, Environment: env}
	if err := precheckFiles(ctx, details); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadCompose, err)
	}
	p, err := loadProject(ctx, details, opts)
	if err == nil && len(refused) > 0 {
		err = errors.Join(refused...)
		return nil, nil, fmt.Errorf("%w: %w", ErrBadCompose, err)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadCompose, err)
	}
	if err := resolveEnvFiles(p); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadCompose, err)
	}
	sort.Strings(ignored)
	return p, ignored, nil
}

// loadProject is loader.LoadWithContext with the services' container_name
// dropped between reading the model and binding it to a project: Swarm
// ignores the key (docker stack deploy reports it and deploys, as Load
// reports it here), but compose-go's consistency check refuses it beside
// more than one replica ("can't set container_name and deploy.replicas as
// container name must be unique"), so a file written for docker compose
// failed to deploy with replicas.
func loadProject(ctx context.Context, details types.ConfigDetails, opts []func(*loader.Options)) (*types.Project, error) {
	dict, err := loader.LoadModelWithContext(ctx, details, opts...)
	if err != nil {
		return nil, err
	}
	if svcs, ok := dict["services"].(map[string]any); ok {
		for _, sv := range svcs {
			if m, ok := sv.(map[string]any); ok {
				delete(m, "container_name")
			}
		}
	}
	o := loader.ToOptions(&details, opts)
	if name, ok := dict["name"].(string); ok && name != "" {
		_, explicit := o.GetProjectName()
		o.SetProjectName(name, explicit)
	}
	return loader.ModelToProject(dict, o, details)
}

// keyError is a problem with one key of a compose file. Path is dotted with
// list indexes, as in services.web.ports[1].published.
type keyError struct {
	Path string
	Err  error
}

func (e *keyError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *keyError) Unwrap() error { return e.Err }

// StackSpecs turns the services of a loaded project into the service specs
// of stack, sorted by name. It checks every service and returns all the
// problems it finds (each a *keyError, joined), so nothing is created from
// a file that is only partly right.
func StackSpecs(stack string, p *types.Project) ([]api.ServiceSpec, error) {
	if len(p.Services) == 0 {
		return nil, fmt.Errorf("%w: no services (are they all in profiles not enabled?)", ErrBadCompose)
	}
	var specs []api.ServiceSpec
	objs, errs := StackObjects(stack, p)
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		spec, serr := serviceSpec(stack, p.Services[name])
		errs = append(errs, serr...)
		errs = append(errs, serviceFileRefs(objs, p.Services[name], &spec)...)
		var merr []error
		spec.Mounts, merr = serviceMounts(stack, p.Services[name], p.Volumes)
		errs = append(errs, merr...)
		spec.Networks = serviceNetworks(stack, p, p.Services[name])
		var aerr []error
		spec.NetworkAliases, aerr = serviceAliases(stack, p, p.Services[name])
		errs = append(errs, aerr...)
		specs = append(specs, spec)
	}
	errs = append(errs, aliasClashes(stack, p, specs)...)
	if _, err := StackNetworks(stack, p); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, stackVolumes(p)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrBadCompose, errors.Join(errs...))
	}
	return specs, nil
}

// serviceSpec converts one compose service, starting from Docker's defaults
// as `service create` does.
func serviceSpec(stack string, cs types.ServiceConfig) (api.ServiceSpec, []error) {
	var errs []error
	base := "services." + cs.Name
	bad := func(key string, format string, args ...any) {
		errs = append(errs, &keyError{Path: base + key, Err: fmt.Errorf(format, args...)})
	}
	dur := func(key string, d *types.Duration, dst *time.Duration) {
		switch {
		case d == nil:
		case *d < 0:
			bad(key, "%s: must not be negative", time.Duration(*d))
		default:
			*dst = time.Duration(*d)
		}
	}
	// zeroDur is dur for a field whose 0 on the wire means its default
	// (api.ExplicitZero): a 0 the file writes out is kept as a zero.
	zeroDur := func(key string, d *types.Duration, dst *time.Duration) {
		dur(key, d, dst)
		if d != nil && *d == 0 {
			*dst = api.ExplicitZero
		}
	}

	spec := specflags.DefaultSpec()
	spec.Name = stack + "_" + cs.Name
	spec.Image = cs.Image
	if spec.Image == "" {
		if cs.Build != nil {
			bad(".build", "building images is not supported: build it, `shoal image load` it and name it in image:")
		} else {
			bad(".image", "missing: every service needs an image")
		}
	}
	spec.Command = nilIfEmpty(cs.Command)
	spec.Entrypoint = nilIfEmpty(cs.Entrypoint)
	spec.Workdir, spec.User = cs.WorkingDir, cs.User
	for _, k := range slices.Sorted(maps.Keys(cs.Environment)) {
		// A variable listed without a value and absent from the
		// environment is left out, as docker does.
		if v := cs.Environment[k]; v != nil {
			spec.Env = append(spec.Env, k+"="+*v)
		}
	}
	// Shoal has one set of labels per service: the container's (labels:)
	// and the service's (deploy.labels:) both land there, deploy's winning.
	spec.Labels = map[string]string{}
	maps.Copy(spec.Labels, cs.Labels)
	zeroDur(".stop_grace_period", cs.StopGracePeriod, &spec.StopGracePeriod)
	containerOptions(&spec, cs, bad)

	for i, p := range cs.Ports {
		key := fmt.Sprintf(".ports[%d]", i)
		pc := api.PortConfig{Target: int(p.Target), Protocol: p.Protocol}
		if pc.Protocol == "" {
			pc.Protocol = "tcp"
		}
		if pc.Protocol != "tcp" && pc.Protocol != "udp" {
			bad(key+".protocol", "%q: want tcp or udp", p.Protocol)
		}
		if pc.Target < 1 || pc.Target > 65535 {
			bad(key+".target", "%d: want a port 1-65535", p.Target)
		}
		switch n, err := strconv.Atoi(p.Published); {
		case p.Published == "":
			// "6379" or a long form without published: the cluster
			// picks a free port of 30000-32767, as Swarm does, and a
			// redeploy of the file keeps it (stack's planStack, the
			// leader's api.KeepPublished).
		case err != nil:
			bad(key+".published", "%q: want a port 1-65535 (ranges are not supported)", p.Published)
		case n < 1 || n > 65535:
			bad(key+".published", "%d: want a port 1-65535", n)
		default:
			pc.Published = n
		}
		// A port bound to one address ("127.0.0.1:8080:80", often meant
		// to keep it private) would be published on every address of
		// every node: refused rather than exposed.
		switch p.HostIP {
		case "", "0.0.0.0", "::":
		default:
			bad(key, "host_ip %s: Shoal publishes a port on every address of the node (no per-address binding); drop the address to publish it, or the port to keep it inside the stack's networks", p.HostIP)
		}
		// Ingress is stored as "", as `service create -p` does, so a
		// redeploy of an unchanged file compares equal.
		switch p.Mode {
		case "", api.PublishIngress:
		case api.PublishHost:
			pc.Mode = api.PublishHost
		default:
			bad(key+".mode", "%q: want ingress or host", p.Mode)
		}
		spec.Ports = append(spec.Ports, pc)
	}

	if h := cs.HealthCheck; h != nil {
		hc := &api.HealthConfig{}
		switch {
		case h.Disable:
			hc.Test = []string{"NONE"}
		case len(h.Test) > 0:
			hc.Test = slices.Clone([]string(h.Test))
			switch hc.Test[0] {
			case "CMD", "CMD-SHELL":
				if len(hc.Test) < 2 {
					bad(".healthcheck.test", "%s needs a command", hc.Test[0])
				}
			case "NONE":
			default:
				bad(".healthcheck.test", "%q: want CMD, CMD-SHELL or NONE first", hc.Test[0])
			}
		}
		if h.Retries != nil {
			hc.Retries = int(*h.Retries)
		}
		dur(".healthcheck.interval", h.Interval, &hc.Interval)
		dur(".healthcheck.timeout", h.Timeout, &hc.Timeout)
		dur(".healthcheck.start_period", h.StartPeriod, &hc.StartPeriod)
		spec.Healthcheck = hc
	}

	if d := cs.Deploy; d != nil {
		switch d.Mode {
		case "", api.ModeReplicated, api.ModeReplicatedJob:
			// A replicated job's replicas are its completions, all
			// at once (docker stack deploy sets max concurrent to
			// them too: MaxConcurrent 0 means that).
			if d.Mode != "" {
				spec.Mode = d.Mode
			}
			if d.Replicas != nil {
				if *d.Replicas < 0 {
					bad(".deploy.replicas", "%d: must not be negative", *d.Replicas)
				} else {
					spec.Replicas = uint64(*d.Replicas)
				}
			}
		case api.ModeGlobal, api.ModeGlobalJob:
			spec.Mode, spec.Replicas = d.Mode, 0
			if d.Replicas != nil {
				bad(".deploy.replicas", "cannot be used with mode %s", d.Mode)
			}
		default:
			bad(".deploy.mode", "%q: want replicated, global, replicated-job or global-job", d.Mode)
		}
		maps.Copy(spec.Labels, d.Labels)
		// In any case, as docker stack deploy and --endpoint-mode read it.
		switch strings.ToLower(d.EndpointMode) {
		case "", api.EndpointVIP:
		case api.EndpointDNSRR:
			spec.EndpointMode = api.EndpointDNSRR
			for i, p := range cs.Ports {
				if p.Mode == "" || p.Mode == api.PublishIngress {
					bad(fmt.Sprintf(".ports[%d]", i), "port published with ingress mode can't be used with dnsrr mode (deploy.endpoint_mode): publish it with mode: host, or use endpoint_mode vip")
				}
			}
		default:
			bad(".deploy.endpoint_mode", "%q: want vip or dnsrr", d.EndpointMode)
		}
		for i, c := range d.Placement.Constraints {
			con, err := specflags.ParseConstraint(c)
			if err != nil {
				bad(fmt.Sprintf(".deploy.placement.constraints[%d]", i), "%v", err)
				continue
			}
			spec.Constraints = append(spec.Constraints, con)
		}
		if m := d.Placement.MaxReplicas; m > 0 {
			if api.GlobalMode(spec.Mode) {
				bad(".deploy.placement.max_replicas_per_node", "cannot be used with mode %s", spec.Mode)
			}
			spec.MaxReplicasPerNode = m
		}
		for i, p := range d.Placement.Preferences {
			pref, err := specflags.SpreadPreference(p.Spread)
			if err != nil {
				bad(fmt.Sprintf(".deploy.placement.preferences[%d].spread", i), "%v", err)
				continue
			}
			spec.PlacementPreferences = append(spec.PlacementPreferences, pref)
		}
		for _, r := range []struct {
			key string
			in  *types.Resource
			out *api.Resources
		}{
			{".deploy.resources.limits", d.Resources.Limits, &spec.Resources.Limits},
			{".deploy.resources.reservations", d.Resources.Reservations, &spec.Resources.Reservations},
		} {
			if r.in == nil {
				continue
			}
			if r.in.NanoCPUs != 0 {
				// Through the shortest decimal that is the float32, so 0.1
				// is 100000000 nano CPUs and not 100000001.
				n, err := specflags.ParseCPUs(strconv.FormatFloat(float64(r.in.NanoCPUs), 'g', -1, 32))
				if err != nil {
					bad(r.key+".cpus", "%v", err)
				}
				r.out.NanoCPUs = n
			}
			if r.in.MemoryBytes < 0 {
				bad(r.key+".memory", "must not be negative")
			}
			r.out.MemoryBytes = int64(r.in.MemoryBytes)
			if r.in.Pids < 0 {
				bad(r.key+".pids", "must not be negative")
			}
			r.out.Pids = r.in.Pids
		}
		if api.IsJob(spec.Mode) && (d.RestartPolicy == nil || d.RestartPolicy.Condition == "") {
			// Docker's default for a job: a task that completed is done.
			spec.RestartPolicy.Condition = api.RestartOnFailure
		}
		if rp := d.RestartPolicy; rp != nil {
			switch rp.Condition {
			case "":
			case api.RestartAny, api.RestartOnFailure, api.RestartNone:
				spec.RestartPolicy.Condition = rp.Condition
			default:
				bad(".deploy.restart_policy.condition", "%q: want any, on-failure or none", rp.Condition)
			}
			if rp.MaxAttempts != nil {
				spec.RestartPolicy.MaxAttempts = int(*rp.MaxAttempts)
			}
			zeroDur(".deploy.restart_policy.delay", rp.Delay, &spec.RestartPolicy.Delay)
			dur(".deploy.restart_policy.window", rp.Window, &spec.RestartPolicy.Window)
		}
		updateConfig(".deploy.update_config", d.UpdateConfig, &spec.UpdateConfig, false, bad)
		updateConfig(".deploy.rollback_config", d.RollbackConfig, &spec.RollbackConfig, true, bad)
	}
	if cs.Restart != "" && (cs.Deploy == nil || cs.Deploy.RestartPolicy == nil) {
		legacyRestart(&spec, cs.Restart, bad)
	}
	serviceLevelResources(cs, &spec, bad)
	spec.Labels[StackLabel] = stack
	return spec, errs
}

// legacyRestart applies a service's restart: (docker compose's key) where
// deploy.restart_policy gives none, as docker stack deploy falls back to it
// (docker/cli's convertRestartPolicy): files written for docker compose say
// on-failure to mean that a task that exits 0 is done. no keeps the default
// (Swarm's too: any, or on-failure for a job); always and unless-stopped
// are any; on-failure:N and always:N also cap the attempts at N.
func legacyRestart(spec *api.ServiceSpec, restart string, bad func(string, string, ...any)) {
	name, count, hasCount := strings.Cut(restart, ":")
	attempts := 0
	if hasCount {
		n, err := strconv.Atoi(count)
		if err != nil || n < 0 {
			bad(".restart", "%q: the maximum retry count must be a non-negative integer", restart)
			return
		}
		attempts = n
	}
	switch name {
	case "no":
		return
	case "always", "unless-stopped":
		spec.RestartPolicy.Condition = api.RestartAny
	case "on-failure":
		spec.RestartPolicy.Condition = api.RestartOnFailure
	default:
		bad(".restart", "%q: want no, always, on-failure[:N] or unless-stopped", restart)
		return
	}
	if attempts > 0 {
		spec.RestartPolicy.MaxAttempts = attempts
	}
}

// serviceLevelResources applies scale, cpus, mem_limit, mem_reservation
// and pids_limit, the compose specification's (and docker compose's)
// spellings of deploy's replicas and resources, where deploy gives none.
func serviceLevelResources(cs types.ServiceConfig, spec *api.ServiceSpec, bad func(string, string, ...any)) {
	// compose-go copies scale into deploy.replicas when there is a deploy
	// section, and refuses a negative one.
	if cs.Scale != nil && cs.Deploy == nil && *cs.Scale >= 0 {
		spec.Replicas = uint64(*cs.Scale)
	}
	lim, res := &spec.Resources.Limits, &spec.Resources.Reservations
	if cs.CPUS != 0 && lim.NanoCPUs == 0 {
		n, err := specflags.ParseCPUs(strconv.FormatFloat(float64(cs.CPUS), 'g', -1, 32))
		if err != nil {
			bad(".cpus", "%v", err)
		}
		lim.NanoCPUs = n
	}
	for _, m := range []struct {
		key string
		v   int64
		dst *int64
	}{
		{".mem_limit", int64(cs.MemLimit), &lim.MemoryBytes},
		{".mem_reservation", int64(cs.MemReservation), &res.MemoryBytes},
		{".pids_limit", cs.PidsLimit, &lim.Pids},
	} {
		switch {
		case m.v == 0 || *m.dst != 0:
		case m.v < 0 && m.key == ".pids_limit":
			// -1 is docker's "unlimited", Shoal's 0.
		case m.v < 0:
			bad(m.key, "must not be negative")
		default:
			*m.dst = m.v
		}
	}
}

// updateConfig applies an update_config or rollback_config section.
func updateConfig(key string, in *types.UpdateConfig, out *api.UpdateConfig, rollback bool, bad func(string, string, ...any)) {
	if in == nil {
		return
	}
	if in.Parallelism != nil {
		out.Parallelism = int(*in.Parallelism)
	}
	if in.Delay < 0 {
		bad(key+".delay", "must not be negative")
	}
	out.Delay = time.Duration(in.Delay)
	if in.Monitor != 0 {
		if in.Monitor < 0 {
			bad(key+".monitor", "must not be negative")
		}
		out.Monitor = time.Duration(in.Monitor)
	}
	switch in.Order {
	case "":
	case api.OrderStopFirst, api.OrderStartFirst:
		out.Order = in.Order
	default:
		bad(key+".order", "%q: want stop-first or start-first", in.Order)
	}
	switch in.FailureAction {
	case "":
	case api.FailurePause, api.FailureContinue:
		out.FailureAction = in.FailureAction
	case api.FailureRollback:
		if rollback {
			bad(key+".failure_action", "%q: want pause or continue", in.FailureAction)
		}
		out.FailureAction = in.FailureAction
	default:
		bad(key+".failure_action", "%q: want pause, rollback or continue", in.FailureAction)
	}
	// float32 in compose-go: through its shortest decimal, so 0.1 stays 0.1.
	r, _ := strconv.ParseFloat(strconv.FormatFloat(float64(in.MaxFailureRatio), 'g', -1, 32), 64)
	if r < 0 || r > 1 {
		bad(key+".max_failure_ratio", "%g: want 0 to 1", r)
	}
	out.MaxFailureRatio = r
}

// nilIfEmpty makes an empty command nil, as the spec stores it.
func nilIfEmpty(c types.ShellCommand) []string {
	if len(c) == 0 {
		return nil
	}
	return slices.Clone([]string(c))
}

// serviceMounts maps a compose service's volumes: and tmpfs: onto mounts.
// A named volume is the stack's volume STACK_KEY (compose-go has already
// named it so from the project name, which is the stack's) unless the
// top-level entry is external or gives a name:. Bind sources were made
// absolute against the project directory by compose-go. Bind sources must
// exist on the node that runs the task (Shoal never creates them, as Swarm).
func serviceMounts(stack string, cs types.ServiceConfig, vols types.Volumes) ([]api.Mount, []error) {
	var errs []error
	var ms []api.Mount
	base := "services." + cs.Name
	bad := func(key string, format string, args ...any) {
		errs = append(errs, &keyError{Path: base + key, Err: fmt.Errorf(format, args...)})
	}
	for i, v := range cs.Volumes {
		key := fmt.Sprintf(".volumes[%d]", i)
		m := api.Mount{Type: v.Type, Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeVolume:
			if v.Source == "" {
				bad(key, "anonymous volume at %s: not supported, name it (NAME:%s) and declare it under the top-level volumes:", v.Target, v.Target)
				continue
			}
			if v.Volume != nil && v.Volume.Subpath != "" {
				bad(key+".volume.subpath", "not supported")
			}
			m.NoCopy = v.Volume != nil && v.Volume.NoCopy // no copy-up from the image
			m.Source = stack + "_" + v.Source
			if vc, ok := vols[v.Source]; ok && vc.Name != "" {
				m.Source = vc.Name
			}
		case types.VolumeTypeBind:
			if b := v.Bind; b != nil {
				if b.SELinux != "" {
					bad(key+".bind.selinux", "not supported")
				}
				if b.Propagation != "" && b.Propagation != "rprivate" {
					bad(key+".bind.propagation", "%q: only rprivate is supported", b.Propagation)
				}
			}
			m.Source = filepath.Clean(v.Source)
		case types.VolumeTypeTmpfs:
			m.Source = ""
			if t := v.Tmpfs; t != nil {
				m.TmpfsSize = int64(t.Size)
				m.TmpfsMode = t.Mode
			}
		default:
			bad(key+".type", "%q: want volume, bind or tmpfs", v.Type)
			continue
		}
		if p := api.MountProblem(m); p != "" {
			bad(key, "%s", p)
			continue
		}
		ms = append(ms, m)
	}
	for i, t := range cs.Tmpfs {
		key := fmt.Sprintf(".tmpfs[%d]", i)
		m, err := parseComposeTmpfs(t)
		if err != nil {
			bad(key, "%v", err)
			continue
		}
		ms = append(ms, m)
	}
	if p := api.MountsProblems(ms); len(p) > 0 {
		bad(".volumes", "%s", strings.Join(p, "; "))
	}
	return ms, errs
}

// stackVolumes checks the top-level volumes the services mount: a Shoal
// volume is a directory of the node (docker's local driver without
// options), so another driver or driver_opts (an NFS or CIFS mount, a
// device) is refused: ignoring them would put the data on the node's disk
// where the file says it lives elsewhere.
func stackVolumes(p *types.Project) []error {
	used := map[string]bool{}
	for _, cs := range p.Services {
		for _, v := range cs.Volumes {
			if v.Type == types.VolumeTypeVolume && v.Source != "" {
				used[v.Source] = true
			}
		}
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(used)) {
		vc, ok := p.Volumes[k]
		if !ok || bool(vc.External) {
			continue
		}
		if vc.Driver != "" && vc.Driver != "local" {
			errs = append(errs, &keyError{Path: "volumes." + k + ".driver", Err: fmt.Errorf("%q: only local volumes (directories of the node) exist", vc.Driver)})
		}
		if len(vc.DriverOpts) > 0 {
			errs = append(errs, &keyError{Path: "volumes." + k + ".driver_opts", Err: errors.New("not supported: a volume is a directory of the node; for a network file system, mount it on every node and bind-mount that path")})
		}
	}
	return errs
}

// parseComposeTmpfs parses a tmpfs: entry, PATH[:size=N,mode=M] (the
// options docker honours for a service's tmpfs).
func parseComposeTmpfs(s string) (api.Mount, error) {
	target, opts, _ := strings.Cut(s, ":")
	m := api.Mount{Type: api.MountTmpfs, Target: target}
	if opts != "" {
		for _, o := range strings.Split(opts, ",") {
			k, v, _ := strings.Cut(o, "=")
			switch k {
			case "size":
				n, err := specflags.ParseSize(v)
				if err != nil {
					return m, fmt.Errorf("%q: size: %w", s, err)
				}
				m.TmpfsSize = n
			case "mode":
				n, err := strconv.ParseUint(v, 8, 32)
				if err != nil {
					return m, fmt.Errorf("%q: mode %q: want an octal mode", s, v)
				}
				m.TmpfsMode = uint32(n)
			case "ro":
				m.ReadOnly = true
			case "rw":
			default:
				return m, fmt.Errorf("%q: option %q not supported (size, mode, ro)", s, k)
			}
		}
	}
	if p := api.MountProblem(m); p != "" {
		return m, fmt.Errorf("%q: %s", s, p)
	}
	return m, nil
}

// StackNetwork is a network a stack's services use: created by stack
// deploy unless External, which must exist.
type StackNetwork struct {
	api.Network
	External bool
}

// composeNetworkName maps a compose network key to a Shoal network name:
// "default" (the network compose gives services that name none) is the
// cluster's default network, not STACK_default, so a stack's services
// still reach services outside the stack as before networks existed; an
// external network keeps its name; any other is STACK_KEY (or its name:).
func composeNetworkName(stack, key string, cfg types.NetworkConfig) string {
	switch {
	case key == "default":
		return api.DefaultNetwork
	case cfg.Name != "":
		return cfg.Name
	case bool(cfg.External):
		return key
	}
	return stack + "_" + key
}

// serviceNetworks returns the networks of a compose service in order
// (priority: first, then key), nil for the default network alone.
func serviceNetworks(stack string, p *types.Project, cs types.ServiceConfig) []string {
	keys := slices.Sorted(maps.Keys(cs.Networks))
	prio := func(k string) int {
		if c := cs.Networks[k]; c != nil {
			return c.Priority
		}
		return 0
	}
	sort.SliceStable(keys, func(i, j int) bool { return prio(keys[i]) > prio(keys[j]) })
	var out []string
	for _, k := range keys {
		out = append(out, composeNetworkName(stack, k, p.Networks[k]))
	}
	if len(out) == 1 && out[0] == api.DefaultNetwork {
		return nil
	}
	return out
}

// serviceAliases returns the aliases of a compose service per network
// (services.X.networks.KEY.aliases, keyed by the Shoal network name), nil
// when it has none; each is a DNS label, once per network.
func serviceAliases(stack string, p *types.Project, cs types.ServiceConfig) (map[string][]string, []error) {
	var out map[string][]string
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(cs.Networks)) {
		c := cs.Networks[k]
		if c == nil || len(c.Aliases) == 0 {
			continue
		}
		var list []string
		for i, a := range c.Aliases {
			key := fmt.Sprintf("services.%s.networks.%s.aliases[%d]", cs.Name, k, i)
			if why := api.AliasProblem(a); why != "" {
				errs = append(errs, &keyError{Path: key, Err: fmt.Errorf("%q: %s", a, why)})
				continue
			}
			if slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, a) }) {
				errs = append(errs, &keyError{Path: key, Err: fmt.Errorf("%q: listed twice", a)})
				continue
			}
			list = append(list, a)
		}
		if len(list) > 0 {
			if out == nil {
				out = map[string][]string{}
			}
			out[composeNetworkName(stack, k, p.Networks[k])] = list
		}
	}
	return out, errs
}

// aliasClashes refuses an alias that would answer for two services of the
// file on one network: another service's name there, or another service's
// alias. The cluster refuses such a service too, but only when its write
// comes, after the services before it in the deploy were already created
// or updated; found here, the deploy changes nothing. specs are the file's
// services in sorted order, as StackSpecs builds them.
func aliasClashes(stack string, p *types.Project, specs []api.ServiceSpec) []error {
	type name struct{ network, lower string }
	type use struct{ what, service string } // "alias A of service X", X
	names := map[name]use{}
	for _, spec := range specs {
		for _, n := range api.SpecNetworks(spec) {
			names[name{n, strings.ToLower(spec.Name)}] = use{"service " + spec.Name, spec.Name}
		}
	}
	var errs []error
	for i, svc := range slices.Sorted(maps.Keys(p.Services)) {
		cs, spec := p.Services[svc], specs[i]
		for _, k := range slices.Sorted(maps.Keys(cs.Networks)) {
			c := cs.Networks[k]
			if c == nil {
				continue
			}
			n := composeNetworkName(stack, k, p.Networks[k])
			for j, a := range c.Aliases {
				key := name{n, strings.ToLower(a)}
				if strings.EqualFold(a, spec.Name) || !slices.Contains(spec.NetworkAliases[n], a) {
					continue // its own name adds nothing; a refused alias is reported already
				}
				if other, ok := names[key]; ok && other.service != spec.Name {
					errs = append(errs, &keyError{
						Path: fmt.Sprintf("services.%s.networks.%s.aliases[%d]", cs.Name, k, j),
						Err:  fmt.Errorf("%q: on network %s it is already %s (a name answers for one service per network)", a, n, other.what),
					})
					continue
				}
				names[key] = use{fmt.Sprintf("alias %s of service %s", a, spec.Name), spec.Name}
			}
		}
	}
	return errs
}

// StackNetworks returns the networks the services of p use (the default
// one aside), sorted by name, or the problems of their definitions.
func StackNetworks(stack string, p *types.Project) ([]StackNetwork, error) {
	used := map[string]bool{}
	for _, cs := range p.Services {
		for k := range cs.Networks {
			used[k] = true
		}
	}
	var out []StackNetwork
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(used)) {
		if k == "default" {
			continue
		}
		cfg, ok := p.Networks[k]
		bad := func(key, format string, args ...any) {
			errs = append(errs, &keyError{Path: "networks." + k + key, Err: fmt.Errorf(format, args...)})
		}
		if !ok {
			bad("", "used by a service but not defined")
			continue
		}
		if cfg.Driver != "" && cfg.Driver != "overlay" {
			bad(".driver", "%q: only overlay networks exist", cfg.Driver)
		}
		// driver_opts encrypted, whatever its value (docker's overlay
		// driver looks only for the key), is `network create --encrypted`.
		_, encrypted := cfg.DriverOpts["encrypted"]
		n := StackNetwork{Network: api.Network{Name: composeNetworkName(stack, k, cfg), Internal: cfg.Internal, Attachable: cfg.Attachable,
			Encrypted: encrypted && !bool(cfg.External)},
			External: bool(cfg.External)}
		if !n.External {
			// The stack's label, as docker's: `stack rm` removes the
			// networks it carries, and only those.
			n.Labels = maps.Clone(map[string]string(cfg.Labels))
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			n.Labels[StackLabel] = stack
		}
		for i, pool := range cfg.Ipam.Config {
			if pool == nil || pool.Subnet == "" {
				continue
			}
			if i > 0 || n.Subnet != "" {
				bad(fmt.Sprintf(".ipam.config[%d].subnet", i), "only one subnet per network")
				continue
			}
			n.Subnet = pool.Subnet
		}
		out = append(out, n)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// StackLabel marks the services of a stack (api.StackLabel).
const StackLabel = api.StackLabel
