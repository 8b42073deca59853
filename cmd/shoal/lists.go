package main

// Builders for the list and inspect commands: they share the --format/-q
// flags, the argument check, the agent connection and the output rules
// (output.WriteList, output.WriteInspect); each command only says how to fetch its
// items and how to draw them.

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/output"
)

// listRun is one invocation of a list command, as fetch and table see it.
type listRun struct {
	c       *cli.Context
	cl      *api.Client
	filters map[string][]string
	noTrunc bool
}

// lister is what one list command adds to listCommand.
type lister[T any] struct {
	// minArgs and maxArgs bound the positional arguments (zero: none).
	minArgs, maxArgs int
	// filters reads and checks the --filter values before the agent is
	// contacted; nil for commands without --filter.
	filters func(c *cli.Context) (map[string][]string, error)
	// fetch gets the items; its errors are returned as they are.
	fetch func(r listRun) ([]T, error)
	// id is what -q prints for an item.
	id func(T) string
	// table draws the items for humans (no --format, or --format table).
	table func(w io.Writer, items []T, r listRun) error
}

// listCommand completes cmd (name, usage and its own flags) into a list
// command: the output flags come first, then cmd's flags.
func listCommand[T any](s *shell, cmd *cli.Command, l lister[T]) *cli.Command {
	cmd.Flags = append(outputFlags(), cmd.Flags...)
	cmd.Action = func(c *cli.Context) error {
		if err := needArgs(c, l.minArgs, l.maxArgs); err != nil {
			return err
		}
		opts, err := outputOf(c)
		if err != nil {
			return err
		}
		r := listRun{c: c, noTrunc: opts.NoTrunc}
		if l.filters != nil {
			if r.filters, err = l.filters(c); err != nil {
				return err
			}
		}
		if r.cl, err = s.client(c); err != nil {
			return err
		}
		items, err := l.fetch(r)
		if err != nil {
			return err
		}
		return output.WriteList(s.stdout, opts, items, l.id, func(w io.Writer) error {
			return l.table(w, items, r)
		})
	}
	return cmd
}

// inspectCommand completes cmd into an inspect command: every argument is
// looked up with get (the first failure ends the command, nothing is
// printed), then printed by output.WriteInspect. what names the kind of object in
// errors ("inspect image X: ...").
func inspectCommand[T any](s *shell, cmd *cli.Command, what string, get func(ctx context.Context, cl *api.Client, ref string) (T, error), id func(T) string) *cli.Command {
	cmd.Flags = outputFlags()
	cmd.Action = func(c *cli.Context) error {
		if err := needArgs(c, 1, -1); err != nil {
			return err
		}
		opts, err := outputOf(c)
		if err != nil {
			return err
		}
		cl, err := s.client(c)
		if err != nil {
			return err
		}
		var out []T
		for _, ref := range c.Args().Slice() {
			it, err := get(c.Context, cl, ref)
			if err != nil {
				return fmt.Errorf("inspect %s %s: %w", what, ref, err)
			}
			out = append(out, it)
		}
		return output.WriteInspect(s.stdout, opts, out, id)
	}
	return cmd
}

// deref adapts the client's (*T, error) getters to inspectCommand.
func deref[T any](p *T, err error) (T, error) {
	if err != nil {
		var zero T
		return zero, err
	}
	return *p, nil
}
