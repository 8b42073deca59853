// Package cluster is the commands of the cluster as a whole: `shoal init`
// (also from a snapshot), `join`, `token`, `ca rotate`, `leave`, `status`
// and `snapshot save|restore` (snapshot.go).
package cluster

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
)

// commands are the actions of the cluster commands, on the shared shell.
type commands struct{ *shell.Shell }

// Commands defines `shoal init`, `join`, `token`, `ca`, `snapshot`, `leave`
// and `status`, in that order.
func Commands(sh *shell.Shell) []*cli.Command {
	s := &commands{sh}
	return []*cli.Command{
		s.initCommand(),
		s.joinCommand(),
		s.tokenCommand(),
		s.caCommand(),
		s.snapshotCommand(),
		s.leaveCommand(),
		s.statusCommand(),
		s.versionCommand(),
	}
}

// initCommand defines `shoal init`.
func (s *commands) initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "bootstrap a new cluster on this node and print the join command",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Usage: "json"},
			&cli.StringFlag{Name: "from-snapshot", Usage: "start the cluster with the services of a `FILE` written by `shoal snapshot save` (a new cluster identity: nodes join with the new token)"},
		},
		Action: func(c *cli.Context) error {
			cl, err := s.Connect(c, 0, 0)
			if err != nil {
				return err
			}
			var r *api.InitResponse
			var restored *api.SnapshotRestoreResponse
			if path := c.String("from-snapshot"); path != "" {
				f, err := os.Open(path)
				if err != nil {
					return fmt.Errorf("init: %w", err)
				}
				defer f.Close()
				rr, err := cl.InitFromSnapshot(c.Context, f)
				if err != nil {
					return fmt.Errorf("init: %w", err)
				}
				if c.String("format") == "json" {
					return output.WriteJSON(s.Stdout, rr)
				}
				r, restored = &rr.InitResponse, &rr.Restore
			} else if r, err = cl.Init(c.Context); err != nil {
				return fmt.Errorf("init: %w", err)
			}
			if c.String("format") == "json" {
				return output.WriteJSON(s.Stdout, r)
			}
			fmt.Fprintf(s.Stdout, "Cluster %s initialized: current node (%s) is now a voter.\n\n", r.ClusterID, r.NodeID)
			if restored != nil {
				fmt.Fprintf(s.Stdout, "Its services come from the snapshot of cluster %s: %s. Their tasks start on the nodes that join; load their images where the old cluster had them.\n\n",
					restored.FileClusterID, strings.Join(restored.Services, ", "))
			}
			join := r.JoinCommand
			if join == "" {
				join = "shoal join --token " + r.Token + " THIS-NODE-IP:2377"
			}
			fmt.Fprintf(s.Stdout, "To add a node to this cluster, run the following command on it:\n\n    %s\n\n", join)
			return nil
		},
	}
}

// joinCommand defines `shoal join --token T HOST:PORT`.
func (s *commands) joinCommand() *cli.Command {
	return &cli.Command{
		Name:      "join",
		Usage:     "join this node to an existing cluster",
		ArgsUsage: "HOST:PORT",
		Flags:     []cli.Flag{&cli.StringFlag{Name: "token", Usage: "join token (see 'shoal token')"}},
		Action: func(c *cli.Context) error {
			if err := shell.NeedArgs(c, 1, 1); err != nil {
				return err
			}
			if err := shell.RequireFlags(c, "token"); err != nil {
				return err
			}
			addr := c.Args().First()
			if !strings.Contains(addr, ":") {
				addr += ":2377"
			}
			cl, err := s.Client(c)
			if err != nil {
				return err
			}
			st, err := cl.Join(c.Context, api.JoinRequest{Token: c.String("token"), Addr: addr})
			if err != nil {
				return joinErr(addr, err)
			}
			fmt.Fprintf(s.Stdout, "This node (%s) joined cluster %s.\n", st.NodeID, st.ClusterID)
			return nil
		},
	}
}

// tokenCommand defines `shoal token [--rotate]`: the token alone on stdout.
func (s *commands) tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "print (or rotate) the join token",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "rotate", Usage: "replace the token; the old one stops working"},
			// docker swarm join-token -q: the token alone, which is all
			// `shoal token` prints; accepted so the Swarm habit (and
			// scripts written for it) work instead of "flag provided but
			// not defined".
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only print the token (as without it; docker's join-token -q)"},
		},
		Action: func(c *cli.Context) error {
			cl, err := s.Connect(c, 0, 0)
			if err != nil {
				return err
			}
			get := cl.Token
			if c.Bool("rotate") {
				get = cl.RotateToken
			}
			r, err := get(c.Context)
			if err != nil {
				return fmt.Errorf("token: %w", err)
			}
			fmt.Fprintln(s.Stdout, r.Token)
			return nil
		},
	}
}

// caCommand defines `shoal ca rotate`: a new cluster CA, every node's
// certificate re-issued without downtime; prints the new join token.
func (s *commands) caCommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "manage the cluster certificate authority",
		Subcommands: []*cli.Command{{
			Name:  "rotate",
			Usage: "replace the cluster CA and re-issue every node's certificate (the join token changes)",
			Flags: []cli.Flag{
				&cli.DurationFlag{Name: "wait", Value: time.Minute, Usage: "how long to wait for every node to get a new certificate"},
				&cli.StringFlag{Name: "format", Usage: "json"},
			},
			Action: func(c *cli.Context) error {
				if err := shell.NeedArgs(c, 0, 0); err != nil {
					return err
				}
				cl, err := s.Connect(c, 0, 0)
				if err != nil {
					return err
				}
				r, err := cl.RotateCA(c.Context, c.Duration("wait"))
				if err != nil {
					return fmt.Errorf("ca rotate: %w", err)
				}
				if c.String("format") == "json" {
					return output.WriteJSON(s.Stdout, r)
				}
				if r.Complete {
					fmt.Fprintf(s.Stdout, "CA rotated: every node has a certificate from the new CA (%s).\n", r.CAFingerprint)
				} else {
					fmt.Fprintf(s.Stdout, "CA rotation under way (new CA %s): still waiting for %s; the old CA stays trusted until they renew.\n",
						r.CAFingerprint, strings.Join(r.Pending, ", "))
				}
				fmt.Fprintf(s.Stdout, "The join token changed:\n\n    %s\n\n", r.JoinCommand)
				return nil
			},
		}},
	}
}

// leaveCommand defines `shoal leave`.
func (s *commands) leaveCommand() *cli.Command {
	return &cli.Command{
		Name:  "leave",
		Usage: "make this node leave its cluster",
		Description: "The cluster reschedules this node's tasks on the other nodes. A node running tasks of --at-most-once\n" +
			"services is drained first and leaves once it has stopped them (at most their stop grace plus 10s), so\n" +
			"they start elsewhere at once; should the leave then fail, the node stays drained\n" +
			"(shoal node update --availability active NODE undoes it).",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "leave even when this node is the cluster's only member (which erases the cluster)"}},
		Action: func(c *cli.Context) error {
			cl, err := s.Connect(c, 0, 0)
			if err != nil {
				return err
			}
			if err := cl.Leave(c.Context, c.Bool("force")); err != nil {
				return fmt.Errorf("leave: %w", err)
			}
			fmt.Fprintln(s.Stdout, "Node left the cluster.")
			return nil
		},
	}
}

// statusCommand defines `shoal status`.
func (s *commands) statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the cluster as this node sees it",
		Flags: []cli.Flag{&cli.StringFlag{Name: "format", Usage: "json or a Go template"}},
		Action: func(c *cli.Context) error {
			cl, err := s.Connect(c, 0, 0)
			if err != nil {
				return err
			}
			st, err := cl.Status(c.Context)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			if f := c.String("format"); f != "" {
				return output.WriteInspect(s.Stdout, output.Opts{Format: f}, []api.Status{*st}, func(x api.Status) string { return x.NodeID }, false)
			}
			return renderStatus(s, st)
		},
	}
}

// VersionInfo is `shoal version --format json`: this CLI's release and
// the release of the agent it talks to.
type VersionInfo struct {
	Client string `json:"client"`
	Agent  string `json:"agent"`
}

// versionCommand defines `shoal version`, docker version's two halves:
// during a rolling upgrade the CLI and the agent it talks to may run
// different releases, and `shoal --version` shows only the CLI's. Before,
// `shoal version` was an unknown command. An agent that does not answer
// is an error after the client's line; an agent older than the status
// field shows "unknown".
func (s *commands) versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "show the version of this CLI and of the agent it talks to",
		Flags: []cli.Flag{&cli.StringFlag{Name: "format", Usage: "json or a Go template"}},
		Action: func(c *cli.Context) error {
			if err := shell.NeedArgs(c, 0, 0); err != nil {
				return err
			}
			v := VersionInfo{Client: c.App.Version}
			cl, err := s.Connect(c, 0, 0)
			var st *api.Status
			if err == nil {
				st, err = cl.Status(c.Context)
			}
			if err != nil {
				if c.String("format") == "" {
					fmt.Fprintf(s.Stdout, "Client:  %s\n", v.Client)
				}
				return fmt.Errorf("version: the agent did not answer: %w", err)
			}
			v.Agent = cmp.Or(st.AgentVersion, "unknown")
			if f := c.String("format"); f != "" {
				return output.WriteInspect(s.Stdout, output.Opts{Format: f}, []VersionInfo{v}, func(VersionInfo) string { return "" }, false)
			}
			fmt.Fprintf(s.Stdout, "Client:  %s\nAgent:   %s (%s)\n", v.Client, v.Agent, st.Hostname)
			return nil
		},
	}
}

// renderStatus prints `shoal status` for humans.
func renderStatus(s *commands, st *api.Status) error {
	tw := output.NewTable(s.Stdout)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	if !st.Joined {
		row("Cluster", "none (run `shoal init` or `shoal join`)")
	} else {
		row("Cluster", st.ClusterID)
	}
	row("Node", fmt.Sprintf("%s (%s, %s)", st.NodeID, st.Hostname, st.Addr))
	if st.Joined {
		leader := st.Leader
		if st.LeaderAddr != "" {
			leader += " (" + st.LeaderAddr + ")"
		}
		row("Leader", leader)
		row("Voters", strings.Join(st.Voters, ", "))
		row("Voter", fmt.Sprint(st.Voter))
		row("Raft state", st.RaftState)
		row("Last index", fmt.Sprint(st.LastIndex))
		row("Members", fmt.Sprint(st.Members))
	}
	return tw.Flush()
}

// joinErr names the address of a failed join once: the agent's own
// answers already start "join ADDR: " (node/joining), and wrapping them
// again read "join ADDR: join ADDR: connect to ADDR: ...".
func joinErr(addr string, err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) && strings.HasPrefix(ae.Message, "join "+addr+": ") {
		return err
	}
	return fmt.Errorf("join %s: %w", addr, err)
}
