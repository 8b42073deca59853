package node

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/overlay"
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
			if got := wgCutover(tt.epoch, tt.nodes); got != tt.want {
				t.Fatalf("wgCutover(%d) = %v, want %v", tt.epoch, got, tt.want)
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
			if got := wgPeerKey(tt.n, tt.nodes); got != tt.want {
				t.Fatalf("wgPeerKey = %q, want %q", got, tt.want)
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
		cur     wgLocalKey
		pending *wgLocalKey
		want    wgRotationStep
	}{
		{"steady: nothing to do", 0, rec("K", 3, "", 0), []*api.Node{peerOld},
			wgLocalKey{"K", 3}, nil, wgRotationStep{}},
		{"first key: publish it", 0, rec("", 0, "", 0), []*api.Node{peerOld},
			wgLocalKey{"K", 3}, nil, wgRotationStep{Publish: rec("K", 3, "", 0)}},
		{"a removal after the key: make the next key", 50, rec("K", 3, "", 0), []*api.Node{peerOld},
			wgLocalKey{"K", 3}, nil, wgRotationStep{Generate: 50}},
		{"a removal before the key (log replay after a restart): nothing", 50, rec("K", 60, "", 0), []*api.Node{peerOld},
			wgLocalKey{"K", 60}, nil, wgRotationStep{}},
		{"next key made: publish it beside the current one", 50, rec("K", 3, "", 0), []*api.Node{peerOld},
			wgLocalKey{"K", 3}, &wgLocalKey{"N", 50}, wgRotationStep{Publish: rec("K", 3, "N", 50)}},
		{"published, a peer has not: wait", 50, rec("K", 3, "N", 50), []*api.Node{peerOld},
			wgLocalKey{"K", 3}, &wgLocalKey{"N", 50}, wgRotationStep{}},
		{"published by all: switch", 50, rec("K", 3, "N", 50), []*api.Node{peerNext},
			wgLocalKey{"K", 3}, &wgLocalKey{"N", 50}, wgRotationStep{Switch: true}},
		{"switched: publish the next key as the key", 50, rec("K", 3, "N", 50), []*api.Node{peerNext},
			wgLocalKey{"N", 50}, nil, wgRotationStep{Publish: rec("N", 50, "", 0)}},
		{"promoted in the record: done", 50, rec("N", 50, "", 0), []*api.Node{peerNext},
			wgLocalKey{"N", 50}, nil, wgRotationStep{}},
		{"a second removal before the next key was published: make a newer one", 70, rec("K", 3, "", 0), []*api.Node{peerOld},
			wgLocalKey{"K", 3}, &wgLocalKey{"N", 50}, wgRotationStep{Generate: 70}},
		{"a second removal after the next key was published: keep it until the switch", 70, rec("K", 3, "N", 50), []*api.Node{peerOld},
			wgLocalKey{"K", 3}, &wgLocalKey{"N", 50}, wgRotationStep{}},
		{"... which the other nodes' newer keys complete", 70, rec("K", 3, "N", 50), []*api.Node{wgNode("b", r, "B", 3, "B3", 70)},
			wgLocalKey{"K", 3}, &wgLocalKey{"N", 50}, wgRotationStep{Switch: true}},
		{"... and then the next rotation", 70, rec("K", 3, "N", 50), []*api.Node{wgNode("b", r, "B", 3, "B3", 70)},
			wgLocalKey{"N", 50}, nil, wgRotationStep{Generate: 70}},
		{"restart after the switch, record not yet written: publish", 50, rec("K", 3, "N", 50), []*api.Node{peerNext},
			wgLocalKey{"N", 50}, nil, wgRotationStep{Publish: rec("N", 50, "", 0)}},
		{"restart with the next key on disk, already published, cut over: switch", 50, rec("K", 3, "N", 50), []*api.Node{peerNext},
			wgLocalKey{"K", 50}, &wgLocalKey{"N", 50}, wgRotationStep{Switch: true}},
		{"a record naming another next key (lost on disk): publish ours", 50, rec("K", 3, "X", 50), []*api.Node{peerOld},
			wgLocalKey{"K", 3}, &wgLocalKey{"N", 50}, wgRotationStep{Publish: rec("K", 3, "N", 50)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := append([]*api.Node{tt.self}, tt.peers...)
			got := wgRotationNext(wgRotationIn{RemovalIndex: tt.removal, Self: *tt.self, Nodes: nodes, Current: tt.cur, Pending: tt.pending})
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
		cur     wgLocalKey
		pending *wgLocalKey
		device  string // the key the device runs
	}
	ids := []string{"a", "b", "c"}
	recs := map[string]*api.Node{}
	locs := map[string]*local{}
	for _, id := range ids {
		recs[id] = wgNode(id, api.NodeReady, id+"0", 3, "", 0)
		locs[id] = &local{cur: wgLocalKey{id + "0", 3}, device: id + "0"}
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
				step := wgRotationNext(wgRotationIn{RemovalIndex: removal, Self: *recs[id], Nodes: nodes(), Current: l.cur, Pending: l.pending})
				switch {
				case step.Generate > 0:
					generated[id]++
					l.pending = &wgLocalKey{Public: id + string(rune('0'+generated[id])), Epoch: step.Generate}
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
			if got := wgPeerKey(recs[other], nodes()); got != other+"1" {
				t.Fatalf("peers know %s by %s", other, got)
			}
		}
	}
}

// TestWGKeysOnDisk: the next key is made, kept and promoted with mode
// 0600, its epoch beside it, and a restart at any point reads back what
// the decision needs.
func TestWGKeysOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wireguard")
	cur, err := overlay.LoadOrCreateKeyPair(filepath.Join(dir, wgKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	k, err := loadWGKeys(dir, cur, 12)
	if err != nil {
		t.Fatal(err)
	}
	if c, p := k.in(); c.Epoch != 12 || c.Public != cur.PublicKey() || p != nil {
		t.Fatalf("fresh keys: %+v %+v", c, p)
	}
	if err := k.generate(50); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, wgNextFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("next key file: %v %v", st, err)
	}
	next := *k.next
	// Restart: the epoch of the current key stays, the next key is back.
	k2, err := loadWGKeys(dir, cur, 99)
	if err != nil {
		t.Fatal(err)
	}
	c, p := k2.in()
	if c.Epoch != 12 || p == nil || p.Public != next.PublicKey() || p.Epoch != 50 {
		t.Fatalf("after restart: %+v %+v", c, p)
	}
	if err := k2.promote(); err != nil {
		t.Fatal(err)
	}
	got, err := overlay.LoadKeyPair(filepath.Join(dir, wgKeyFile))
	if err != nil || got != next {
		t.Fatalf("promoted key on disk: %v", err)
	}
	k3, err := loadWGKeys(dir, got, 99)
	if err != nil {
		t.Fatal(err)
	}
	if c, p := k3.in(); c.Epoch != 50 || c.Public != next.PublicKey() || p != nil {
		t.Fatalf("after promotion: %+v %+v", c, p)
	}
	// A next key whose epoch file is missing was never made whole: dropped.
	if err := overlay.WriteKeyPair(filepath.Join(dir, wgNextFile), cur); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, wgNextEpochFile))
	k4, err := loadWGKeys(dir, got, 99)
	if err != nil {
		t.Fatal(err)
	}
	if _, p := k4.in(); p != nil {
		t.Fatalf("half-made next key kept: %+v", p)
	}
}
