package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/logs"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// logDrain is how long `shoal run` waits for the rest of the output after
// the container exited before it gives up on the log stream.
const logDrain = 2 * time.Second

// runCommand defines `shoal run`.
func (s *commands) runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a one-off container on this node",
		ArgsUsage: "IMAGE [COMMAND [ARG...]]",
		Flags: slices.Concat([]cli.Flag{
			&cli.BoolFlag{Name: "rm", Usage: "remove the container when it exits"},
			&cli.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "print the container ID and return"},
			&cli.StringFlag{Name: "name", Usage: "container name"},
			&cli.StringSliceFlag{Name: "network", Usage: "network to join (repeatable; must be attachable)"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "environment variable K=V"},
			&cli.StringFlag{Name: "memory", Aliases: []string{"m"}, Usage: "memory limit (e.g. 64M)"},
			&cli.StringFlag{Name: "cpus", Usage: "CPU limit (e.g. 0.5)"},
			&cli.StringFlag{Name: "pids-limit", Usage: "maximum number of processes"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user[:group]"},
			&cli.StringFlag{Name: "entrypoint", Usage: "override the image's entrypoint"},
			specflags.MountFlag(),
		}, specflags.HealthFlags("health check command (run by /bin/sh -c)"),
			specflags.LogFlags()),
		Action: s.runContainer,
	}
}

// containerNameRE is the runtime's rule for container names (docker's);
// checked here so that a bad --name is a usage error that says the rule,
// not the runtime's "invalid container spec: bad name".
var containerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// buildRunRequest turns `shoal run` flags and arguments into a request.
func buildRunRequest(c *cli.Context) (api.RunRequest, error) {
	if err := shell.NeedArgs(c, 1, -1); err != nil {
		return api.RunRequest{}, err
	}
	req := api.RunRequest{
		Name:     c.String("name"),
		Image:    c.Args().First(),
		Command:  c.Args().Tail(),
		Workdir:  c.String("workdir"),
		User:     c.String("user"),
		Remove:   c.Bool("rm"),
		Networks: c.StringSlice("network"),
	}
	if len(req.Command) == 0 {
		req.Command = nil
	}
	if req.Name != "" && !containerNameRE.MatchString(req.Name) {
		return req, specflags.UsageErrorf("invalid --name %q: a container name is a letter or digit, then letters, digits, '_', '.' and '-'", req.Name)
	}
	var err error
	if req.Env, err = specflags.SetEnvs(req.Env, c.StringSlice("env")); err != nil {
		return req, specflags.SpecError("env", err)
	}
	if req.Mounts, err = specflags.AddMounts(nil, c.StringSlice("mount")); err != nil {
		return req, specflags.SpecError("mount", err)
	}
	return req, specflags.FirstError(
		specflags.SetParsed(c, "memory", specflags.ParseSize, &req.Limits.MemoryBytes),
		specflags.SetParsed(c, "cpus", specflags.ParseCPUs, &req.Limits.NanoCPUs),
		specflags.SetParsed(c, "pids-limit", specflags.ParsePids, &req.Limits.Pids),
		specflags.SetParsed(c, "entrypoint", specflags.SplitWords, &req.Entrypoint),
		specflags.ApplyHealth(c, &req.Healthcheck),
		specflags.ApplyLogging(c, &req.LogDriver, &req.LogOptions, false),
	)
}

// runContainer is the action of `shoal run`: without -d it streams the output and
// exits with the container's exit code.
func (s *commands) runContainer(c *cli.Context) error {
	req, err := buildRunRequest(c)
	if err != nil {
		return err
	}
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	ctx := c.Context
	// Attached runs remove the container themselves once its output has
	// been read: an agent-side --rm could delete the logs before the
	// stream starts for a short-lived container.
	removeAfter := req.Remove && !c.Bool("detach")
	if removeAfter {
		req.Remove = false
	}
	ct, err := cl.RunContainer(ctx, req)
	if err != nil {
		return runFailed(fmt.Errorf("run %s: %w", req.Image, err))
	}
	if c.Bool("detach") {
		fmt.Fprintln(s.Stdout, ct.ID)
		return nil
	}
	// ctx ends at the CLI's first SIGINT or SIGTERM (main). As docker run's
	// signal proxy, that signal is the container's: it is stopped (its stop
	// signal, SIGTERM, then SIGKILL after the grace period), and the run
	// goes on waiting for its exit, its last output and --rm on a context
	// the signal does not end, and exits with the container's code. Before,
	// the wait was cut at once: the CLI exited 130 and the container ran on,
	// never removed despite --rm.
	interrupted := ctx
	ctx = context.WithoutCancel(ctx)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-interrupted.Done():
		case <-stopped:
			return
		}
		if _, err := cl.StopContainer(ctx, ct.ID, -1); err != nil && !client.IsNotFound(err) {
			fmt.Fprintf(s.Stderr, "Warning: stop %s: %v\n", ct.ID, err)
		}
	}()

	// Stream the output while waiting; the stream normally ends when the
	// container exits, and is cut after logDrain otherwise. A container
	// with --log-driver none keeps no output to stream: the run only waits
	// for its exit code (docker attaches apart from logging; Shoal's output
	// is its logs).
	logCtx, cancelLogs := context.WithCancel(ctx)
	defer cancelLogs()
	logsDone := make(chan error, 1)
	if req.LogDriver == api.LogDriverNone {
		logsDone <- nil
	} else {
		go func() {
			logsDone <- cl.ContainerLogs(logCtx, ct.ID, client.LogOptions{Follow: true}, func(l api.LogLine) error {
				return logs.WriteLine(s.Stdout, s.Stderr, l, "", false)
			})
		}()
	}
	done, err := cl.WaitContainer(ctx, ct.ID)
	if err != nil {
		cancelLogs()
		<-logsDone
		return fmt.Errorf("wait for %s: %w", ct.ID, err)
	}
	select {
	case lerr := <-logsDone:
		if lerr != nil && !errors.Is(lerr, context.Canceled) && !client.IsNotFound(lerr) {
			fmt.Fprintf(s.Stderr, "Warning: logs of %s: %v\n", ct.ID, lerr)
		}
	case <-time.After(logDrain):
		cancelLogs()
		<-logsDone
	}
	if removeAfter {
		if err := cl.RemoveContainer(ctx, ct.ID, true); err != nil && !client.IsNotFound(err) {
			fmt.Fprintf(s.Stderr, "Warning: remove %s: %v\n", ct.ID, err)
		}
	}
	if done.Error != "" && done.ExitCode == 0 {
		return runFailed(fmt.Errorf("container %s: %s", ct.ID, done.Error))
	}
	if done.ExitCode != 0 {
		return &shell.ExitCodeError{Code: done.ExitCode}
	}
	return nil
}

// runFailed is the error of a `shoal run` whose container never ran its
// command (the agent refused the spec: an unknown user, image or network,
// a name in use; or the container could not start): docker run's 125, so
// that a script tells it from the command's own exit code (it was 1, which
// a command may exit with too). A missing command is the init's 127, and
// one that cannot run its 126, as the container's exit code. Ctrl-C stays
// 130.
func runFailed(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return &shell.ExitCodeError{Code: shell.ExitRunFailed, Err: err}
}

// psCommand defines `shoal ps`.
func (s *commands) psCommand() *cli.Command {
	return shell.ListCommand(s.Shell, &cli.Command{
		Name:  "ps",
		Usage: "list containers on this node (tasks included)",
		Flags: []cli.Flag{shell.NoTruncFlag,
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "include stopped containers"}},
	}, shell.Lister[api.Container]{
		Fetch: func(r shell.ListRun) ([]api.Container, error) {
			all, err := r.Cl.Containers(r.C.Context)
			if err != nil {
				return nil, fmt.Errorf("list containers: %w", err)
			}
			var list []api.Container
			for _, ct := range all {
				if r.C.Bool("all") || ct.State == api.ContainerRunning {
					list = append(list, ct)
				}
			}
			return list, nil
		},
		ID: func(x api.Container) string { return x.ID },
		Table: func(w io.Writer, list []api.Container, r shell.ListRun) error {
			return output.RenderContainers(w, list, r.NoTrunc, s.Now())
		},
	})
}

// logsCommand defines `shoal logs`.
func (s *commands) logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the output of a container on this node (container or task name, e.g. web.1)",
		ArgsUsage: "CONTAINER",
		Flags:     logs.Flags(),
		Action: func(c *cli.Context) error {
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
			ref, ts := c.Args().First(), c.Bool("timestamps")
			err = onContainer(c.Context, cl, ref, func(id string) error {
				if opts.Skip {
					_, err := cl.Container(c.Context, id)
					return err
				}
				return cl.ContainerLogs(c.Context, id, opts.LogOptions, func(l api.LogLine) error {
					return logs.WriteLine(s.Stdout, s.Stderr, l, "", ts)
				})
			})
			return logs.StreamErr(c.Context, "logs of "+ref, err)
		},
	}
}

// onContainer runs fn, a request about one container, with ref as the
// user gave it: the agent resolves a container ID, name or ID prefix, or a
// task name of this node (web.1, shop_web.1: node/localapi), in the same
// request, and says in its not-found where a task of another node runs.
//
// An agent older than that resolved task names only for exec and answers
// 404 to `shoal stop web.1`: for a ref that can be a task name (task
// names have a '.'), the CLI then finds the task's container in the
// agent's list itself, by the agent's rule (api.TaskContainer), and runs
// fn once more with its ID. A current agent answers that list only for a
// name it already did not know, with the same not-found.
func onContainer(ctx context.Context, cl *client.Client, ref string, fn func(id string) error) error {
	err := fn(ref)
	if err == nil || !client.IsNotFound(err) || !strings.Contains(ref, ".") {
		return err
	}
	list, lerr := cl.Containers(ctx)
	if lerr != nil {
		return err
	}
	ct, ok := api.TaskContainer(list, ref)
	if !ok {
		return err
	}
	return fn(ct.ID)
}

// stopCommand defines `shoal stop`.
func (s *commands) stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop containers of this node (SIGTERM, then SIGKILL after the timeout; container or task name, e.g. web.1)",
		ArgsUsage: "CONTAINER...",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "time", Aliases: []string{"t"}, Usage: "seconds to wait before killing (default: agent's)"}},
		Action: func(c *cli.Context) error {
			timeout := time.Duration(-1)
			if c.IsSet("time") {
				secs, err := strconv.Atoi(c.String("time"))
				if err != nil || secs < 0 {
					return specflags.UsageErrorf("invalid -t %q: want a number of seconds", c.String("time"))
				}
				timeout = time.Duration(secs) * time.Second
			}
			return s.EachRef(c, "stop", func(cl *client.Client, ref string) error {
				return onContainer(c.Context, cl, ref, func(id string) error {
					_, err := cl.StopContainer(c.Context, id, timeout)
					return err
				})
			})
		},
	}
}

// rmCommand defines `shoal rm`.
func (s *commands) rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove containers of this node (container or task name, e.g. web.1)",
		ArgsUsage: "CONTAINER...",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "kill a running container first"}},
		Action: func(c *cli.Context) error {
			return s.EachRef(c, "remove", func(cl *client.Client, ref string) error {
				return onContainer(c.Context, cl, ref, func(id string) error {
					return cl.RemoveContainer(c.Context, id, c.Bool("force"))
				})
			})
		},
	}
}

// inspectCommand defines `shoal inspect`: docker's, for the containers of
// this node only (services, nodes and the rest have their own inspect).
func (s *commands) inspectCommand() *cli.Command {
	return shell.InspectCommand(s.Shell, &cli.Command{
		Name:      "inspect",
		Usage:     "show containers of this node as JSON (container or task name, e.g. web.1)",
		ArgsUsage: "CONTAINER...",
	}, "container", func(ctx context.Context, cl *client.Client, ref string) (api.Container, error) {
		var ct api.Container
		err := onContainer(ctx, cl, ref, func(id string) (err error) {
			ct, err = shell.Deref(cl.Container(ctx, id))
			return err
		})
		return ct, err
	}, func(ct api.Container) string { return ct.ID })
}
