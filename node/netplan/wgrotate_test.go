package netplan

import (
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// wgNode is a node record with WireGuard keys: key@epoch, next@nextEpoch.
func wgNode(id, status, key string, epoch uint64, next string, nextEpoch uint64) *api.Node {
	return &api.Node{ID: id, Status: status, Subnet: "10.42.1.0/24", WireGuardKey: key, WireGuardKeyEpoch: epoch,
		WireGuardNextKey: next, WireGuardNextEpoch: nextEpoch}
}

func TestWGCutover(t *testing.T) {
	r := api.NodeReady
	tests := []struct {
		name  string
		epoch uint64
		nodes []*api.Node
		want  bool
	}{
		{"no removal", 0, []*api.Node{wgNode("a", r, "A", 0, "", 0)}, true},
		{"one node has not published", 50, []*api.Node{wgNode("a", r, "A", 3, "A2", 50), wgNode("b", r, "B", 3, "", 0)}, false},
		{"all published next", 50, []*api.Node{wgNode("a", r, "A", 3, "A2", 50), wgNode("b", r, "B", 3, "B2", 50)}, true},
		{"promoted counts", 50, []*api.Node{wgNode("a", r, "A2", 50, "", 0), wgNode("b", r, "B", 3, "B2", 50)}, true},
		{"a later epoch counts", 50, []*api.Node{wgNode("a", r, "A", 3, "A3", 70), wgNode("b", r, "B", 60, "", 0)}, true},
		{"a key made after the removal counts", 50, []*api.Node{wgNode("a", r, "A", 3, "A2", 50), wgNode("new", r, "N", 64, "", 0)}, true},
		{"down nodes do not hold it up", 50, []*api.Node{wgNode("a", r, "A", 3, "A2", 50), wgNode("b", api.NodeDown, "B", 3, "", 0)}, true},
		{"nodes without a key are no peers", 50, []*api.Node{wgNode("a", r, "A", 3, "A2", 50), wgNode("b", r, "", 0, "", 0)}, true},
		{"a stale next key does not count", 50, []*api.Node{wgNode("a", r, "A", 3, "A2", 50), wgNode("b", r, "B", 30, "B1", 20)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WGCutover(tt.epoch, tt.nodes); got != tt.want {
				t.Fatalf("WGCutover(%d) = %v, want %v", tt.epoch, got, tt.want)
			}
		})
	}
}

func TestWGPeerKey(t *testing.T) {
	r := api.NodeReady
	a := wgNode("a", r, "A", 3, "A2", 50)
	tests := []struct {
		name  string
		n     *api.Node
		nodes []*api.Node
		want  string
	}{
		{"before the cutover: the current key", a, []*api.Node{a, wgNode("b", r, "B", 3, "", 0)}, "A"},
		{"after the cutover: the next key", a, []*api.Node{a, wgNode("b", r, "B", 3, "B2", 50)}, "A2"},
		{"promoted: the key", wgNode("a", r, "A2", 50, "", 0), []*api.Node{wgNode("b", r, "B", 3, "", 0)}, "A2"},
		{"a next key older than the key is ignored", wgNode("a", r, "A3", 60, "A2", 50), nil, "A3"},
		{"no key", wgNode("a", r, "", 0, "", 0), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WGPeerKey(tt.n, tt.nodes); got != tt.want {
				t.Fatalf("WGPeerKey = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWGRotationNext(t *testing.T) {
	r := api.NodeReady
	peerOld := wgNode("b", r, "B", 3, "", 0)
	peerNext := wgNode("b", r, "B", 3, "B2", 50)
	rec := func(key string, epoch uint64, next string, nextEpoch uint64) *api.Node {
		return wgNode("me", r, key, epoch, next, nextEpoch)
	}
	tests := []struct {
		name    string
		removal uint64
		self    *api.Node
		peers   []*api.Node
		cur     WGLocalKey
		pending *WGLocalKey
		want    WGRotationStep
	}{
		{"steady: nothing to do", 0, rec("K", 3, "", 0), []*api.Node{peerOld},
			WGLocalKey{"K", 3}, nil, WGRotationStep{}},
		{"first key: publish it", 0, rec("", 0, "", 0), []*api.Node{peerOld},
			WGLocalKey{"K", 3}, nil, WGRotationStep{Publish: rec("K", 3, "", 0)}},
		{"a removal after the key: make the next key", 50, rec("K", 3, "", 0), []*api.Node{peerOld},
			WGLocalKey{"K", 3}, nil, WGRotationStep{Generate: 50}},
		{"a removal before the key (log replay after a restart): nothing", 50, rec("K", 60, "", 0), []*api.Node{peerOld},
			WGLocalKey{"K", 60}, nil, WGRotationStep{}},
		{"next key made: publish it beside the current one", 50, rec("K", 3, "", 0), []*api.Node{peerOld},
			WGLocalKey{"K", 3}, &WGLocalKey{"N", 50}, WGRotationStep{Publish: rec("K", 3, "N", 50)}},
		{"published, a peer has not: wait", 50, rec("K", 3, "N", 50), []*api.Node{peerOld},
			WGLocalKey{"K", 3}, &WGLocalKey{"N", 50}, WGRotationStep{}},
		{"published by all: switch", 50, rec("K", 3, "N", 50), []*api.Node{peerNext},
			WGLocalKey{"K", 3}, &WGLocalKey{"N", 50}, WGRotationStep{Switch: true}},
		{"switched: publish the next key as the key", 50, rec("K", 3, "N", 50), []*api.Node{peerNext},
			WGLocalKey{"N", 50}, nil, WGRotationStep{Publish: rec("N", 50, "", 0)}},
		{"promoted in the record: done", 50, rec("N", 50, "", 0), []*api.Node{peerNext},
			WGLocalKey{"N", 50}, nil, WGRotationStep{}},
		{"a second removal before the next key was published: make a newer one", 70, rec("K", 3, "", 0), []*api.Node{peerOld},
			WGLocalKey{"K", 3}, &WGLocalKey{"N", 50}, WGRotationStep{Generate: 70}},
		{"a second removal after the next key was published: keep it until the switch", 70, rec("K", 3, "N", 50), []*api.Node{peerOld},
			WGLocalKey{"K", 3}, &WGLocalKey{"N", 50}, WGRotationStep{}},
		{"... which the other nodes' newer keys complete", 70, rec("K", 3, "N", 50), []*api.Node{wgNode("b", r, "B", 3, "B3", 70)},
			WGLocalKey{"K", 3}, &WGLocalKey{"N", 50}, WGRotationStep{Switch: true}},
		{"... and then the next rotation", 70, rec("K", 3, "N", 50), []*api.Node{wgNode("b", r, "B", 3, "B3", 70)},
			WGLocalKey{"N", 50}, nil, WGRotationStep{Generate: 70}},
		{"restart after the switch, record not yet written: publish", 50, rec("K", 3, "N", 50), []*api.Node{peerNext},
			WGLocalKey{"N", 50}, nil, WGRotationStep{Publish: rec("N", 50, "", 0)}},
		{"restart with the next key on disk, already published, cut over: switch", 50, rec("K", 3, "N", 50), []*api.Node{peerNext},
			WGLocalKey{"K", 50}, &WGLocalKey{"N", 50}, WGRotationStep{Switch: true}},
		{"a record naming another next key (lost on disk): publish ours", 50, rec("K", 3, "X", 50), []*api.Node{peerOld},
			WGLocalKey{"K", 3}, &WGLocalKey{"N", 50}, WGRotationStep{Publish: rec("K", 3, "N", 50)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := append([]*api.Node{tt.self}, tt.peers...)
			got := WGRotationNext(WGRotationIn{RemovalIndex: tt.removal, Self: *tt.self, Nodes: nodes, Current: tt.cur, Pending: tt.pending})
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v (publish %+v)\nwant %+v (publish %+v)", got, got.Publish, tt.want, tt.want.Publish)
			}
		})
	}
}

// TestWGRotationConverges runs every node's decision against a shared
// state until nothing moves: each node rotates exactly once per removal,
// and every node ends up knowing every other by its new key.
func TestWGRotationConverges(t *testing.T) {
	type local struct {
		cur     WGLocalKey
		pending *WGLocalKey
		device  string // the key the device runs
	}
	ids := []string{"a", "b", "c"}
	recs := map[string]*api.Node{}
	locs := map[string]*local{}
	for _, id := range ids {
		recs[id] = wgNode(id, api.NodeReady, id+"0", 3, "", 0)
		locs[id] = &local{cur: WGLocalKey{id + "0", 3}, device: id + "0"}
	}
	nodes := func() []*api.Node {
		var out []*api.Node
		for _, id := range ids {
			c := *recs[id]
			out = append(out, &c)
		}
		return out
	}
	generated := map[string]int{}
	run := func(removal uint64) {
		for round := 0; round < 20; round++ {
			moved := false
			for _, id := range ids {
				l := locs[id]
				step := WGRotationNext(WGRotationIn{RemovalIndex: removal, Self: *recs[id], Nodes: nodes(), Current: l.cur, Pending: l.pending})
				switch {
				case step.Generate > 0:
					generated[id]++
					l.pending = &WGLocalKey{Public: id + string(rune('0'+generated[id])), Epoch: step.Generate}
					moved = true
				case step.Switch:
					l.device, l.cur, l.pending = l.pending.Public, *l.pending, nil
					moved = true
				case step.Publish != nil:
					recs[id] = step.Publish // committed at once
					moved = true
				}
			}
			if !moved {
				return
			}
		}
		t.Fatalf("no convergence after 20 rounds")
	}
	run(50)
	run(50) // a replay of the same removal changes nothing
	for _, id := range ids {
		if generated[id] != 1 {
			t.Fatalf("node %s generated %d keys for one removal", id, generated[id])
		}
		want := id + "1"
		if locs[id].device != want || recs[id].WireGuardKey != want || recs[id].WireGuardNextKey != "" {
			t.Fatalf("node %s: device %s, record %+v, want %s", id, locs[id].device, recs[id], want)
		}
		for _, other := range ids {
			if got := WGPeerKey(recs[other], nodes()); got != other+"1" {
				t.Fatalf("peers know %s by %s", other, got)
			}
		}
	}
}

// TestWGRotationNextBackend: the device's backend is published in the
// node's record with the key, and changes nothing else.
func TestWGRotationNextBackend(t *testing.T) {
	r := api.NodeReady
	peer := wgNode("b", r, "B", 3, "", 0)
	rec := func(backend string) *api.Node {
		n := wgNode("me", r, "K", 3, "", 0)
		n.WireGuardBackend = backend
		return n
	}
	withKey := func(key, backend string) *api.Node {
		n := wgNode("me", r, key, 3, "", 0)
		n.WireGuardBackend = backend
		return n
	}
	for _, tt := range []struct {
		name    string
		self    *api.Node
		backend string
		cur     WGLocalKey
		want    WGRotationStep
	}{
		{"none known: the record stays", rec("kernel"), "", WGLocalKey{"K", 3}, WGRotationStep{}},
		{"first report: publish it", rec(""), "userspace", WGLocalKey{"K", 3}, WGRotationStep{Publish: rec("userspace")}},
		{"same: nothing", rec("userspace"), "userspace", WGLocalKey{"K", 3}, WGRotationStep{}},
		{"changed (a kernel that gained WireGuard): publish", rec("userspace"), "kernel", WGLocalKey{"K", 3}, WGRotationStep{Publish: rec("kernel")}},
		{"with the first key, in one record", withKey("", ""), "kernel", WGLocalKey{"K", 3}, WGRotationStep{Publish: withKey("K", "kernel")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := WGRotationNext(WGRotationIn{Self: *tt.self, Nodes: []*api.Node{tt.self, peer}, Current: tt.cur, Backend: tt.backend})
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v (publish %+v)\nwant %+v (publish %+v)", got, got.Publish, tt.want, tt.want.Publish)
			}
		})
	}
}
