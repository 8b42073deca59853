package node

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/joining"
)

// TestRemoveClusterStateHalfway: a leave (or a failed init) whose deletion
// of DATA/cluster stops halfway — kill -9, power loss, an I/O error —
// leaves either a whole cluster state or none at DATA/cluster, and the
// next start deletes the rest. Before, DATA/cluster was deleted file by
// file in place: one that lost its certificates but kept cluster.json
// stopped every later start of the agent ("load node certificate: ...
// no such file"), and one that lost cluster.json but kept raft/ handed the
// old cluster's Raft log to the next join.
func TestRemoveClusterStateHalfway(t *testing.T) {
	for _, keep := range []string{"cluster.json", "raft"} {
		t.Run("left "+keep, func(t *testing.T) {
			data := t.TempDir()
			dir := instance.Dir(data)
			for _, d := range []string{"pki", "raft"} {
				if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []string{"cluster.json", "keyring.json", "pki/node.crt", "pki/node.key", "raft/raft.db"} {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("{}"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// The deletion stops after every entry of the directory but keep.
			removeAll = func(path string) error {
				ents, err := os.ReadDir(path)
				if errors.Is(err, os.ErrNotExist) {
					return nil
				}
				for _, e := range ents {
					if e.Name() != keep {
						if err := os.RemoveAll(filepath.Join(path, e.Name())); err != nil {
							return err
						}
					}
				}
				return errors.New("killed halfway")
			}
			t.Cleanup(func() { removeAll = os.RemoveAll })
			if err := removeClusterState(data); err == nil {
				t.Fatal("removeClusterState: no error from a deletion that stopped halfway")
			}
			if _, err := os.Stat(filepath.Join(dir, "raft")); err == nil {
				t.Error("the old Raft state is still in DATA/cluster, where the next join would start from it")
			}
			if instance.HasState(data) {
				if _, err := joining.ReadClusterFiles(dir); err != nil {
					t.Errorf("the next start finds a cluster it cannot open (the agent would stop at every start): %v", err)
				}
			}
			removeAll = os.RemoveAll
			if err := sweepDropped(data); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(droppedDir(data)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the next start left %s: %v", droppedDir(data), err)
			}
			// Nothing there is fine too.
			if err := removeClusterState(data); err != nil {
				t.Errorf("removeClusterState of no cluster state: %v", err)
			}
		})
	}
}
