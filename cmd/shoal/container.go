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
		}, specflags.HealthFlags("health check command (run by /bin/sh -c)")),
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
		return fmt.Errorf("run %s: %w", req.Image, err)
	}
	if c.Bool("detach") {
		fmt.Fprintln(s.Stdout, ct.ID)
		return nil
	}

	// Stream the output while waiting; the stream normally ends when the
	// container exits, and is cut after logDrain otherwise.
	logCtx, cancelLogs := context.WithCancel(ctx)
	defer cancelLogs()
	logsDone := make(chan error, 1)
	go func() {
		logsDone <- cl.ContainerLogs(logCtx, ct.ID, client.LogOptions{Follow: true}, func(l api.LogLine) error {
			return logs.WriteLine(s.Stdout, s.Stderr, l, "", false)
		})
	}()
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
		return fmt.Errorf("container %s: %s", ct.ID, done.Error)
	}
	if done.ExitCode != 0 {
		return &shell.ExitCodeError{Code: done.ExitCode}
	}
	return nil
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
			id, err := containerTarget(c.Context, cl, c.Args().First())
			if err != nil {
				return fmt.Errorf("logs of %s: %w", c.Args().First(), err)
			}
			if opts.Skip {
				_, err := cl.Container(c.Context, id)
				return err
			}
			ts := c.Bool("timestamps")
			err = cl.ContainerLogs(c.Context, id, opts.LogOptions, func(l api.LogLine) error {
				return logs.WriteLine(s.Stdout, s.Stderr, l, "", ts)
			})
			return logs.StreamErr(c.Context, "logs of "+id, err)
		},
	}
}

// containerTarget finds the container that `shoal logs`, `stop`, `rm` and
// `inspect` act on: a container ID, name or ID prefix as the agent knows
// it, or else a task name (web.1, shop_web.1) of a task container on this
// node, its newest (running first), as `shoal exec web.1` takes one.
// Before, only exec (and then logs) found web.1: `shoal stop web.1`
// answered "no such container: web.1". The error is the agent's own
// not-found when neither matches.
func containerTarget(ctx context.Context, cl *client.Client, ref string) (string, error) {
	_, err := cl.Container(ctx, ref)
	if err == nil || !client.IsNotFound(err) {
		return ref, err
	}
	cs, lerr := cl.Containers(ctx)
	if lerr != nil {
		return ref, err
	}
	var best *api.Container
	for i, x := range cs {
		// Task containers are named TASKNAME.TASKID-PREFIX.
		rest, ok := strings.CutPrefix(x.Name, ref+".")
		if !ok || rest == "" || strings.Contains(rest, ".") || x.TaskID == "" {
			continue
		}
		if best == nil || betterTarget(x, *best) {
			best = &cs[i]
		}
	}
	if best == nil {
		return ref, shell.RunsElsewhere(ctx, cl, ref, err)
	}
	return best.ID, nil
}

// betterTarget prefers a running container, then the newest.
func betterTarget(x, than api.Container) bool {
	xr, tr := x.State == api.ContainerRunning, than.State == api.ContainerRunning
	if xr != tr {
		return xr
	}
	return x.CreatedAt.After(than.CreatedAt)
}

// stopCommand defines `shoal stop`.
func (s *commands) stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop containers of this node (SIGTERM, then SIGKILL after the timeout; container or task name, e.g. web.1)",
		ArgsUsage: "CONTAINER...",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "time", Aliases: []string{"t"}, Usage: "seconds to wait before killing (default: agent's)"}},
		Action: func(c *cli.Context) error {
			if err := shell.NeedArgs(c, 1, -1); err != nil {
				return err
			}
			timeout := time.Duration(-1)
			if c.IsSet("time") {
				secs, err := strconv.Atoi(c.String("time"))
				if err != nil || secs < 0 {
					return specflags.UsageErrorf("invalid -t %q: want a number of seconds", c.String("time"))
				}
				timeout = time.Duration(secs) * time.Second
			}
			cl, err := s.Client(c)
			if err != nil {
				return err
			}
			return s.EachArg(c.Args().Slice(), func(ref string) error {
				id, err := containerTarget(c.Context, cl, ref)
				if err == nil {
					_, err = cl.StopContainer(c.Context, id, timeout)
				}
				if err != nil {
					return fmt.Errorf("stop %s: %w", ref, err)
				}
				fmt.Fprintln(s.Stdout, ref)
				return nil
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
			cl, err := s.Connect(c, 1, -1)
			if err != nil {
				return err
			}
			return s.EachArg(c.Args().Slice(), func(ref string) error {
				id, err := containerTarget(c.Context, cl, ref)
				if err == nil {
					err = cl.RemoveContainer(c.Context, id, c.Bool("force"))
				}
				if err != nil {
					return fmt.Errorf("remove %s: %w", ref, err)
				}
				fmt.Fprintln(s.Stdout, ref)
				return nil
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
		id, err := containerTarget(ctx, cl, ref)
		if err != nil {
			return api.Container{}, err
		}
		return shell.Deref(cl.Container(ctx, id))
	}, func(ct api.Container) string { return ct.ID })
}
