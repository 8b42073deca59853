package membership

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestUnfit: what members alive now say of their disk (Meta.Unfit), this
// node's own from SetUnfit, is what the leader acts on; a member that left
// is not listed, nor one that recovered.
func TestUnfit(t *testing.T) {
	m := NewDetached(nil)
	m.self.NodeID = "self"
	if got := m.Unfit(); got != nil {
		t.Fatalf("nobody unfit: %v", got)
	}
	m.NotifyJoin(gossipNode("n1", `{"id":"n1","uf":"disk full: raft log writes fail"}`))
	m.NotifyJoin(gossipNode("n2", `{"id":"n2"}`))
	m.SetUnfit("disk full: 3 MiB free, below the 256 MiB reserve")
	want := map[string]string{"n1": "disk full: raft log writes fail", "self": "disk full: 3 MiB free, below the 256 MiB reserve"}
	if got := m.Unfit(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Unfit = %v, want %v", got, want)
	}
	var meta Meta
	if err := json.Unmarshal(m.NodeMeta(512), &meta); err != nil || meta.Unfit != want["self"] {
		t.Fatalf("gossiped meta %+v (%v), want uf %q", meta, err, want["self"])
	}
	m.NotifyLeave(gossipNode("n1", ""))
	m.SetUnfit("")
	if got := m.Unfit(); got != nil {
		t.Fatalf("after n1 left and self recovered: %v", got)
	}
	var nilM *Membership
	if nilM.Unfit() != nil {
		t.Fatal("nil membership")
	}
}
