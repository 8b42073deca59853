package main

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// networkCommand defines `shoal network ...`.
func (s *commands) networkCommand() *cli.Command {
	return &cli.Command{
		Name:  "network",
		Usage: "manage overlay networks",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create an overlay network",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.GenericFlag{Name: "subnet", Value: &oneSubnet{}, Usage: "IPv4 subnet in CIDR form, e.g. 10.50.0.0/16; one smaller than a /19 (down to a /27) gives a /28 of its lower half to each node as it needs one and until the node is removed, so it serves as many nodes as it holds /28s, e.g. 8 for a /24 (default: a free /16 of 10.44.0.0–10.99.0.0)"},
					// docker network create -d overlay NAME is how every
					// Swarm guide makes a network; it was refused as an
					// unknown flag.
					&cli.StringFlag{Name: "driver", Aliases: []string{"d"}, Value: "overlay", Usage: "overlay, the only driver (taken for docker's -d overlay)"},
					&cli.BoolFlag{Name: "internal", Usage: "no way out of the cluster: no route, no DNS forwarding upstream, nothing of the node but its DNS"},
					&cli.BoolFlag{Name: "attachable", Usage: "let 'shoal run --network' containers join it"},
					&cli.BoolFlag{Name: "encrypted", Usage: "encrypt traffic between nodes (WireGuard)"},
				},
				Action: s.networkCreate,
			},
			shell.ListCommand(s.Shell, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list networks",
				Flags:   []cli.Flag{shell.NoTruncFlag},
			}, shell.Lister[api.Network]{
				Fetch: shell.FetchAll("networks", (*client.Client).Networks),
				ID:    networkID,
				Table: func(w io.Writer, ns []api.Network, r shell.ListRun) error {
					return renderNetworks(w, ns, r.NoTrunc)
				},
			}),
			shell.InspectCommand(s.Shell, &cli.Command{
				Name:      "inspect",
				Usage:     "show networks as JSON",
				ArgsUsage: "NETWORK...",
			}, "network", shell.GetOne((*client.Client).Network), networkID),
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove networks no service uses",
				ArgsUsage: "NETWORK...",
				Action:    s.networkRm,
			},
		},
	}
}

func (s *commands) networkCreate(c *cli.Context) error {
	if err := shell.NeedArgs(c, 1, 1); err != nil {
		return err
	}
	if d := c.String("driver"); d != "overlay" {
		return specflags.UsageErrorf("invalid --driver %q: only overlay networks exist", d)
	}
	req := api.Network{Name: c.Args().First(), Internal: c.Bool("internal"), Attachable: c.Bool("attachable"),
		Encrypted: c.Bool("encrypted")}
	if v := c.Generic("subnet").(*oneSubnet).v; v != "" {
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is4() {
			return specflags.UsageErrorf("invalid --subnet %q: want an IPv4 prefix such as 10.50.0.0/16", v)
		}
		req.Subnet = p.String()
	}
	cl, err := s.Connect(c, 1, 1)
	if err != nil {
		return err
	}
	n, err := cl.CreateNetwork(c.Context, req)
	if err != nil {
		return shell.WrapOp("create network", req.Name, err)
	}
	fmt.Fprintln(s.Stdout, n.ID)
	return nil
}

func (s *commands) networkRm(c *cli.Context) error {
	return s.EachRef(c, "remove network", func(cl *client.Client, ref string) error {
		return cl.RemoveNetwork(c.Context, ref)
	})
}

// oneSubnet is the value of network create --subnet. A network has one
// subnet, but docker's --subnet may be given again (dual stack, several
// ranges), and a plain string flag kept the last one silently: the
// network was made with a subnet the user did not see refused. A second
// --subnet is refused instead, before anything is sent.
type oneSubnet struct {
	v   string
	set bool
}

func (o *oneSubnet) Set(v string) error {
	if o.set {
		return fmt.Errorf("given twice (%s, then %s): a network has one IPv4 subnet", o.v, v)
	}
	o.v, o.set = v, true
	return nil
}

func (o *oneSubnet) String() string { return o.v }

// networkID is what -q prints for a network.
func networkID(n api.Network) string { return n.ID }

// renderNetworks draws `network ls`.
func renderNetworks(w io.Writer, ns []api.Network, noTrunc bool) error {
	tw := output.NewTable(w)
	fmt.Fprintln(tw, "NETWORK ID\tNAME\tSUBNET\tVNI\tINTERNAL\tATTACHABLE")
	for _, n := range ns {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%v\t%v\n", output.ShortID(n.ID, noTrunc), n.Name, n.Subnet, n.VNI, n.Internal, n.Attachable)
	}
	return tw.Flush()
}
