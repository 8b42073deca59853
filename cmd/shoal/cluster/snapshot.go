package cluster

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
)

// snapshotCommand defines `shoal snapshot save FILE | restore FILE`.
func (s *commands) snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "save the cluster state to a file, or restore it",
		Subcommands: []*cli.Command{
			{
				Name:      "save",
				Usage:     "write a consistent snapshot of the cluster state to FILE (mode 0600)",
				ArgsUsage: "FILE",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "format", Usage: "json"}},
				Action: func(c *cli.Context) error {
					cl, err := s.Connect(c, 1, 1)
					if err != nil {
						return err
					}
					path := c.Args().First()
					info, err := saveSnapshotFile(c, cl, path)
					if err != nil {
						return fmt.Errorf("snapshot save: %w", err)
					}
					if c.String("format") == "json" {
						return output.WriteJSON(s.Stdout, info)
					}
					fmt.Fprintf(s.Stdout, "Snapshot of cluster %s at index %d saved to %s: %d nodes, %d services, %d tasks, %d bytes (sha256 %s).\n",
						info.ClusterID, info.Index, path, info.Nodes, info.Services, info.Tasks, info.Size, info.SHA256)
					return nil
				},
			},
			{
				Name:      "restore",
				Usage:     "replace the cluster's state with the snapshot in FILE",
				ArgsUsage: "FILE",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "force", Usage: "restore a snapshot saved from another cluster"},
					&cli.StringFlag{Name: "format", Usage: "json"},
				},
				Action: func(c *cli.Context) error {
					cl, err := s.Connect(c, 1, 1)
					if err != nil {
						return err
					}
					f, err := os.Open(c.Args().First())
					if err != nil {
						return fmt.Errorf("snapshot restore: %w", err)
					}
					defer f.Close()
					r, err := cl.RestoreSnapshot(c.Context, f, c.Bool("force"))
					if err != nil {
						return fmt.Errorf("snapshot restore: %w", err)
					}
					if c.String("format") == "json" {
						return output.WriteJSON(s.Stdout, r)
					}
					fmt.Fprint(s.Stdout, restoreSummary(r))
					return nil
				},
			},
		},
	}
}

// saveSnapshotFile writes the agent's snapshot to path through a temporary
// file in the same directory (mode 0600: the file holds every service spec
// and the cluster's sealed keys), renamed into place only when complete.
func saveSnapshotFile(c *cli.Context, cl *client.Client, path string) (*api.SnapshotInfo, error) {
	var info *api.SnapshotInfo
	err := atomicfile.Write(path, 0o600, func(w io.Writer) error {
		var err error
		info, err = cl.SaveSnapshot(c.Context, w)
		return err
	})
	if err != nil {
		return nil, err
	}
	return info, nil
}

// restoreSummary says what a restore did, for people.
func restoreSummary(r *api.SnapshotRestoreResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Cluster %s restored from a snapshot of cluster %s: %d services (%s).\n",
		r.ClusterID, r.FileClusterID, len(r.Services), strings.Join(r.Services, ", "))
	if len(r.DroppedNodes) > 0 {
		fmt.Fprintf(&b, "Nodes in the snapshot that are not members of this cluster were left out: %s (%d of their tasks are placed again).\n",
			strings.Join(r.DroppedNodes, ", "), r.DroppedTasks)
	}
	b.WriteString("Running tasks of services not in the snapshot are stopped; missing tasks are started.\n")
	return b.String()
}
