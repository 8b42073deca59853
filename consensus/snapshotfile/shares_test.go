package snapshotfile

import (
	"bytes"
	"maps"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestPlanRestoreShares: a restored network with allocated shares keeps
// the cluster's current shares when the cluster holds it now, the file's
// otherwise; shares of nodes that are not members go; a member that runs a
// kept task of the network without a share gets the lowest free one.
func TestPlanRestoreShares(t *testing.T) {
	saved := savedState(t)
	saved.must(command.CreateNetwork{Network: api.Network{ID: "w1", Name: "small", Subnet: "172.28.0.0/24", VNI: 4100, Attachable: true, ShareBits: api.AllocatedShareBits, CreatedAt: t0}})
	saved.must(command.ClaimNetworkShare{Network: "w1", NodeID: "n2"}) // 172.28.0.0/28
	file := saveFile(t, saved.store)
	edit := func(d *consensus.SnapshotData) {
		for _, n := range d.Networks {
			if n.ID == "w1" {
				// The file remembers other shares, and a node that is gone.
				n.Shares = map[string]string{"n2": "172.28.0.32/28", "gone": "172.28.0.48/28"}
			}
		}
		d.Networks = append(d.Networks, &api.Network{ID: "w2", Name: "other", Subnet: "172.29.0.0/24", VNI: 4101, ShareBits: api.AllocatedShareBits,
			Shares: map[string]string{"n2": "172.29.0.16/28", "gone": "172.29.0.0/28"}, CreatedAt: t0})
		for _, s := range d.Services {
			if s.ID == "s1" {
				s.Spec.Networks = []string{"small", "other"}
			}
		}
		for _, tk := range d.Tasks {
			if tk.ServiceID == "s1" {
				tk.Spec.Networks = []string{"small", "other"}
			}
		}
	}
	f, err := Read(bytes.NewReader(editFile(t, file, edit)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRestore(f, saved.store.Snapshot(), false)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	got := map[string]map[string]string{}
	for _, n := range plan.data.Networks {
		got[n.Name] = n.Shares
	}
	// small: n2 keeps its current share, n1 (task t1) gets the lowest free.
	if want := map[string]string{"n2": "172.28.0.0/28", "n1": "172.28.0.16/28"}; !maps.Equal(got["small"], want) {
		t.Errorf("small: shares %v, want %v", got["small"], want)
	}
	// other (new to the cluster): the file's, without the gone node; n1
	// gets the share the gone node held.
	if want := map[string]string{"n2": "172.29.0.16/28", "n1": "172.29.0.0/28"}; !maps.Equal(got["other"], want) {
		t.Errorf("other: shares %v, want %v", got["other"], want)
	}
}
