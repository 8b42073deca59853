package membership

import (
	"encoding/json"
	"net"
	"sync"
	"testing"

	"github.com/hashicorp/memberlist"
)

// fakeFence is a Fence at a fixed epoch that records its hints.
type fakeFence struct {
	epoch uint64
	mu    sync.Mutex
	hints []string
}

func (f *fakeFence) Local() uint64 { return f.epoch }
func (f *fakeFence) Hint(addr string) {
	f.mu.Lock()
	f.hints = append(f.hints, addr)
	f.mu.Unlock()
}

// TestMembershipEpoch: a member gossiping another epoch is not alive for
// this node; a newer one is hinted to the fence (gossip alone, forgeable
// by any key holder, does not fence: the agent asks over mutual TLS).
func TestMembershipEpoch(t *testing.T) {
	f := &fakeFence{epoch: 1}
	m := NewDetached(f)
	meta := func(id string, epoch uint64) []byte {
		b, _ := json.Marshal(Meta{NodeID: id, ClusterPort: 2377, Epoch: epoch})
		return b
	}
	node := func(id string, epoch uint64) *memberlist.Node {
		return &memberlist.Node{Name: id, Addr: net.ParseIP("10.0.0.1"), Port: 7946, Meta: meta(id, epoch)}
	}
	m.NotifyJoin(node("same", 1))
	m.NotifyJoin(node("old", 0))
	alive := m.AliveSet()
	if _, ok := alive["same"]; !ok {
		t.Fatal("member of the same epoch not alive")
	}
	if _, ok := alive["old"]; ok {
		t.Fatal("member of an older epoch counted alive")
	}
	// A member that re-joins at our epoch becomes alive; one that moves to
	// a newer epoch stops being alive, and its cluster port is to be
	// asked (gossip alone, forgeable by any key holder, does not fence).
	m.NotifyUpdate(node("old", 1))
	m.NotifyUpdate(node("same", 2))
	alive = m.AliveSet()
	if _, ok := alive["old"]; !ok {
		t.Fatal("re-joined member not alive")
	}
	if _, ok := alive["same"]; ok {
		t.Fatal("member of a newer epoch still alive")
	}
	if len(f.hints) != 1 || f.hints[0] != "10.0.0.1:2377" {
		t.Fatalf("hints %q, want one of the member's cluster port", f.hints)
	}
	// Metadata without an epoch (an older agent) is epoch 0.
	m.NotifyJoin(&memberlist.Node{Name: "legacy", Addr: net.ParseIP("10.0.0.2"), Port: 7946, Meta: []byte(`{"id":"legacy","cp":2377}`)})
	if _, ok := m.AliveSet()["legacy"]; ok {
		t.Fatal("a member without epoch counted at epoch 1")
	}
}
