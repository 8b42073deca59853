package main

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// nodeCommand defines `shoal node ls|inspect|rm|update`.
func (s *shell) nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "manage cluster nodes",
		Subcommands: []*cli.Command{
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list nodes",
				Flags:   append(outputFlags(), noTruncFlag),
				Action:  s.nodeLs,
			},
			{
				Name:      "inspect",
				Usage:     "show nodes as JSON",
				ArgsUsage: "NODE...",
				Flags:     outputFlags(),
				Action:    s.nodeInspect,
			},
			{
				Name:      "rm",
				Aliases:   []string{"remove"},
				Usage:     "remove nodes and revoke their certificates",
				ArgsUsage: "NODE...",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "remove a node that is still up"}},
				Action:    s.nodeRm,
			},
			{
				Name:      "update",
				Usage:     "change a node's availability or labels",
				ArgsUsage: "NODE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "availability", Usage: "active, pause or drain"},
					&cli.StringSliceFlag{Name: "label-add", Usage: "add or update a label (k=v)"},
					&cli.StringSliceFlag{Name: "label-rm", Usage: "remove a label"},
				},
				Action: s.nodeUpdate,
			},
		},
	}
}

func (s *shell) nodeLs(c *cli.Context) error {
	if err := needArgs(c, 0, 0); err != nil {
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
	nodes, err := cl.Nodes(c.Context)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	return writeList(s.stdout, opts, nodes, func(n api.Node) string { return n.ID }, func(w io.Writer) error {
		local := ""
		if st, err := cl.Status(c.Context); err == nil {
			local = st.NodeID
		}
		return renderNodes(w, nodes, local, opts.noTrunc)
	})
}

func (s *shell) nodeInspect(c *cli.Context) error {
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
	var out []api.Node
	for _, id := range c.Args().Slice() {
		n, err := cl.Node(c.Context, id)
		if err != nil {
			return fmt.Errorf("inspect node %s: %w", id, err)
		}
		out = append(out, *n)
	}
	return writeInspect(s.stdout, opts, out, func(n api.Node) string { return n.ID })
}

func (s *shell) nodeRm(c *cli.Context) error {
	if err := needArgs(c, 1, -1); err != nil {
		return err
	}
	cl, err := s.client(c)
	if err != nil {
		return err
	}
	return s.eachArg(c.Args().Slice(), func(id string) error {
		if err := cl.RemoveNode(c.Context, id, c.Bool("force")); err != nil {
			return fmt.Errorf("remove node %s: %w", id, err)
		}
		fmt.Fprintln(s.stdout, id)
		return nil
	})
}

func (s *shell) nodeUpdate(c *cli.Context) error {
	if err := needArgs(c, 1, 1); err != nil {
		return err
	}
	u := api.NodeUpdate{Availability: c.String("availability")}
	switch u.Availability {
	case "", api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
	default:
		return usageErrorf("invalid --availability %q: want active, pause or drain", u.Availability)
	}
	for _, l := range c.StringSlice("label-add") {
		k, v, err := parseLabel(l)
		if err != nil {
			return &usageError{err: fmt.Errorf("--label-add: %w", err)}
		}
		if u.LabelAdd == nil {
			u.LabelAdd = map[string]string{}
		}
		u.LabelAdd[k] = v
	}
	u.LabelRm = c.StringSlice("label-rm")
	if u.Availability == "" && u.LabelAdd == nil && len(u.LabelRm) == 0 {
		return usageErrorf("nothing to update: give --availability, --label-add or --label-rm")
	}
	cl, err := s.client(c)
	if err != nil {
		return err
	}
	id := c.Args().First()
	n, err := cl.UpdateNode(c.Context, id, u)
	if err != nil {
		return fmt.Errorf("update node %s: %w", id, err)
	}
	fmt.Fprintln(s.stdout, n.ID)
	return nil
}
