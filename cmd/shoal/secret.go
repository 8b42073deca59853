package main

// `shoal secret` and `shoal config`: the same verbs over two kinds of
// objects. A secret's data is read from a file or stdin, sent to the agent
// and never printed back; a config's data shows in `config inspect`.

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// objectKind is what differs between secrets and configs on the CLI.
type objectKind[T any] struct {
	name   string // secret or config
	create func(cl *client.Client, ctx context.Context, req api.SecretCreateRequest) (*T, error)
	list   func(cl *client.Client, ctx context.Context) ([]T, error)
	get    func(cl *client.Client, ctx context.Context, ref string) (*T, error)
	remove func(cl *client.Client, ctx context.Context, ref string) error
	view   func(T) (id, name string, created time.Time)
}

func (s *commands) secretCommand() *cli.Command {
	return objectCommand(s, objectKind[api.Secret]{
		name:   "secret",
		create: (*client.Client).CreateSecret,
		list:   (*client.Client).Secrets,
		get:    (*client.Client).Secret,
		remove: (*client.Client).RemoveSecret,
		view:   func(x api.Secret) (string, string, time.Time) { return x.ID, x.Name, x.CreatedAt },
	}, "manage secrets (stored encrypted; given only to the tasks that use them; never printed back)")
}

func objectCommand[T any](s *commands, k objectKind[T], usage string) *cli.Command {
	id := func(x T) string { i, _, _ := k.view(x); return i }
	return &cli.Command{
		Name:  k.name,
		Usage: usage,
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     fmt.Sprintf("create a %s from a file (- for stdin), at most 500 KiB", k.name),
				ArgsUsage: "NAME FILE|-",
				Flags:     []cli.Flag{&cli.StringSliceFlag{Name: "label", Aliases: []string{"l"}, Usage: "label k=v (repeatable)"}},
				Action: func(c *cli.Context) error {
					if err := shell.NeedArgs(c, 2, 2); err != nil {
						return err
					}
					name, file := c.Args().Get(0), c.Args().Get(1)
					if p := api.ObjectNameProblem(name); p != "" {
						return specflags.UsageErrorf("invalid %s name %q: %s", k.name, name, p)
					}
					labels, err := specflags.SetLabels(nil, c.StringSlice("label"))
					if err != nil {
						return specflags.SpecError("label", err)
					}
					data, err := s.readObjectData(c.Context, file)
					if err != nil {
						return err
					}
					if len(data) > api.MaxSecretSize {
						return fmt.Errorf("%s %s: %s is larger than 500 KiB (%d bytes): nothing was created", k.name, name, file, len(data))
					}
					if len(data) == 0 {
						return fmt.Errorf("%s %s: %s is empty: nothing was created", k.name, name, file)
					}
					cl, err := s.Client(c)
					if err != nil {
						return err
					}
					x, err := k.create(cl, c.Context, api.SecretCreateRequest{Name: name, Data: data, Labels: labels})
					if err != nil {
						return shell.WrapOp("create "+k.name, name, err)
					}
					fmt.Fprintln(s.Stdout, id(*x))
					return nil
				},
			},
			shell.ListCommand(s.Shell, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list " + k.name + "s",
				Flags:   []cli.Flag{shell.NoTruncFlag},
			}, shell.Lister[T]{
				Fetch: shell.FetchAll(k.name+"s", k.list),
				ID:    id,
				Table: func(w io.Writer, xs []T, r shell.ListRun) error {
					tw := output.NewTable(w)
					fmt.Fprintln(tw, "ID\tNAME\tCREATED")
					now := time.Now()
					for _, x := range xs {
						i, n, created := k.view(x)
						fmt.Fprintf(tw, "%s\t%s\t%s\n", output.ShortID(i, r.NoTrunc), n, output.HumanAgo(now.Sub(created)))
					}
					return tw.Flush()
				},
			}),
			shell.InspectCommand(s.Shell, &cli.Command{
				Name:      "inspect",
				Usage:     "show " + k.name + "s as JSON",
				ArgsUsage: "NAME...",
			}, k.name, shell.GetOne(k.get), id),
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove " + k.name + "s no service uses",
				ArgsUsage: "NAME...",
				Action: func(c *cli.Context) error {
					return s.EachRef(c, "remove "+k.name, func(cl *client.Client, ref string) error {
						return k.remove(cl, c.Context, ref)
					})
				},
			},
		},
	}
}

// readObjectData reads a secret or config from a file or stdin, at most
// one byte past the limit (so an oversized one is told apart); Ctrl-C ends
// a read that blocks (shell.ReadInput).
func (s *commands) readObjectData(ctx context.Context, file string) ([]byte, error) {
	return s.ReadInput(ctx, file, api.MaxSecretSize+1)
}
