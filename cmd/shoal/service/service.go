// Package service is `shoal service`: create, list, inspect, scale,
// update, roll back, remove services and print their logs. Without -d,
// create, update, scale and rollback wait for the service to converge
// (wait.go: it polls the agent and prints what cmd/shoal/progress's Assess
// makes of each poll).
package service

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/logs"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/progress"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// commands are the actions of `shoal service`, on the shared shell.
type commands struct{ *shell.Shell }

// Command defines `shoal service ...`.
func Command(sh *shell.Shell) *cli.Command {
	s := &commands{sh}
	return &cli.Command{
		Name:  "service",
		Usage: "manage services",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a service",
				ArgsUsage: "IMAGE [COMMAND [ARG...]]",
				Flags:     specflags.Flags(false),
				Action:    s.serviceCreate,
			},
			shell.ListCommand(s.Shell, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list services",
				Flags: []cli.Flag{shell.NoTruncFlag,
					&cli.StringSliceFlag{Name: "filter", Aliases: []string{"f"}, Usage: "name=PREFIX, id=PREFIX or mode=MODE"}},
			}, shell.Lister[api.Service]{
				Filters: func(c *cli.Context) (map[string][]string, error) {
					return output.ParseFilters(c.StringSlice("filter"), "name", "id", "mode")
				},
				Fetch: fetchServices,
				ID:    serviceID,
				Table: renderServiceList,
			}),
			shell.TaskListCommand(s.Shell, &cli.Command{
				Name:      "ps",
				Usage:     "list the tasks of services",
				ArgsUsage: "SERVICE...",
			}, 1, -1, fetchTaskViews),
			shell.WithPretty(s.Shell, shell.InspectCommand(s.Shell, &cli.Command{
				Name:      "inspect",
				Usage:     "show services as JSON (--pretty: as text)",
				ArgsUsage: "SERVICE...",
			}, "service", getInspectView, serviceID), "service", getInspectView, output.RenderServicePretty),
			{
				Name:      "scale",
				Usage:     "set the replica count of services",
				ArgsUsage: "SERVICE=REPLICAS...",
				Flags:     specflags.WaitFlags(),
				Action:    s.serviceScale,
			},
			{
				Name:      "update",
				Usage:     "change a service (rolling update)",
				ArgsUsage: "SERVICE",
				Flags:     specflags.Flags(true),
				Action:    s.serviceUpdate,
			},
			{
				Name:      "rollback",
				Usage:     "go back to the previous spec of a service",
				ArgsUsage: "SERVICE",
				Flags:     specflags.WaitFlags(),
				Action:    s.serviceRollback,
			},
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove services",
				ArgsUsage: "SERVICE...",
				Action:    s.serviceRm,
			},
			{
				Name:      "logs",
				Usage:     "print the logs of a service's tasks, or of one task (ID, ID prefix or NAME.SLOT)",
				ArgsUsage: "SERVICE|TASK",
				Flags:     append(logs.Flags(), &cli.BoolFlag{Name: "raw", Usage: "do not prefix lines with the task name"}),
				Action:    s.serviceLogs,
			},
		},
	}
}

// buildCreateSpec turns `service create` flags and arguments into a spec.
func buildCreateSpec(c *cli.Context) (api.ServiceSpec, error) {
	if err := shell.NeedArgs(c, 1, -1); err != nil {
		return api.ServiceSpec{}, err
	}
	// The name is how every other command finds the service (shoal has
	// no generated names): without it the agent answered
	// "create service : invalid service spec: name \"\": must not be empty".
	if err := shell.RequireFlags(c, "name"); err != nil {
		return api.ServiceSpec{}, err
	}
	spec := specflags.DefaultSpec()
	spec.Name = c.String("name")
	spec.Image = c.Args().First()
	if rest := c.Args().Tail(); len(rest) > 0 {
		spec.Command = rest
	}
	if err := specflags.Apply(c, &spec, false); err != nil {
		return api.ServiceSpec{}, err
	}
	return spec, nil
}

func (s *commands) serviceCreate(c *cli.Context) error {
	spec, err := buildCreateSpec(c)
	if err != nil {
		return err
	}
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	svc, err := cl.CreateService(c.Context, spec)
	if err != nil {
		return shell.Wrap("create service "+spec.Name, err)
	}
	fmt.Fprintln(s.Stdout, svc.ID)
	return s.maybeWait(c, cl, svc.ID, progress.OpCreate)
}

// maybeWait follows convergence unless -d was given.
func (s *commands) maybeWait(c *cli.Context, cl *client.Client, id, op string) error {
	if c.Bool("detach") {
		return nil
	}
	return s.waitService(c.Context, cl, id, op, c.Duration("timeout"), c.Bool("quiet"))
}

// waitService is progress.Wait on the shell's stderr and poll interval.
func (s *commands) waitService(ctx context.Context, cl *client.Client, id, op string, timeout time.Duration, quiet bool) error {
	return progress.Wait(ctx, cl, s.Stderr, s.Poll, id, op, timeout, quiet)
}

// serviceID is what -q prints for a service.
func serviceID(sv api.Service) string { return sv.ID }

// renderServiceList is output.RenderServices as a lister table.
func renderServiceList(w io.Writer, list []api.Service, r shell.ListRun) error {
	return output.RenderServices(w, list, r.NoTrunc)
}

// fetchServices gets the services `service ls` shows.
func fetchServices(r shell.ListRun) ([]api.Service, error) {
	all, err := r.Cl.Services(r.C.Context)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	var list []api.Service
	for _, sv := range all {
		sv = output.ServiceView(sv)
		if output.MatchAny(r.Filters["name"], func(v string) bool { return strings.HasPrefix(sv.Name, v) }) &&
			output.MatchAny(r.Filters["id"], func(v string) bool { return strings.HasPrefix(sv.ID, v) }) &&
			output.MatchAny(r.Filters["mode"], func(v string) bool { return sv.Mode == v }) {
			list = append(list, sv)
		}
	}
	return list, nil
}

// fetchTaskViews gets the tasks of the services named as arguments that
// match the filters, in table order.
func fetchTaskViews(r shell.ListRun) ([]output.TaskView, error) {
	var tasks []api.Task
	for _, id := range r.C.Args().Slice() {
		ts, err := r.Cl.ServiceTasks(r.C.Context, id, client.TaskFilter{})
		if err != nil {
			return nil, fmt.Errorf("tasks of service %s: %w", id, err)
		}
		tasks = append(tasks, ts...)
	}
	return output.TaskViews(tasks, r.Filters), nil
}

func (s *commands) serviceScale(c *cli.Context) error {
	if err := shell.NeedArgs(c, 1, -1); err != nil {
		return err
	}
	type scale struct {
		name string
		n    uint64
	}
	var scales []scale
	for _, a := range c.Args().Slice() {
		name, n, err := specflags.ParseScale(a)
		if err != nil {
			return &specflags.UsageError{Err: err}
		}
		scales = append(scales, scale{name, n})
	}
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	// Every service is looked up before any is scaled: a typo'd name, a
	// global service or a count past api.MaxReplicas (which the agent
	// refuses, in its words) refuses the whole command instead of scaling
	// the names before it (docker scales those and reports the rest).
	for _, sc := range scales {
		if sc.n > api.MaxReplicas {
			return fmt.Errorf("scale %s: invalid service spec: replicas %d: more than %d", sc.name, sc.n, api.MaxReplicas)
		}
		svc, err := cl.Service(c.Context, sc.name)
		if err != nil {
			return fmt.Errorf("scale %s: %w", sc.name, err)
		}
		if api.GlobalMode(svc.Spec.Mode) {
			// docker's words (a replicated job's replicas are its
			// completions: scaling it runs it again, as docker's).
			return fmt.Errorf("scale %s: scale can only be used with replicated or replicated-job mode (it is %s)", sc.name, svc.Spec.Mode)
		}
		// The autoscaler brings a count outside its range back to the
		// nearest bound at once (node/autoscale): such a scale started or
		// stopped tasks for nothing, said "scaled to N" and converged, and
		// the count was silently the bound again moments later.
		if as := svc.Spec.Autoscale; as != nil && (sc.n < as.Min || sc.n > as.Max) {
			return fmt.Errorf("scale %s: %d is outside its autoscale range %d-%d, and the autoscaler would set it back; "+
				"change the range (`shoal service update --autoscale min=N,max=M,...`) or turn autoscaling off (`--autoscale off`)",
				sc.name, sc.n, as.Min, as.Max)
		}
	}
	var failed error
	var scaled []string
	for _, sc := range scales {
		if _, err := cl.ScaleService(c.Context, sc.name, sc.n); err != nil {
			failed = fmt.Errorf("scale %s: %w", sc.name, err)
			fmt.Fprintf(s.Stderr, "Error: %v\n", failed)
			continue
		}
		fmt.Fprintf(s.Stdout, "%s scaled to %d\n", sc.name, sc.n)
		scaled = append(scaled, sc.name)
	}
	for _, name := range scaled {
		if err := s.maybeWait(c, cl, name, progress.OpScale); err != nil {
			if c.Context.Err() != nil {
				return err
			}
			failed = err
			fmt.Fprintf(s.Stderr, "Error: %v\n", err)
		}
	}
	return shell.QuietFailure(failed)
}

func (s *commands) serviceUpdate(c *cli.Context) error {
	cl, err := s.Connect(c, 1, 1)
	if err != nil {
		return err
	}
	id := c.Args().First()
	if c.Bool("rollback") {
		return s.rollback(c, cl, id)
	}
	cur, err := cl.ServiceConsistent(c.Context, id)
	if err != nil {
		return fmt.Errorf("update service %s: %w", id, err)
	}
	spec := cur.Spec
	networkRmByID(c, cl, &spec)
	if err := specflags.Apply(c, &spec, true); err != nil {
		return err
	}
	svc, err := cl.UpdateService(c.Context, cur.ID, cur.Version, spec)
	if err != nil {
		return shell.Wrap("update service "+id, err)
	}
	fmt.Fprintln(s.Stdout, svc.ID)
	return s.maybeWait(c, cl, svc.ID, progress.OpUpdate)
}

// networkRmByID lets --network-rm name a network by ID or ID prefix, as
// --network-add and docker's --network-rm do (the agent stores the name
// of a network so given: handlers.SpecNetworkNames). The spec keeps
// names, so specflags refused an ID with "the service is not on that
// network". Each such value the agent resolves to one of the service's
// networks renames that network to the value in spec, the copy the flags
// are applied to, so the removal finds it (its aliases go with it). A
// value that resolves to no network of the service is left to specflags'
// refusal.
func networkRmByID(c *cli.Context, cl *client.Client, spec *api.ServiceSpec) {
	for _, ref := range c.StringSlice("network-rm") {
		if slices.Contains(api.SpecNetworks(*spec), ref) {
			continue
		}
		n, err := cl.Network(c.Context, ref)
		if err != nil {
			continue
		}
		i := slices.Index(spec.Networks, n.Name)
		if i < 0 {
			continue
		}
		spec.Networks = slices.Clone(spec.Networks)
		spec.Networks[i] = ref
		if a, ok := spec.NetworkAliases[n.Name]; ok {
			spec.NetworkAliases = maps.Clone(spec.NetworkAliases)
			delete(spec.NetworkAliases, n.Name)
			spec.NetworkAliases[ref] = a
		}
	}
}

func (s *commands) serviceRollback(c *cli.Context) error {
	cl, err := s.Connect(c, 1, 1)
	if err != nil {
		return err
	}
	return s.rollback(c, cl, c.Args().First())
}

// rollback asks for a rollback and follows it unless -d.
func (s *commands) rollback(c *cli.Context, cl *client.Client, id string) error {
	svc, err := cl.RollbackService(c.Context, id)
	if err != nil {
		return shell.Wrap("rollback service "+id, err)
	}
	fmt.Fprintln(s.Stdout, svc.ID)
	return s.maybeWait(c, cl, svc.ID, progress.OpRollback)
}

func (s *commands) serviceRm(c *cli.Context) error {
	return s.EachRef(c, "remove service", func(cl *client.Client, id string) error {
		return cl.RemoveService(c.Context, id)
	})
}

func (s *commands) serviceLogs(c *cli.Context) error {
	if err := shell.NeedArgs(c, 1, 1); err != nil {
		return err
	}
	opts, err := logs.Options(c, s.Now)
	if err != nil {
		return err
	}
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	id := c.Args().First()
	if opts.Skip {
		return nil
	}
	raw, ts := c.Bool("raw"), c.Bool("timestamps")
	err = cl.ServiceLogs(c.Context, id, opts.LogOptions, func(l api.LogLine) error {
		prefix := ""
		if !raw && l.Task != "" {
			prefix = l.Task
			if l.Node != "" {
				prefix += "@" + l.Node
			}
			// The task and node names come from the cluster's
			// records, not the container: no terminal escapes.
			prefix = output.Sanitize(prefix) + " | "
		}
		return logs.WriteLine(s.Stdout, s.Stderr, l, prefix, ts)
	})
	return logs.StreamErr(c.Context, "logs of "+id, err)
}

// getInspectView gets a service as `service inspect` shows it.
func getInspectView(ctx context.Context, cl *client.Client, id string) (api.Service, error) {
	sv, err := shell.Deref(cl.Service(ctx, id))
	return inspectView(sv), err
}

// inspectView is what `service inspect` shows of sv: output.ServiceView,
// with the endpoint mode spelled out (the stored spec leaves the default,
// vip, empty) and vips an empty object, never null, for a service that
// has none (dnsrr).
func inspectView(sv api.Service) api.Service {
	sv = output.ServiceView(sv)
	if sv.Spec.EndpointMode == "" {
		sv.Spec.EndpointMode = api.EndpointVIP
	}
	if sv.VIPs == nil {
		sv.VIPs = map[string]string{}
	}
	return sv
}
