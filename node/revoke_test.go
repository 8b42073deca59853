package node

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/revocation"
)

// TestRejoinReplayKeepsCurrentState replays, entry by entry as a joining
// node's replica does, the log of a cluster that removed node "n4" (with a
// gossip key rotation) and admitted it again under its ID. Nothing the
// node takes from its replica while it catches up may be of the past: it
// never applies a keyring without the key the join reply gave it (the
// retired key would cut it off from gossip and let the removed node's
// messages in), and the first subnet the overlay may use is the new one.
func TestRejoinReplayKeepsCurrentState(t *testing.T) {
	old, nw := make([]byte, 32), key('n') // newReplica's bootstrap key is zeros
	leader := newReplica(t)
	var log []command.Command
	apply := func(cmd command.Command) {
		leader.apply(cmd)
		log = append(log, cmd)
	}
	log = append(log, command.BootstrapCluster{ // what newReplica applied
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{old},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "boot", Hostname: "boot", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "b0"},
	})
	n4 := func(serial string) command.Command {
		return command.UpsertNode{Node: api.Node{ID: "n4", Hostname: "n4", Addr: "127.0.0.1", ClusterPort: 1,
			Status: api.NodeReady, CertSerial: serial}}
	}
	apply(n4("s1"))
	oldRec, err := leader.store.Node("n4")
	if err != nil {
		t.Fatal(err)
	}
	apply(command.Batch{Commands: []command.Command{command.RemoveNode{ID: "n4", Now: time.Now()},
		command.SetGossipKeys{Keys: [][]byte{old, nw}}}})
	apply(command.SetGossipKeys{Keys: [][]byte{nw, old}})
	apply(command.SetGossipKeys{Keys: [][]byte{nw}})
	apply(n4("s2"))
	// The join reply (handleJoinRPC): keyring and index of one view.
	snap := leader.store.Snapshot()
	replyKeys, floor := snap.Cluster().GossipKeys, snap.Index()
	newRec, err := snap.Node("n4")
	if err != nil {
		t.Fatal(err)
	}
	if newRec.Subnet == oldRec.Subnet {
		t.Fatalf("the re-joined node kept subnet %s; the test needs a new one", newRec.Subnet)
	}

	joiner := consensus.NewStore()
	machine := fsm.New(joiner)
	installed := replyKeys // keyring.json as join wrote it
	overlaySubnet := ""
	for i, cmd := range log {
		if res := machine.ApplyCommand(uint64(i+1), cmd); res.Err != nil {
			t.Fatalf("replay %T: %v", cmd, res.Err)
		}
		if keys := revocation.ReplicaKeyring(joiner.Index(), floor, joiner.Cluster().GossipKeys); keys != nil {
			installed = keys
		}
		if !revocation.ContainsKey(installed, nw) {
			t.Fatalf("after replaying entry %d the joiner applied keyring %q: it lost the current key", i+1, installed)
		}
		if overlaySubnet == "" && revocation.ReplicaCurrent(joiner.Index(), floor) {
			if n, err := joiner.Node("n4"); err == nil {
				overlaySubnet = n.Subnet
			}
		}
	}
	if overlaySubnet != newRec.Subnet {
		t.Fatalf("the overlay would come up on subnet %q, want the new %s (the old one was %s)", overlaySubnet, newRec.Subnet, oldRec.Subnet)
	}
	if !keysEqual(installed, [][]byte{nw}) {
		t.Fatalf("the joiner ends with keyring %q, want only the new key", installed)
	}
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func keysEqual(x, y [][]byte) bool {
	return slices.EqualFunc(x, y, func(a, b []byte) bool { return bytes.Equal(a, b) })
}
