// Package stack is `shoal stack`: deploy compose files as a set of services
// named STACK_SERVICE and labelled with the stack name, as `docker stack`
// does. cmd/shoal/compose reads the files and maps them onto service specs;
// here a deploy compares them with the stack's services (planStack, pure)
// and creates, updates or (with --prune) removes only what differs;
// objects.go makes the stack's networks, secrets and configs and removes
// them with the stack.
package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/compose"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/progress"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// commands are the actions of `shoal stack`, on the shared shell.
type commands struct{ *shell.Shell }

// Command defines `shoal stack deploy|ls|services|ps|rm`.
func Command(sh *shell.Shell) *cli.Command {
	s := &commands{sh}
	return &cli.Command{
		Name:  "stack",
		Usage: "deploy compose files as groups of services",
		Subcommands: []*cli.Command{
			{
				Name:      "deploy",
				Aliases:   []string{"up"},
				Usage:     "create or update the services of compose files",
				ArgsUsage: "[STACK]",
				Description: `Reads the compose files (the compose specification, as docker compose
reads it: ${VAR}, ${VAR:-default} and ${VAR:?error} from the environment and
the .env file beside the first file, env_file, extends, profiles) and makes
the stack's services, named STACK_SERVICE, match them. Several -c files are
merged in order, later ones overriding earlier ones. STACK defaults to the
files' name: key.

Only services whose spec changed are updated; the others keep their tasks.
Services of the stack that the files no longer have are removed only with
--prune. Networks the services name are created first (STACK_NAME; external
ones must exist). Keys Shoal does not implement (build, depends_on, logging,
cap_add, ...) are reported by path and ignored; unknown keys, missing
required variables, invalid values and values that would run something
other than the file says (a port bound to 127.0.0.1, an NFS volume, a
string command with &&) are errors, and then nothing changes. When the
agent refuses a service part way (a published port another stack holds, an
image no node has), the services, networks, secrets and configs this deploy
created are removed again; services it already updated stay updated.`,
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "compose-file", Aliases: []string{"c"}, Usage: "compose file, repeatable (- for stdin)"},
					&cli.StringSliceFlag{Name: "profile", Usage: "enable services of a profile, repeatable (default $COMPOSE_PROFILES)"},
					&cli.BoolFlag{Name: "prune", Usage: "remove services of the stack that the files no longer have"},
					specflags.WithRegistryAuthFlag(),
					// As docker's (26+): return at once by default; with
					// --detach=false wait for every created or updated
					// service to converge, and fail if one does not.
					&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Value: true, Usage: "return at once; --detach=false waits for the created and updated services to converge and fails if one does not"},
					&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "do not print progress (with --detach=false)"},
					&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "with --detach=false, give up waiting for a service after this long"},
				},
				Action: s.stackDeploy,
			},
			shell.ListCommand(s.Shell, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list stacks",
			}, shell.Lister[stackInfo]{
				Fetch: fetchStacks,
				ID:    func(x stackInfo) string { return x.Name },
				Table: renderStacks,
			}),
			shell.ListCommand(s.Shell, &cli.Command{
				Name:      "services",
				Usage:     "list the services of a stack",
				ArgsUsage: "STACK",
				Flags:     []cli.Flag{shell.NoTruncFlag},
			}, shell.Lister[api.Service]{
				MinArgs: 1, MaxArgs: 1,
				Fetch: fetchStackServices,
				ID:    func(sv api.Service) string { return sv.ID },
				Table: func(w io.Writer, list []api.Service, r shell.ListRun) error {
					return output.RenderServices(w, list, r.NoTrunc)
				},
			}),
			shell.TaskListCommand(s.Shell, &cli.Command{
				Name:      "ps",
				Usage:     "list the tasks of a stack",
				ArgsUsage: "STACK",
			}, 1, 1, fetchStackTasks),
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
		if sv.Spec.Labels[compose.StackLabel] == stack {
			out = append(out, output.ServiceView(sv))
		}
	}
	return out
}

func (s *commands) stackDeploy(c *cli.Context) error {
	if err := shell.NeedArgs(c, 0, 1); err != nil {
		return err
	}
	names := c.StringSlice("compose-file")
	if len(names) == 0 {
		return &specflags.UsageError{Err: errors.New("flag --compose-file is required"), Cmd: shell.CmdName(c)}
	}
	stack := c.Args().First()
	if stack != "" {
		if err := checkStackName(stack); err != nil {
			return &specflags.UsageError{Err: err}
		}
	}
	// compose-go reports through logrus (e.g. "version is obsolete"):
	// print those as the CLI's own warnings.
	logrus.SetOutput(s.Stderr)
	logrus.SetFormatter(warningFormatter{})
	in, err := s.composeInput(c.Context, names, c.StringSlice("profile"), stack)
	if err != nil {
		return err
	}
	project, ignored, err := compose.Load(c.Context, in)
	if stack == "" && (err != nil && strings.Contains(err.Error(), "project name must not be empty") || err == nil && project.Name == "") {
		return specflags.UsageErrorf("no stack name: give STACK or a name: key in the compose file")
	}
	if err != nil {
		return compose.LocateError(err, in.Files)
	}
	if stack == "" {
		stack = project.Name
		if err := checkStackName(stack); err != nil {
			return fmt.Errorf("%w: name: %v", compose.ErrBadCompose, err)
		}
	}
	for _, k := range ignored {
		fmt.Fprintf(s.Stderr, "Ignoring unsupported option: %s\n", k)
	}
	specs, err := compose.StackSpecs(stack, project)
	if err != nil {
		return compose.LocateError(err, in.Files)
	}
	for i := range specs {
		if err := specflags.ApplyRegistryAuth(c, &specs[i]); err != nil {
			return fmt.Errorf("service %s: %w", specs[i].Name, err)
		}
	}
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	all, err := cl.ServicesConsistent(c.Context)
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	plan, err := planStack(stack, specs, all, c.Bool("prune"))
	if err != nil {
		return err
	}
	objs, _ := compose.StackObjects(stack, project)
	if err := readStackObjects(objs); err != nil {
		return err
	}
	nets, err := compose.StackNetworks(stack, project)
	if err != nil {
		return compose.LocateError(fmt.Errorf("%w: %w", compose.ErrBadCompose, err), in.Files)
	}
	if err := checkUnchanged(c.Context, cl, objs, s.Stderr); err != nil {
		return err
	}
	newObjs, err := s.missingStackObjects(c.Context, cl, objs)
	if err != nil {
		return err
	}
	newNets, err := s.missingStackNetworks(c.Context, cl, nets)
	if err != nil {
		return err
	}
	if err := s.checkDeploy(c.Context, cl, plan, newObjs, newNets); err != nil {
		return err
	}
	// Secrets and configs first: the services refer to them. What the
	// check could not foresee (a concurrent write, an agent without the
	// check) still refuses part way: what this deploy made goes again.
	made := &created{}
	if err := s.createStackObjects(c.Context, cl, newObjs, made); err != nil {
		return s.failed(c.Context, cl, made, err)
	}
	if err := s.createStackNetworks(c.Context, cl, newNets, made); err != nil {
		return s.failed(c.Context, cl, made, err)
	}
	ids, err := s.applyStackPlan(c.Context, cl, plan, made)
	if err != nil {
		return s.failed(c.Context, cl, made, err)
	}
	if c.Bool("detach") {
		return nil
	}
	return s.waitStack(c.Context, cl, ids, c.Duration("timeout"), c.Bool("quiet"))
}

// failed undoes what a refused deploy made and returns its error, saying
// what was removed and what stays.
func (s *commands) failed(ctx context.Context, cl *client.Client, made *created, err error) error {
	n := len(made.services) + len(made.networks) + len(made.secrets) + len(made.configs)
	if n == 0 {
		return err
	}
	if uerr := s.undo(context.WithoutCancel(ctx), cl, made); uerr != nil {
		return fmt.Errorf("%w (removing what this deploy created failed too: %v)", err, uerr)
	}
	return fmt.Errorf("%w (what this deploy created was removed again)", err)
}

// waitStack follows the services a deploy created or updated until each
// has converged (progress.Wait, as `service create|update` without -d),
// one after the other: they converge side by side, the waits only
// watch. Every service is waited for; the failures are reported together.
func (s *commands) waitStack(ctx context.Context, cl *client.Client, ids []stackChange, timeout time.Duration, quiet bool) error {
	var errs []error
	for _, x := range ids {
		if err := progress.Wait(ctx, cl, s.Stderr, s.Poll, x.id, x.op, timeout, quiet); err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", x.name, err))
		}
	}
	return errors.Join(errs...)
}

// checkDeploy asks the agent to check every write of the deploy, in the
// order they will be sent, against the cluster as the earlier ones leave
// it (POST /v1/services/check): a refusal only the cluster can tell — an
// alias or a published port of a service outside the stack, a spec the
// leader refuses, a member too old for a field — used to come after the
// deploy had written its objects and its first services. Refused, the
// deploy writes nothing. An agent of an older release lacks the check, and
// a deploy past the check's size bound (httpapi.MaxDeployCheckBytes, 32
// MiB of specs) cannot be checked at once: the deploy goes on unchecked,
// as it did before, with a warning.
func (s *commands) checkDeploy(ctx context.Context, cl *client.Client, plan stackPlan, objs []compose.StackObject, nets []compose.StackNetwork) error {
	var req api.DeployCheck
	for _, n := range nets {
		req.Networks = append(req.Networks, n.Network)
	}
	for _, o := range objs {
		r := objectRequest(o)
		oc := api.ObjectCheck{Name: r.Name, Size: len(r.Data), Labels: r.Labels}
		if o.Secret {
			req.Secrets = append(req.Secrets, oc)
		} else {
			req.Configs = append(req.Configs, oc)
		}
	}
	for _, sv := range plan.remove {
		req.Remove = append(req.Remove, sv.ID)
	}
	for _, u := range plan.update {
		req.Update = append(req.Update, api.ServiceUpdateCheck{ID: u.cur.ID, Version: u.cur.Version, Spec: u.spec})
	}
	req.Create = plan.create
	if len(req.Networks)+len(req.Secrets)+len(req.Configs)+len(req.Remove)+len(req.Update)+len(req.Create) == 0 {
		return nil // nothing to write
	}
	err := cl.CheckDeploy(ctx, req)
	if errors.Is(err, client.ErrNoDeployCheck) || errors.Is(err, client.ErrDeployTooLargeToCheck) {
		fmt.Fprintf(s.Stderr, "Warning: %v: a write the cluster refuses may leave this deploy half applied\n", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w (nothing was changed)", err)
	}
	return nil
}

// warningFormatter prints a logrus entry as "Warning: message".
type warningFormatter struct{}

// Format implements logrus.Formatter.
func (warningFormatter) Format(e *logrus.Entry) ([]byte, error) {
	level := e.Level.String()
	return []byte(strings.ToUpper(level[:1]) + level[1:] + ": " + e.Message + "\n"), nil
}

// checkStackName refuses names that cannot prefix service names: compose's
// project name rule, without '_' (the separator of STACK_SERVICE).
func checkStackName(name string) error {
	ok := name != "" && name[0] != '-'
	for _, r := range name {
		ok = ok && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-')
	}
	if !ok {
		return fmt.Errorf("invalid stack name %q: use lowercase letters, digits and '-'", name)
	}
	return nil
}

// composeInput reads the -c files (stdin for "-") and the environment;
// Ctrl-C ends a read that blocks (shell.ReadInput: a FIFO without a writer).
func (s *commands) composeInput(ctx context.Context, names, profiles []string, stack string) (compose.Input, error) {
	in := compose.Input{Profiles: profiles, Name: stack, Env: map[string]string{}}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			in.Env[k] = v
		}
	}
	for _, name := range names {
		path := name
		if name != "-" {
			abs, err := filepath.Abs(name)
			if err != nil {
				return in, fmt.Errorf("read %s: %w", name, err)
			}
			path = abs
		}
		data, err := s.ReadInput(ctx, name, maxComposeFile+1)
		if err != nil {
			return in, err
		}
		if len(data) > maxComposeFile {
			return in, fmt.Errorf("%w: %s: larger than %d bytes", compose.ErrBadCompose, name, maxComposeFile)
		}
		if in.WorkingDir == "" && name != "-" {
			in.WorkingDir = filepath.Dir(path)
		}
		in.Files = append(in.Files, types.ConfigFile{Filename: path, Content: data})
	}
	if in.WorkingDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return in, fmt.Errorf("working directory: %w", err)
		}
		in.WorkingDir = wd
	}
	return in, nil
}

// maxComposeFile bounds what is read from one -c argument.
const maxComposeFile = 16 << 20

// stackPlan is what a deploy changes: services to remove (with --prune),
// create and update, and the names of those left alone.
type stackPlan struct {
	remove    []api.Service
	create    []api.ServiceSpec
	update    []stackUpdate
	unchanged []string
}

// stackUpdate is a new spec for an existing service.
type stackUpdate struct {
	cur  api.Service
	spec api.ServiceSpec
}

// errNotInStack refuses to take over a service that another stack, or no
// stack, owns.
var errNotInStack = errors.New("service exists outside the stack")

// planStack compares the specs of stack with the services in the cluster
// (all of them). A service whose stored spec already equals its new spec
// (as the leader would store it) is left alone, so its tasks keep running;
// a job is updated all the same, which runs it again.
func planStack(stack string, specs []api.ServiceSpec, all []api.Service, prune bool) (stackPlan, error) {
	var plan stackPlan
	byName := map[string]api.Service{}
	for _, sv := range all {
		byName[sv.Name] = sv
	}
	want := map[string]bool{}
	for _, spec := range specs {
		want[spec.Name] = true
		cur, ok := byName[spec.Name]
		switch {
		case !ok:
			plan.create = append(plan.create, spec)
		case cur.Spec.Labels[compose.StackLabel] != stack:
			return stackPlan{}, fmt.Errorf("%w: %s is not a service of stack %s; remove or rename it first", errNotInStack, spec.Name, stack)
		default:
			// `service update --force` counters are not the file's business.
			spec.ForceUpdate = cur.Spec.ForceUpdate
			// Without --with-registry-auth a service keeps its sealed
			// credentials, as `service update` does.
			if spec.RegistryAuth == nil {
				spec.RegistryAuth = cur.Spec.RegistryAuth
			}
			// A port the file gives no published port ("6379") keeps the
			// one the cluster picked for it, as the leader would: a
			// redeploy of the same file neither moves it nor rolls.
			spec.Ports = api.KeepPublished(cur.Spec.Ports, spec.Ports)
			// A job is left alone only if it is not one: docker's deploy
			// updates every service, and an update of a job runs it
			// again (swarmkit's JobIteration), so a redeploy of the
			// same file re-runs a migration as it does under docker.
			if specsEqual(storedForm(spec), cur.Spec) && !api.IsJob(spec.Mode) {
				plan.unchanged = append(plan.unchanged, spec.Name)
			} else {
				plan.update = append(plan.update, stackUpdate{cur: cur, spec: spec})
			}
		}
	}
	if prune {
		for _, sv := range all {
			if sv.Spec.Labels[compose.StackLabel] == stack && !want[sv.Name] {
				plan.remove = append(plan.remove, sv)
			}
		}
	}
	return plan, nil
}

// storedForm returns spec as the leader stores it: it fills Docker's
// defaults into zero fields (servicespec.Defaults, which the CLI may not
// import), and in particular stores the parallelism of an entirely unset
// update config as 1.
func storedForm(spec api.ServiceSpec) api.ServiceSpec {
	for _, u := range []*api.UpdateConfig{&spec.UpdateConfig, &spec.RollbackConfig} {
		if *u == (api.UpdateConfig{}) {
			u.Parallelism = 1
		}
		if u.Order == "" {
			u.Order = api.OrderStopFirst
		}
		if u.FailureAction == "" {
			u.FailureAction = api.FailurePause
		}
		if u.Monitor == 0 {
			u.Monitor = 5 * time.Second
		}
	}
	if spec.RestartPolicy.Delay == 0 {
		spec.RestartPolicy.Delay = 5 * time.Second
	}
	if spec.StopGracePeriod == 0 {
		spec.StopGracePeriod = 10 * time.Second
	}
	return spec
}

// specsEqual compares two specs as the API carries them, so that a nil and
// an empty list (or map) are the same.
func specsEqual(a, b api.ServiceSpec) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// applyStackPlan carries out a plan: removals first (as docker does, so a
// published port can move to a new service), then updates (one may free a
// port or an alias a new service takes; creations free nothing), then
// creations, the order checkDeploy checked. It records what it creates in
// made, and returns the services it created and updated, for a wait.
func (s *commands) applyStackPlan(ctx context.Context, cl *client.Client, plan stackPlan, made *created) ([]stackChange, error) {
	var changed []stackChange
	for _, sv := range plan.remove {
		fmt.Fprintf(s.Stdout, "Removing service %s\n", sv.Name)
		if err := cl.RemoveService(ctx, sv.ID); err != nil {
			return nil, shell.Wrap("remove service "+sv.Name, err)
		}
	}
	for _, u := range plan.update {
		fmt.Fprintf(s.Stdout, "Updating service %s\n", u.spec.Name)
		if _, err := cl.UpdateService(ctx, u.cur.ID, u.cur.Version, u.spec); err != nil {
			return nil, shell.Wrap("update service "+u.spec.Name, err)
		}
		changed = append(changed, stackChange{u.cur.ID, u.spec.Name, progress.OpUpdate})
	}
	for _, spec := range plan.create {
		fmt.Fprintf(s.Stdout, "Creating service %s\n", spec.Name)
		svc, err := cl.CreateService(ctx, spec)
		if err != nil {
			return nil, shell.Wrap("create service "+spec.Name, err)
		}
		made.add("services", svc.ID, spec.Name)
		changed = append(changed, stackChange{svc.ID, spec.Name, progress.OpCreate})
	}
	for _, name := range plan.unchanged {
		fmt.Fprintf(s.Stdout, "Service %s is up to date\n", name)
	}
	return changed, nil
}

// stackChange is a service a deploy created or updated.
type stackChange struct{ id, name, op string }

// stackInfo is one row of `stack ls`.
type stackInfo struct {
	Name     string `json:"name"`
	Services int    `json:"services"`
}

// fetchStacks counts the services of every stack, by stack name.
func fetchStacks(r shell.ListRun) ([]stackInfo, error) {
	all, err := r.Cl.Services(r.C.Context)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	counts := map[string]int{}
	for _, sv := range all {
		if st := sv.Spec.Labels[compose.StackLabel]; st != "" {
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
func renderStacks(w io.Writer, stacks []stackInfo, _ shell.ListRun) error {
	tw := output.NewTable(w)
	fmt.Fprintln(tw, "NAME\tSERVICES")
	for _, st := range stacks {
		fmt.Fprintf(tw, "%s\t%s\n", st.Name, strconv.Itoa(st.Services))
	}
	return tw.Flush()
}

// fetchStackServices gets the services of the stack named as argument; a
// stack without services is an error, as in docker.
func fetchStackServices(r shell.ListRun) ([]api.Service, error) {
	all, err := r.Cl.Services(r.C.Context)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	list := stackServicesOf(all, r.C.Args().First())
	if len(list) == 0 {
		return nil, fmt.Errorf("nothing found in stack: %s", r.C.Args().First())
	}
	return list, nil
}

// fetchStackTasks gets the tasks of every service of the stack named as
// argument that match the filters, in table order, as `docker stack ps`
// lists them; a stack without services is an error, as in docker.
func fetchStackTasks(r shell.ListRun) ([]output.TaskView, error) {
	svcs, err := fetchStackServices(r)
	if err != nil {
		return nil, err
	}
	var tasks []api.Task
	for _, sv := range svcs {
		ts, err := r.Cl.ServiceTasks(r.C.Context, sv.ID, client.TaskFilter{})
		if err != nil {
			if client.IsNotFound(err) {
				continue // removed since the listing
			}
			return nil, fmt.Errorf("tasks of service %s: %w", sv.Name, err)
		}
		tasks = append(tasks, ts...)
	}
	return output.TaskViews(tasks, r.Filters), nil
}

func (s *commands) stackRm(c *cli.Context) error {
	cl, err := s.Connect(c, 1, -1)
	if err != nil {
		return err
	}
	all, err := cl.ServicesConsistent(c.Context)
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	var failed error
	for _, stack := range c.Args().Slice() {
		list := stackServicesOf(all, stack)
		for _, sv := range list {
			fmt.Fprintf(s.Stdout, "Removing service %s\n", sv.Name)
			if err := cl.RemoveService(c.Context, sv.ID); err != nil {
				failed = fmt.Errorf("remove service %s: %w", sv.Name, err)
				fmt.Fprintf(s.Stderr, "Error: %v\n", failed)
			}
		}
		// A stack whose services are gone (removed by hand) may still
		// have its networks, secrets and configs: they go too, as with
		// docker; "nothing found" only when there is nothing at all.
		n, err := s.removeStackObjects(c.Context, cl, stack)
		if err != nil {
			failed = err
			fmt.Fprintf(s.Stderr, "Error: %v\n", failed)
		} else if n+len(list) == 0 {
			// As docker's: a note, not a failure, so that a teardown
			// script's `stack rm` may run twice.
			fmt.Fprintf(s.Stderr, "Nothing found in stack: %s\n", stack)
		}
	}
	return shell.QuietFailure(failed)
}
