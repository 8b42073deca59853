package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
	"github.com/shoal-org/shoal/node"
)

// uiCommand defines `shoal ui token [--rotate] [--data-dir DIR]`.
//
// The token lives in the agent's data dir (node.UITokenFile, 0600), which
// is root's like the API socket: whoever may read it may already change the
// cluster through the socket. The command works on the file directly, so a
// token can exist before an agent with a non-loopback --ui-addr starts (the
// agent refuses such an address without one); a running agent picks up a
// new or rotated token at its next request.
func (s *commands) uiCommand() *cli.Command {
	return &cli.Command{
		Name:  "ui",
		Usage: "web dashboard (shoal agent --ui-addr)",
		Subcommands: []*cli.Command{{
			Name:  "token",
			Usage: "print the dashboard's token (created on first use)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "data-dir", Value: "/var/lib/shoal", Usage: "the agent's state directory (needed with --host or SHOAL_HOST)"},
				&cli.BoolFlag{Name: "rotate", Usage: "replace the token; the old one stops working"},
			},
			Action: func(c *cli.Context) error {
				if err := shell.NeedArgs(c, 0, 0); err != nil {
					return err
				}
				dir := c.String("data-dir")
				if dir == "" {
					return specflags.UsageErrorf("--data-dir must not be empty")
				}
				// The token is a file of the agent's data dir, not something
				// the socket serves: with --host (or SHOAL_HOST) naming
				// another agent than the default one and no --data-dir, the
				// command used to read or create a token in the default dir,
				// one that agent refuses ("wrong UI token"), and said nothing.
				if !c.IsSet("data-dir") && c.IsSet("host") && c.String("host") != client.DefaultHost {
					return specflags.UsageErrorf("ui token reads the agent's data dir, not its socket (--host %s): give --data-dir DIR, the --data-dir of that agent",
						c.String("host"))
				}
				tok, err := node.EnsureUIToken(dir, c.Bool("rotate"))
				if err != nil {
					return err
				}
				fmt.Fprintln(s.Stdout, tok)
				return nil
			},
		}},
	}
}
