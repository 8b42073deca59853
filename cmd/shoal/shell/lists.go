package shell

// Builders for the list and inspect commands: they share the --format/-q
// flags, the argument check, the agent connection and the output rules
// (output.WriteList, output.WriteInspect); each command only says how to fetch its
// items and how to draw them.

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// ListRun is one invocation of a list command, as fetch and table see it.
type ListRun struct {
	C       *cli.Context
	Cl      *client.Client
	Filters map[string][]string
	NoTrunc bool
}

// Lister is what one list command adds to ListCommand.
type Lister[T any] struct {
	// MinArgs and MaxArgs bound the positional arguments (zero: none).
	MinArgs, MaxArgs int
	// Filters reads and checks the --filter values before the agent is
	// contacted; nil for commands without --filter.
	Filters func(c *cli.Context) (map[string][]string, error)
	// Fetch gets the items; its errors are returned as they are.
	Fetch func(r ListRun) ([]T, error)
	// ID is what -q prints for an item.
	ID func(T) string
	// Table draws the items for humans (no --format, or --format table).
	Table func(w io.Writer, items []T, r ListRun) error
}

// FetchAll is the Fetch of a list of everything of a kind: get is the
// client's list method (e.g. (*client.Client).Images), and its error says
// "list WHAT: ...".
func FetchAll[T any](what string, get func(*client.Client, context.Context) ([]T, error)) func(ListRun) ([]T, error) {
	return func(r ListRun) ([]T, error) {
		items, err := get(r.Cl, r.C.Context)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
		return items, nil
	}
}

// ListCommand completes cmd (name, usage and its own flags) into a list
// command: the output flags come first, then cmd's flags.
func ListCommand[T any](s *Shell, cmd *cli.Command, l Lister[T]) *cli.Command {
	cmd.Flags = append(OutputFlags(), cmd.Flags...)
	cmd.Action = func(c *cli.Context) error {
		if err := NeedArgs(c, l.MinArgs, l.MaxArgs); err != nil {
			return err
		}
		opts, err := OutputOf(c)
		if err != nil {
			return err
		}
		r := ListRun{C: c, NoTrunc: opts.NoTrunc}
		if l.Filters != nil {
			if r.Filters, err = l.Filters(c); err != nil {
				return err
			}
		}
		if r.Cl, err = s.Client(c); err != nil {
			return err
		}
		items, err := l.Fetch(r)
		if err != nil {
			return err
		}
		return output.WriteList(s.Stdout, opts, items, l.ID, func(w io.Writer) error {
			return l.Table(w, items, r)
		})
	}
	return cmd
}

// InspectCommand completes cmd into an inspect command: every argument is
// looked up with get (the first failure ends the command, nothing is
// printed), then printed by output.WriteInspect. what names the kind of object in
// errors ("inspect image X: ...").
func InspectCommand[T any](s *Shell, cmd *cli.Command, what string, get func(ctx context.Context, cl *client.Client, ref string) (T, error), id func(T) string) *cli.Command {
	cmd.Flags = OutputFlags()
	cmd.Action = func(c *cli.Context) error {
		if err := NeedArgs(c, 1, -1); err != nil {
			return err
		}
		opts, err := OutputOf(c)
		if err != nil {
			return err
		}
		cl, err := s.Client(c)
		if err != nil {
			return err
		}
		// As docker: a reference that is not found is an error on stderr
		// (and exit code 1), and the others are printed all the same;
		// several references give a JSON array even if only one was found.
		// Before, the first miss printed nothing at all.
		refs := c.Args().Slice()
		var out []T
		err = s.EachArg(refs, func(ref string) error {
			it, err := get(c.Context, cl, ref)
			if err != nil {
				return fmt.Errorf("inspect %s %s: %w", what, ref, err)
			}
			out = append(out, it)
			return nil
		})
		if len(out) == 0 {
			return err
		}
		if werr := output.WriteInspect(s.Stdout, opts, out, id, len(refs) > 1); werr != nil {
			return werr
		}
		return err
	}
	return cmd
}

// Deref adapts the client's (*T, error) getters to InspectCommand.
func Deref[T any](p *T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, err
	}
	return *p, nil
}

// GetOne is the get of InspectCommand for a client method that answers
// one object by reference (e.g. (*client.Client).Network).
func GetOne[T any](get func(*client.Client, context.Context, string) (*T, error)) func(context.Context, *client.Client, string) (T, error) {
	return func(ctx context.Context, cl *client.Client, ref string) (T, error) {
		return Deref(get(cl, ctx, ref))
	}
}

// TaskListCommand completes cmd (name, usage, arguments) into a task list
// (service ps, stack ps, node ps): one table, one set of --filter keys
// and one JSON row for all three, which differ only in which tasks fetch
// gets and how many arguments they take.
func TaskListCommand(s *Shell, cmd *cli.Command, minArgs, maxArgs int, fetch func(r ListRun) ([]output.TaskView, error)) *cli.Command {
	cmd.Flags = append(cmd.Flags, NoTruncFlag,
		&cli.StringSliceFlag{Name: "filter", Aliases: []string{"f"}, Usage: output.TaskFilterUsage})
	return ListCommand(s, cmd, Lister[output.TaskView]{
		MinArgs: minArgs, MaxArgs: maxArgs,
		Filters: func(c *cli.Context) (map[string][]string, error) {
			return output.ParseTaskFilters(c.StringSlice("filter"))
		},
		Fetch: fetch,
		ID:    func(t output.TaskView) string { return t.ID },
		Table: func(w io.Writer, tasks []output.TaskView, r ListRun) error {
			return output.RenderTaskViews(w, tasks, r.NoTrunc, s.Now())
		},
	})
}

// WithPretty adds docker's --pretty to an inspect command made by
// InspectCommand: each argument is looked up with get and printed by
// render (a human-readable summary), blank lines between them. A Swarm
// user types `service inspect --pretty web` and `node inspect --pretty
// self`; before, both stopped at "flag provided but not defined".
func WithPretty[T any](s *Shell, cmd *cli.Command, what string, get func(ctx context.Context, cl *client.Client, ref string) (T, error), render func(io.Writer, T) error) *cli.Command {
	cmd.Flags = append(cmd.Flags, &cli.BoolFlag{Name: "pretty", Usage: "print a human-readable summary instead of JSON"})
	asJSON := cmd.Action
	cmd.Action = func(c *cli.Context) error {
		if !c.Bool("pretty") {
			return asJSON(c)
		}
		if c.String("format") != "" || c.Bool("quiet") {
			return specflags.UsageErrorf("--pretty cannot be combined with --format or --quiet")
		}
		if err := NeedArgs(c, 1, -1); err != nil {
			return err
		}
		cl, err := s.Client(c)
		if err != nil {
			return err
		}
		// As the JSON inspect: those found are printed, each miss is an
		// error on stderr (exit code 1).
		var out []T
		err = s.EachArg(c.Args().Slice(), func(ref string) error {
			it, err := get(c.Context, cl, ref)
			if err != nil {
				return fmt.Errorf("inspect %s %s: %w", what, ref, err)
			}
			out = append(out, it)
			return nil
		})
		for i, it := range out {
			if i > 0 {
				fmt.Fprintln(s.Stdout)
			}
			if rerr := render(s.Stdout, it); rerr != nil {
				return rerr
			}
		}
		return err
	}
	return cmd
}
