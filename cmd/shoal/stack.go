package main

// `shoal stack`: deploy a compose file as a set of services named
// STACK_SERVICE and labelled with the stack name, as `docker stack` does.
// Only the compose options that map onto a ServiceSpec are read; others are
// reported and ignored.

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/shoal-org/shoal/api"
)

// stackLabel marks the services of a stack (docker's label, so habits and
// scripts carry over).
const stackLabel = "com.docker.stack.namespace"

// errBadCompose wraps every problem found in a compose file.
var errBadCompose = errors.New("invalid compose file")

// composeFile is the subset of the compose format Shoal understands.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image           string            `yaml:"image"`
	Command         stringOrList      `yaml:"command"`
	Entrypoint      stringOrList      `yaml:"entrypoint"`
	Environment     composeEnv        `yaml:"environment"`
	Ports           []composePort     `yaml:"ports"`
	WorkingDir      string            `yaml:"working_dir"`
	User            string            `yaml:"user"`
	Labels          map[string]string `yaml:"labels"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Healthcheck     *composeHealth    `yaml:"healthcheck"`
	Deploy          composeDeploy     `yaml:"deploy"`
}

type composeHealth struct {
	Test        stringOrList `yaml:"test"`
	Interval    string       `yaml:"interval"`
	Timeout     string       `yaml:"timeout"`
	StartPeriod string       `yaml:"start_period"`
	Retries     int          `yaml:"retries"`
	Disable     bool         `yaml:"disable"`
}

type composeResources struct {
	CPUs   string `yaml:"cpus"`
	Memory string `yaml:"memory"`
	Pids   int64  `yaml:"pids"`
}

type composeUpdate struct {
	Parallelism     *int    `yaml:"parallelism"`
	Delay           string  `yaml:"delay"`
	Order           string  `yaml:"order"`
	FailureAction   string  `yaml:"failure_action"`
	Monitor         string  `yaml:"monitor"`
	MaxFailureRatio float64 `yaml:"max_failure_ratio"`
}

type composeDeploy struct {
	Mode      string            `yaml:"mode"`
	Replicas  *uint64           `yaml:"replicas"`
	Labels    map[string]string `yaml:"labels"`
	Resources struct {
		Limits       composeResources `yaml:"limits"`
		Reservations composeResources `yaml:"reservations"`
	} `yaml:"resources"`
	Placement struct {
		Constraints []string `yaml:"constraints"`
	} `yaml:"placement"`
	RestartPolicy struct {
		Condition   string `yaml:"condition"`
		Delay       string `yaml:"delay"`
		MaxAttempts int    `yaml:"max_attempts"`
		Window      string `yaml:"window"`
	} `yaml:"restart_policy"`
	UpdateConfig   composeUpdate `yaml:"update_config"`
	RollbackConfig composeUpdate `yaml:"rollback_config"`
}

// stringOrList is a command given as "sh -c 'x'" or ["sh", "-c", "x"].
type stringOrList []string

// UnmarshalYAML accepts a scalar (split like a shell) or a sequence.
func (s *stringOrList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		words, err := splitWords(n.Value)
		if err != nil {
			return err
		}
		*s = words
		return nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*s = l
		return nil
	}
	return fmt.Errorf("line %d: want a string or a list", n.Line)
}

// composeEnv is environment as a list of K=V or a mapping.
type composeEnv []string

// UnmarshalYAML accepts both compose forms; a null value in the mapping
// form takes the variable from the caller's environment.
func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return err
		}
		*e = l
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			if v.Tag == "!!null" {
				*e = append(*e, k)
				continue
			}
			*e = append(*e, k+"="+v.Value)
		}
		return nil
	}
	return fmt.Errorf("line %d: environment must be a list or a mapping", n.Line)
}

// composePort is "P:T[/proto]", a bare target port, or the long form.
type composePort string

// UnmarshalYAML turns every form into the --publish syntax.
func (p *composePort) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*p = composePort(n.Value)
		return nil
	case yaml.MappingNode:
		var long struct {
			Target    string `yaml:"target"`
			Published string `yaml:"published"`
			Protocol  string `yaml:"protocol"`
			Mode      string `yaml:"mode"`
		}
		if err := n.Decode(&long); err != nil {
			return err
		}
		parts := []string{"target=" + long.Target}
		if long.Published != "" {
			parts = append(parts, "published="+long.Published)
		}
		if long.Protocol != "" {
			parts = append(parts, "protocol="+long.Protocol)
		}
		if long.Mode != "" {
			parts = append(parts, "mode="+long.Mode)
		}
		*p = composePort(strings.Join(parts, ","))
		return nil
	}
	return fmt.Errorf("line %d: a port is a string or a mapping", n.Line)
}

// supportedServiceKeys are the service options stackSpecs reads.
var supportedServiceKeys = []string{"image", "command", "entrypoint", "environment", "ports", "working_dir",
	"user", "labels", "stop_grace_period", "healthcheck", "deploy"}

// parseCompose reads a compose file and returns its services and the
// options it ignores (as "service.option").
func parseCompose(data []byte) (composeFile, []string, error) {
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return f, nil, fmt.Errorf("%w: %v", errBadCompose, err)
	}
	if len(f.Services) == 0 {
		return f, nil, fmt.Errorf("%w: no services", errBadCompose)
	}
	var raw struct {
		Top      map[string]any            `yaml:",inline"`
		Services map[string]map[string]any `yaml:"services"`
	}
	var ignored []string
	if err := yaml.Unmarshal(data, &raw); err == nil {
		for k := range raw.Top {
			if k != "version" && k != "services" {
				ignored = append(ignored, k)
			}
		}
		for name, opts := range raw.Services {
			for k := range opts {
				if !slices.Contains(supportedServiceKeys, k) {
					ignored = append(ignored, name+"."+k)
				}
			}
		}
	}
	sort.Strings(ignored)
	return f, ignored, nil
}

// stackSpecs turns a compose file into service specs for stack name.
func stackSpecs(stack string, f composeFile) ([]api.ServiceSpec, error) {
	names := make([]string, 0, len(f.Services))
	for n := range f.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	var specs []api.ServiceSpec
	for _, n := range names {
		spec, err := composeSpec(stack, n, f.Services[n])
		if err != nil {
			return nil, fmt.Errorf("%w: service %s: %v", errBadCompose, n, err)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

// composeSpec converts one compose service.
func composeSpec(stack, name string, cs composeService) (api.ServiceSpec, error) {
	spec := defaultSpec()
	spec.Name = stack + "_" + name
	spec.Image = cs.Image
	if spec.Image == "" {
		return spec, errors.New("no image")
	}
	spec.Command, spec.Entrypoint = cs.Command, cs.Entrypoint
	spec.Workdir, spec.User = cs.WorkingDir, cs.User
	spec.Labels = map[string]string{stackLabel: stack}
	for k, v := range cs.Deploy.Labels {
		spec.Labels[k] = v
	}
	var err error
	if spec.Env, err = setEnvs(spec.Env, cs.Environment); err != nil {
		return spec, err
	}
	if spec.Ports, err = appendPorts(spec.Ports, cs.Ports); err != nil {
		return spec, err
	}
	d := cs.Deploy
	switch d.Mode {
	case "", api.ModeReplicated:
		if d.Replicas != nil {
			spec.Replicas = *d.Replicas
		}
	case api.ModeGlobal:
		if d.Replicas != nil {
			return spec, errors.New("deploy.replicas with mode global")
		}
		spec.Mode, spec.Replicas = api.ModeGlobal, 0
	default:
		return spec, fmt.Errorf("deploy.mode %q: want replicated or global", d.Mode)
	}
	for _, c := range d.Placement.Constraints {
		con, err := parseConstraint(c)
		if err != nil {
			return spec, err
		}
		spec.Constraints = append(spec.Constraints, con)
	}
	if err := composeResourcesInto(d.Resources.Limits, &spec.Resources.Limits); err != nil {
		return spec, fmt.Errorf("deploy.resources.limits: %w", err)
	}
	if err := composeResourcesInto(d.Resources.Reservations, &spec.Resources.Reservations); err != nil {
		return spec, fmt.Errorf("deploy.resources.reservations: %w", err)
	}
	rp := d.RestartPolicy
	if rp.Condition != "" {
		switch rp.Condition {
		case api.RestartAny, api.RestartOnFailure, api.RestartNone:
			spec.RestartPolicy.Condition = rp.Condition
		default:
			return spec, fmt.Errorf("restart_policy.condition %q", rp.Condition)
		}
	}
	spec.RestartPolicy.MaxAttempts = rp.MaxAttempts
	durs := []durField{
		{"restart_policy.delay", rp.Delay, &spec.RestartPolicy.Delay},
		{"restart_policy.window", rp.Window, &spec.RestartPolicy.Window},
		{"stop_grace_period", cs.StopGracePeriod, &spec.StopGracePeriod},
		{"update_config.delay", d.UpdateConfig.Delay, &spec.UpdateConfig.Delay},
		{"update_config.monitor", d.UpdateConfig.Monitor, &spec.UpdateConfig.Monitor},
		{"rollback_config.delay", d.RollbackConfig.Delay, &spec.RollbackConfig.Delay},
		{"rollback_config.monitor", d.RollbackConfig.Monitor, &spec.RollbackConfig.Monitor},
	}
	if h := cs.Healthcheck; h != nil {
		hc := &api.HealthConfig{Retries: h.Retries}
		switch {
		case h.Disable:
			hc.Test = []string{"NONE"}
		case len(h.Test) > 0 && (h.Test[0] == "CMD" || h.Test[0] == "CMD-SHELL" || h.Test[0] == "NONE"):
			hc.Test = h.Test
		case len(h.Test) > 0:
			hc.Test = []string{"CMD-SHELL", strings.Join(h.Test, " ")}
		}
		durs = append(durs,
			durField{"healthcheck.interval", h.Interval, &hc.Interval},
			durField{"healthcheck.timeout", h.Timeout, &hc.Timeout},
			durField{"healthcheck.start_period", h.StartPeriod, &hc.StartPeriod})
		spec.Healthcheck = hc
	}
	for _, du := range durs {
		if du.v == "" {
			continue
		}
		v, err := time.ParseDuration(du.v)
		if err != nil || v < 0 {
			return spec, fmt.Errorf("%s %q: want a duration like 10s", du.name, du.v)
		}
		*du.dst = v
	}
	for _, u := range []struct {
		in  composeUpdate
		dst *api.UpdateConfig
	}{{d.UpdateConfig, &spec.UpdateConfig}, {d.RollbackConfig, &spec.RollbackConfig}} {
		if u.in.Parallelism != nil {
			u.dst.Parallelism = *u.in.Parallelism
		}
		if u.in.Order != "" {
			u.dst.Order = u.in.Order
		}
		if u.in.FailureAction != "" {
			u.dst.FailureAction = u.in.FailureAction
		}
		if u.in.MaxFailureRatio != 0 {
			u.dst.MaxFailureRatio = u.in.MaxFailureRatio
		}
	}
	return spec, nil
}

// durField is a compose duration string and where it goes.
type durField struct {
	name, v string
	dst     *time.Duration
}

// composeResourcesInto converts compose cpus/memory/pids.
func composeResourcesInto(in composeResources, out *api.Resources) error {
	if in.CPUs != "" {
		n, err := parseCPUs(in.CPUs)
		if err != nil {
			return err
		}
		out.NanoCPUs = n
	}
	if in.Memory != "" {
		n, err := parseSize(in.Memory)
		if err != nil {
			return err
		}
		out.MemoryBytes = n
	}
	if in.Pids != 0 {
		out.Pids = in.Pids
	}
	return nil
}

// stackCommand defines `shoal stack deploy|ls|services|ps|rm`.
func (s *shell) stackCommand() *cli.Command {
	return &cli.Command{
		Name:  "stack",
		Usage: "deploy compose files as groups of services",
		Subcommands: []*cli.Command{
			{
				Name:      "deploy",
				Aliases:   []string{"up"},
				Usage:     "create or update the services of a compose file",
				ArgsUsage: "STACK",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "compose-file", Aliases: []string{"c"}, Usage: "compose file (- for stdin)"},
					&cli.BoolFlag{Name: "prune", Usage: "remove services of the stack that the file no longer has"},
				},
				Action: s.stackDeploy,
			},
			listCommand(s, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list stacks",
			}, lister[stackInfo]{
				fetch: fetchStacks,
				id:    func(x stackInfo) string { return x.Name },
				table: renderStacks,
			}),
			listCommand(s, &cli.Command{
				Name:      "services",
				Usage:     "list the services of a stack",
				ArgsUsage: "STACK",
				Flags:     []cli.Flag{noTruncFlag},
			}, lister[api.Service]{
				minArgs: 1, maxArgs: 1,
				fetch: fetchStackServices,
				id:    serviceID,
				table: renderServiceList,
			}),
			{
				Name:      "rm",
				Aliases:   []string{"remove", "down"},
				Usage:     "remove stacks",
				ArgsUsage: "STACK...",
				Action:    s.stackRm,
			},
		},
	}
}

// stackServicesOf returns the services labelled with stack.
func stackServicesOf(all []api.Service, stack string) []api.Service {
	var out []api.Service
	for _, sv := range all {
		if sv.Spec.Labels[stackLabel] == stack {
			out = append(out, serviceView(sv))
		}
	}
	return out
}

func (s *shell) stackDeploy(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	if err := requireFlags(c, "compose-file"); err != nil {
		return err
	}
	stack := c.Args().First()
	if stack == "" || strings.ContainsAny(stack, " _/:") {
		return usageErrorf("invalid stack name %q", stack)
	}
	in, err := s.openInput(c.String("compose-file"))
	if err != nil {
		return err
	}
	data, err := io.ReadAll(in)
	in.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", c.String("compose-file"), err)
	}
	f, ignored, err := parseCompose(data)
	if err != nil {
		return err
	}
	for _, k := range ignored {
		fmt.Fprintf(s.stderr, "Ignoring unsupported option: %s\n", k)
	}
	specs, err := stackSpecs(stack, f)
	if err != nil {
		return err
	}
	cl, err := s.client(c)
	if err != nil {
		return err
	}
	for _, spec := range specs {
		cur, err := cl.ServiceConsistent(c.Context, spec.Name)
		switch {
		case api.IsNotFound(err):
			fmt.Fprintf(s.stdout, "Creating service %s\n", spec.Name)
			if _, err := cl.CreateService(c.Context, spec); err != nil {
				return fmt.Errorf("create service %s: %w", spec.Name, err)
			}
		case err != nil:
			return fmt.Errorf("look up service %s: %w", spec.Name, err)
		default:
			fmt.Fprintf(s.stdout, "Updating service %s\n", spec.Name)
			if _, err := cl.UpdateService(c.Context, cur.ID, cur.Version, spec); err != nil {
				return fmt.Errorf("update service %s: %w", spec.Name, err)
			}
		}
	}
	if c.Bool("prune") {
		all, err := cl.ServicesConsistent(c.Context)
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		for _, sv := range stackServicesOf(all, stack) {
			if slices.ContainsFunc(specs, func(sp api.ServiceSpec) bool { return sp.Name == sv.Name }) {
				continue
			}
			fmt.Fprintf(s.stdout, "Removing service %s\n", sv.Name)
			if err := cl.RemoveService(c.Context, sv.ID); err != nil {
				return fmt.Errorf("remove service %s: %w", sv.Name, err)
			}
		}
	}
	return nil
}

// stackInfo is one row of `stack ls`.
type stackInfo struct {
	Name     string `json:"name"`
	Services int    `json:"services"`
}

// fetchStacks counts the services of every stack, by stack name.
func fetchStacks(r listRun) ([]stackInfo, error) {
	all, err := r.cl.Services(r.c.Context)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	counts := map[string]int{}
	for _, sv := range all {
		if st := sv.Spec.Labels[stackLabel]; st != "" {
			counts[st]++
		}
	}
	var stacks []stackInfo
	for n, k := range counts {
		stacks = append(stacks, stackInfo{Name: n, Services: k})
	}
	sort.Slice(stacks, func(i, j int) bool { return stacks[i].Name < stacks[j].Name })
	return stacks, nil
}

// renderStacks draws `stack ls`.
func renderStacks(w io.Writer, stacks []stackInfo, _ listRun) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tSERVICES")
	for _, st := range stacks {
		fmt.Fprintf(tw, "%s\t%s\n", st.Name, strconv.Itoa(st.Services))
	}
	return tw.Flush()
}

// fetchStackServices gets the services of the stack named as argument; a
// stack without services is an error, as in docker.
func fetchStackServices(r listRun) ([]api.Service, error) {
	all, err := r.cl.Services(r.c.Context)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	list := stackServicesOf(all, r.c.Args().First())
	if len(list) == 0 {
		return nil, fmt.Errorf("nothing found in stack: %s", r.c.Args().First())
	}
	return list, nil
}

func (s *shell) stackRm(c *cli.Context) error {
	cl, err := s.connect(c, 1, -1)
	if err != nil {
		return err
	}
	all, err := cl.Services(c.Context)
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	var failed error
	for _, stack := range c.Args().Slice() {
		list := stackServicesOf(all, stack)
		if len(list) == 0 {
			failed = fmt.Errorf("nothing found in stack: %s", stack)
			fmt.Fprintf(s.stderr, "Error: %v\n", failed)
			continue
		}
		for _, sv := range list {
			fmt.Fprintf(s.stdout, "Removing service %s\n", sv.Name)
			if err := cl.RemoveService(c.Context, sv.ID); err != nil {
				failed = fmt.Errorf("remove service %s: %w", sv.Name, err)
				fmt.Fprintf(s.stderr, "Error: %v\n", failed)
			}
		}
	}
	return quietFailure(failed)
}
