package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// volumeCommand defines `shoal volume create|ls|inspect|rm`: the named
// volumes of the node whose agent the CLI talks to.
func (s *commands) volumeCommand() *cli.Command {
	volName := func(v api.Volume) string { return v.Name }
	return &cli.Command{
		Name:  "volume",
		Usage: "manage the named volumes of this node",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a volume (a no-op if it exists)",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "driver", Aliases: []string{"d"}, Value: "local", Usage: "local, the only driver (taken for docker's -d local)"},
				},
				Action: func(c *cli.Context) error {
					if err := shell.NeedArgs(c, 1, 1); err != nil {
						return err
					}
					if d := c.String("driver"); d != "local" {
						return specflags.UsageErrorf("invalid --driver %q: only local volumes exist", d)
					}
					name := c.Args().First()
					if p := api.VolumeNameProblem(name); p != "" {
						return specflags.UsageErrorf("invalid volume name %q: %s", name, p)
					}
					cl, err := s.Client(c)
					if err != nil {
						return err
					}
					v, err := cl.CreateVolume(c.Context, name)
					if err != nil {
						return fmt.Errorf("create volume %s: %w", name, err)
					}
					fmt.Fprintln(s.Stdout, v.Name)
					return nil
				},
			},
			shell.ListCommand(s.Shell, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list volumes",
			}, shell.Lister[api.Volume]{
				Fetch: shell.FetchAll("volumes", (*client.Client).Volumes),
				ID:    volName,
				Table: func(w io.Writer, vs []api.Volume, r shell.ListRun) error {
					tw := output.NewTable(w)
					fmt.Fprintln(tw, "NAME\tIN USE\tMOUNTPOINT")
					for _, v := range vs {
						use := "no"
						if v.InUse {
							use = "yes"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, use, v.Mountpoint)
					}
					return tw.Flush()
				},
			}),
			shell.InspectCommand(s.Shell, &cli.Command{
				Name:      "inspect",
				Usage:     "show volumes as JSON",
				ArgsUsage: "NAME...",
			}, "volume", shell.GetOne((*client.Client).Volume), volName),
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove volumes and their data (refused while a container of this node uses one)",
				ArgsUsage: "NAME...",
				Action: func(c *cli.Context) error {
					return s.EachRef(c, "remove volume", func(cl *client.Client, name string) error {
						return cl.RemoveVolume(c.Context, name)
					})
				},
			},
		},
	}
}
