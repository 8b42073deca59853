package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// nodeCommand defines `shoal node ls|inspect|rm|update`.
func (s *shell) nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "manage cluster nodes",
		Subcommands: []*cli.Command{
			listCommand(s, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list nodes",
				Flags:   []cli.Flag{noTruncFlag},
			}, lister[api.Node]{
				fetch: func(r listRun) ([]api.Node, error) {
					nodes, err := r.cl.Nodes(r.c.Context)
					if err != nil {
						return nil, fmt.Errorf("list nodes: %w", err)
					}
					return nodes, nil
				},
				id: nodeID,
				table: func(w io.Writer, nodes []api.Node, r listRun) error {
					local := ""
					if st, err := r.cl.Status(r.c.Context); err == nil {
						local = st.NodeID
					}
					return output.RenderNodes(w, nodes, local, r.noTrunc)
				},
			}),
			inspectCommand(s, &cli.Command{
				Name:      "inspect",
				Usage:     "show nodes as JSON",
				ArgsUsage: "NODE...",
			}, "node", func(ctx context.Context, cl *api.Client, id string) (api.Node, error) {
				return deref(cl.Node(ctx, id))
			}, nodeID),
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
				Usage:     "change a node's availability, role or labels",
				ArgsUsage: "NODE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "availability", Usage: "active, pause or drain"},
					&cli.StringFlag{Name: "role", Usage: "manager (may vote and change the cluster) or worker (runs tasks, never votes, its API is read-only)"},
					&cli.StringSliceFlag{Name: "label-add", Usage: "add or update a label (k=v)"},
					&cli.StringSliceFlag{Name: "label-rm", Usage: "remove a label"},
				},
				Action: s.nodeUpdate,
			},
		},
	}
}

// nodeID is what -q prints for a node.
func nodeID(n api.Node) string { return n.ID }

func (s *shell) nodeRm(c *cli.Context) error {
	cl, err := s.connect(c, 1, -1)
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
		return specflags.UsageErrorf("invalid --availability %q: want active, pause or drain", u.Availability)
	}
	u.Role = c.String("role")
	switch u.Role {
	case "", api.RoleManager, api.RoleWorker:
	default:
		return specflags.UsageErrorf("invalid --role %q: want manager or worker", u.Role)
	}
	var err error
	if u.LabelAdd, err = specflags.SetLabels(nil, c.StringSlice("label-add")); err != nil {
		return specflags.SpecError("label-add", err)
	}
	u.LabelRm = c.StringSlice("label-rm")
	if u.Availability == "" && u.Role == "" && u.LabelAdd == nil && len(u.LabelRm) == 0 {
		return specflags.UsageErrorf("nothing to update: give --availability, --role, --label-add or --label-rm")
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
