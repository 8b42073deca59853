package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// nodeCommand defines `shoal node ls|ps|inspect|rm|update`.
func (s *commands) nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "manage cluster nodes",
		Subcommands: []*cli.Command{
			shell.ListCommand(s.Shell, &cli.Command{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list nodes",
				Description: "The VERSION column is the release of the node's agent (as gossip last reported it), agent_version\n" +
					"in --format json; the JSON's version is the node record's Raft version, as for every object.",
				Flags: []cli.Flag{shell.NoTruncFlag,
					&cli.StringSliceFlag{Name: "filter", Aliases: []string{"f"}, Usage: "id=PREFIX, name=PREFIX, role=manager|worker, label=KEY or label=KEY=VALUE (repeatable)"}},
			}, shell.Lister[api.Node]{
				Filters: func(c *cli.Context) (map[string][]string, error) { return nodeFilters(c.StringSlice("filter")) },
				Fetch: func(r shell.ListRun) ([]api.Node, error) {
					nodes, err := r.Cl.Nodes(r.C.Context)
					if err != nil {
						return nil, fmt.Errorf("list nodes: %w", err)
					}
					var out []api.Node
					for _, n := range nodes {
						if nodeMatches(n, r.Filters) {
							out = append(out, n)
						}
					}
					return out, nil
				},
				ID: nodeID,
				Table: func(w io.Writer, nodes []api.Node, r shell.ListRun) error {
					local := ""
					if st, err := r.Cl.Status(r.C.Context); err == nil {
						local = st.NodeID
						if st.Joined && st.Leader == "" {
							// docker's node ls refuses without a leader; the
							// replica still answers here, so say what it is.
							fmt.Fprintln(s.Stderr, "Warning: no leader is reachable from this node: the cluster takes no writes, and the statuses below are the last it agreed on")
						}
					}
					return output.RenderNodes(w, nodes, local, r.NoTrunc)
				},
			}),
			shell.TaskListCommand(s.Shell, &cli.Command{
				Name:      "ps",
				Usage:     "list the tasks on nodes (default: the node the CLI talks to)",
				ArgsUsage: "[NODE...]",
			}, 0, -1, fetchNodeTasks),
			shell.WithPretty(s.Shell, shell.InspectCommand(s.Shell, &cli.Command{
				Name:  "inspect",
				Usage: "show nodes as JSON, or as text with --pretty (NODE: ID, ID prefix, hostname or self, the node the CLI talks to)",
				Description: "agent_version is the release of the node's agent (as gossip last reported it; --pretty: Engine Version);\n" +
					"version is the node record's Raft version, as for every object.",
				ArgsUsage: "NODE...",
			}, "node", inspectNode, nodeID), "node", inspectNode, output.RenderNodePretty),
			{
				Name:    "rm",
				Aliases: []string{"remove"},
				Usage:   "remove nodes and revoke their certificates",
				Description: "The removed nodes' tasks are rescheduled on the other nodes; tasks of --at-most-once services only\n" +
					"after their disconnect grace plus their stop grace (a removed node stops them when it hears of its\n" +
					"removal, or when its fence does). Drain a live node first to move them at once.",
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
			{
				Name:      "promote",
				Usage:     "make nodes managers (docker's node promote: node update --role manager)",
				ArgsUsage: "NODE...",
				Action:    func(c *cli.Context) error { return s.nodeSetRole(c, api.RoleManager) },
			},
			{
				Name:      "demote",
				Usage:     "make nodes workers (docker's node demote: node update --role worker)",
				ArgsUsage: "NODE...",
				Action:    func(c *cli.Context) error { return s.nodeSetRole(c, api.RoleWorker) },
			},
		},
	}
}

// nodeSetRole is `node promote` and `node demote`: a Swarm operator's
// words for `node update --role`, on each NODE in turn.
func (s *commands) nodeSetRole(c *cli.Context, role string) error {
	what := map[string]string{api.RoleManager: "promote node", api.RoleWorker: "demote node"}[role]
	err := s.EachRef(c, what, func(cl *client.Client, ref string) error {
		_, err := cl.UpdateNode(c.Context, ref, api.NodeUpdate{Role: role})
		return err
	})
	s.noteVoters(c)
	return err
}

// noteVoters says, after a role change, when the managers are an even
// count: the voters are then one fewer (DESIGN.md: autopilot keeps 1, 3 or
// 5, since an even count survives no more failures than one less). A
// demote in a 3-manager cluster turned a second manager into a
// non-voter, and nothing said so.
func (s *commands) noteVoters(c *cli.Context) {
	cl, err := s.Client(c)
	if err != nil {
		return
	}
	nodes, err := cl.Nodes(c.Context)
	if err != nil {
		return
	}
	if note := voterNote(nodes); note != "" {
		fmt.Fprintln(s.Stderr, note)
	}
}

// voterNote is noteVoters' line for nodes, or "". Pure.
func voterNote(nodes []api.Node) string {
	managers := 0
	for _, n := range nodes {
		if n.Role != api.RoleWorker && n.Status == api.NodeReady {
			managers++
		}
	}
	if managers == 0 || managers%2 == 1 || managers > 5 {
		return ""
	}
	vote := fmt.Sprintf("%d of them vote", managers-1)
	if managers-1 == 1 {
		vote = "only 1 of them votes"
	}
	return fmt.Sprintf("Note: %d ready nodes have the manager role; Shoal keeps an odd number of voters (1, 3 or 5), so %s "+
		"(an even count survives no more failures than one fewer). Promote another node for %d voters.", managers, vote, managers+1)
}

// nodeID is what -q prints for a node.
func nodeID(n api.Node) string { return n.ID }

func (s *commands) nodeRm(c *cli.Context) error {
	return s.EachRef(c, "remove node", func(cl *client.Client, id string) error {
		return cl.RemoveNode(c.Context, id, c.Bool("force"))
	})
}

func (s *commands) nodeUpdate(c *cli.Context) error {
	if err := shell.NeedArgs(c, 1, 1); err != nil {
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
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	id := c.Args().First()
	n, err := cl.UpdateNode(c.Context, id, u)
	if err != nil {
		return fmt.Errorf("update node %s: %w", id, err)
	}
	fmt.Fprintln(s.Stdout, n.ID)
	if u.Role != "" {
		s.noteVoters(c)
	}
	return nil
}

// nodeFilterKeys are the --filter keys of `node ls`: docker's, without
// membership (a Shoal node is a member once it joined).
var nodeFilterKeys = []string{"id", "name", "role", "label", "node.label"}

// nodeFilters reads and checks the --filter values of `node ls`.
func nodeFilters(values []string) (map[string][]string, error) {
	f, err := output.ParseFilters(values, nodeFilterKeys...)
	if err != nil {
		return nil, err
	}
	for _, r := range f["role"] {
		if r != api.RoleManager && r != api.RoleWorker {
			return nil, specflags.UsageErrorf("invalid role filter %q: want manager or worker", r)
		}
	}
	return f, nil
}

// nodeMatches applies `node ls` filters: id and name (the hostname) match
// a prefix, as docker's do; label and node.label (a node has only the one
// kind of labels) match a key, or a key and its value as KEY=VALUE.
func nodeMatches(n api.Node, f map[string][]string) bool {
	role := n.Role
	if role == "" {
		role = api.RoleManager // as the API shows a stored empty role
	}
	label := func(v string) bool {
		k, want, hasValue := strings.Cut(v, "=")
		got, ok := n.Labels[k]
		return ok && (!hasValue || got == want)
	}
	return output.MatchAny(f["id"], func(v string) bool { return strings.HasPrefix(n.ID, v) }) &&
		output.MatchAny(f["name"], func(v string) bool { return strings.HasPrefix(n.Hostname, v) }) &&
		output.MatchAny(f["role"], func(v string) bool { return role == v }) &&
		output.MatchAny(f["label"], label) &&
		output.MatchAny(f["node.label"], label)
}

// fetchNodeTasks gets the tasks on the nodes named as arguments (ID, ID
// prefix or hostname; "self" or none: the node the CLI talks to, as
// docker's default), filtered and in table order.
func fetchNodeTasks(r shell.ListRun) ([]output.TaskView, error) {
	refs := r.C.Args().Slice()
	if len(refs) == 0 {
		refs = []string{"self"}
	}
	var tasks []api.Task
	seen := map[string]bool{}
	for _, ref := range refs {
		id, err := resolveNodeRef(r.C.Context, r.Cl, ref)
		if err != nil {
			return nil, err
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		ts, err := r.Cl.Tasks(r.C.Context, client.TaskFilter{NodeID: id})
		if err != nil {
			return nil, fmt.Errorf("tasks of node %s: %w", ref, err)
		}
		tasks = append(tasks, ts...)
	}
	return output.TaskViews(tasks, r.Filters), nil
}

// resolveNodeRef turns a NODE argument of `node ps` into the node's ID.
func resolveNodeRef(ctx context.Context, cl *client.Client, ref string) (string, error) {
	n, err := nodeByRef(ctx, cl, ref)
	if err != nil {
		return "", fmt.Errorf("node ps %s: %w", ref, err)
	}
	return n.ID, nil
}

// inspectNode is the get of `node inspect`: a node by reference, "self"
// included, as docker's node inspect takes it (`docker node inspect self`
// is how a Swarm operator reads the node they are on; before, it answered
// "no such node: self").
func inspectNode(ctx context.Context, cl *client.Client, ref string) (api.Node, error) {
	return shell.Deref(nodeByRef(ctx, cl, ref))
}

// nodeByRef gets a node by ID, ID prefix or hostname, or "self": the node
// the CLI talks to (docker's node inspect and node ps take it).
func nodeByRef(ctx context.Context, cl *client.Client, ref string) (*api.Node, error) {
	if ref == "self" {
		st, err := cl.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("status of this node: %w", err)
		}
		if st.NodeID == "" || !st.Joined {
			return nil, errors.New("this node is not part of a cluster: name a NODE")
		}
		ref = st.NodeID
	}
	return cl.Node(ctx, ref)
}
