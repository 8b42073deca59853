package main

// `shoal secret` and `shoal config`: the same verbs over two kinds of
// objects. A secret's data is read from a file or stdin, sent to the agent
// and never printed back; a config's data shows in `config inspect`.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// objectKind is what differs between secrets and configs on the CLI.
type objectKind[T any] struct {
	name   string // secret or config
	create func(cl *api.Client, ctx context.Context, req api.SecretCreateRequest) (*T, error)
	list   func(cl *api.Client, ctx context.Context) ([]T, error)
	get    func(cl *api.Client, ctx context.Context, ref string) (*T, error)
	remove func(cl *api.Client, ctx context.Context, ref string) error
	view   func(T) (id, name string, created time.Time)
}

func (s *shell) secretCommand() *cli.Command {
	return objectCommand(s, objectKind[api.Secret]{
		name:   "secret",
		create: (*api.Client).CreateSecret,
		list:   (*api.Client).Secrets,
		get:    (*api.Client).Secret,
		remove: (*api.Client).RemoveSecret,
		view:   func(x api.Secret) (string, string, time.Time) { return x.ID, x.Name, x.CreatedAt },
	}, "manage secrets (stored encrypted; given only to the tasks that use them; never printed back)")
}

func objectCommand[T any](s *shell, k objectKind[T], usage string) *cli.Command {
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
					if err := needArgs(c, 2, 2); err != nil {
						return err
					}
					name, file := c.Args().Get(0), c.Args().Get(1)
					if p := api.ObjectNameProblem(name); p != "" {
						return usageErrorf("invalid %s name %q: %s", k.name, name, p)
					}
					labels, err := setLabels(nil, c.StringSlice("label"))
					if err != nil {
						return specError("label", err)
					}
					data, err := s.readObjectData(file)
					if err != nil {
						return err
					}
					if len(data) > api.MaxSecretSize {
						return fmt.Errorf("%s %s: %s is larger than 500 KiB (%d bytes): nothing was created", k.name, name, file, len(data))
					}
					if len(data) == 0 {
						return fmt.Errorf("%s %s: %s is empty: nothing was created", k.name, name, file)
					}
					cl, err := s.client(c)
					if err != nil {
						return err
					}
					x, err := k.create(cl, c.Context, api.SecretCreateRequest{Name: name, Data: data, Labels: labels})
					if err != nil {
						return err
					}
					fmt.Fprintln(s.stdout, id(*x))
					return nil
				},
			},
			listCommand(s, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list " + k.name + "s",
				Flags:   []cli.Flag{noTruncFlag},
			}, lister[T]{
				fetch: func(r listRun) ([]T, error) {
					xs, err := k.list(r.cl, r.c.Context)
					if err != nil {
						return nil, fmt.Errorf("list %ss: %w", k.name, err)
					}
					return xs, nil
				},
				id: id,
				table: func(w io.Writer, xs []T, r listRun) error {
					tw := newTable(w)
					fmt.Fprintln(tw, "ID\tNAME\tCREATED")
					now := time.Now()
					for _, x := range xs {
						i, n, created := k.view(x)
						fmt.Fprintf(tw, "%s\t%s\t%s\n", shortID(i, r.noTrunc), n, humanAgo(now.Sub(created)))
					}
					return tw.Flush()
				},
			}),
			inspectCommand(s, &cli.Command{
				Name:      "inspect",
				Usage:     "show " + k.name + "s as JSON",
				ArgsUsage: "NAME...",
			}, k.name, func(ctx context.Context, cl *api.Client, ref string) (T, error) {
				return deref(k.get(cl, ctx, ref))
			}, id),
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove " + k.name + "s no service uses",
				ArgsUsage: "NAME...",
				Action: func(c *cli.Context) error {
					cl, err := s.connect(c, 1, -1)
					if err != nil {
						return err
					}
					return s.eachArg(c.Args().Slice(), func(ref string) error {
						if err := k.remove(cl, c.Context, ref); err != nil {
							return fmt.Errorf("remove %s %s: %w", k.name, ref, err)
						}
						fmt.Fprintln(s.stdout, ref)
						return nil
					})
				},
			},
		},
	}
}

// readObjectData reads a secret or config from a file or stdin, at most
// one byte past the limit (so an oversized one is told apart).
func (s *shell) readObjectData(file string) ([]byte, error) {
	in, err := s.openInput(file)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	data, err := io.ReadAll(io.LimitReader(in, api.MaxSecretSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return data, nil
}

// parseFileRef parses --secret/--config: NAME, or
// source=NAME[,target=T][,mode=0400][,uid=U][,gid=G] (src, dst as
// Docker's aliases).
func parseFileRef(v string, secret bool) (api.FileReference, error) {
	var r api.FileReference
	if !strings.Contains(v, "=") {
		r.Source = v
	} else {
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			if !ok {
				return r, fmt.Errorf("%q: want key=value", kv)
			}
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "source", "src":
				r.Source = val
			case "target", "dst", "destination":
				r.Target = val
			case "mode":
				m, err := strconv.ParseUint(val, 8, 32)
				if err != nil {
					return r, fmt.Errorf("mode %q: want an octal number such as 0400", val)
				}
				r.Mode = uint32(m)
			case "uid", "gid":
				n, err := strconv.ParseUint(val, 10, 32)
				if err != nil {
					return r, fmt.Errorf("%s %q: want a number", k, val)
				}
				if k == "uid" {
					r.UID = uint32(n)
				} else {
					r.GID = uint32(n)
				}
			default:
				return r, fmt.Errorf("unknown key %q (want source, target, mode, uid, gid)", k)
			}
		}
	}
	if p := api.FileReferenceProblem(r, secret); p != "" {
		return r, errors.New(p)
	}
	return r, nil
}

// addFileRefs adds parsed references to refs, replacing one with the same
// target.
func addFileRefs(refs []api.FileReference, values []string, secret bool) ([]api.FileReference, error) {
	target := api.ConfigTarget
	if secret {
		target = api.SecretTarget
	}
	for _, v := range values {
		r, err := parseFileRef(v, secret)
		if err != nil {
			return refs, err
		}
		refs = slices.DeleteFunc(refs, func(x api.FileReference) bool { return target(x) == target(r) })
		refs = append(refs, r)
	}
	return refs, nil
}

// removeFileRefs drops the references to the named secrets or configs.
func removeFileRefs(refs []api.FileReference, names []string) []api.FileReference {
	return slices.DeleteFunc(refs, func(x api.FileReference) bool { return slices.Contains(names, x.Source) })
}
