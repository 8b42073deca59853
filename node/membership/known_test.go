package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/shoal-org/shoal/api"
)

// fakeReplica is a node table for the join loop.
type fakeReplica struct{ nodes []*api.Node }

func (r fakeReplica) Nodes() []*api.Node { return r.nodes }

// sizes returns how many entries gossip keeps of members (alive, seen,
// addrs, restarts).
func sizes(m *Membership) [4]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return [4]int{len(m.alive), len(m.seen), len(m.addrs), len(m.restarts)}
}

// TestMadeUpNamesForgotten: members under names the node table does not
// hold are forgotten once they leave: those gone before the join loop's
// round by that round, later ones as they leave. A gossip key holder could
// join under any number of made-up names, and each one stayed in seen and
// addrs for good. What a node of the table left behind stays (its release,
// EverSeen, its restart announcement), and so does a member alive now.
func TestMadeUpNamesForgotten(t *testing.T) {
	m := NewDetached(nil)
	m.NotifyJoin(gossipNode("n1", `{"id":"n1","v":"v1","pl":2}`))
	m.NotifyMsg(append([]byte{restartMsgType}, "n1"...))
	m.NotifyLeave(gossipNode("n1", ""))
	m.NotifyJoin(gossipNode("joiner", `{"id":"joiner"}`)) // alive, not in the table yet
	const fakes = 10000
	for i := range fakes {
		n := gossipNode(fmt.Sprintf("fake-%d", i), fmt.Sprintf(`{"id":"fake-%d","cp":2377}`, i))
		m.NotifyJoin(n)
		m.NotifyMsg(append([]byte{restartMsgType}, n.Name...))
		m.NotifyLeave(n)
	}
	if got := sizes(m); got[1] < fakes {
		t.Fatalf("before the join loop's round: %v", got) // nothing to judge by yet
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	loop := &JoinLoop{Members: m, Self: "self", Replica: fakeReplica{nodes: []*api.Node{{ID: "self"}, {ID: "n1"}}},
		PeersFile: filepath.Join(t.TempDir(), "peers.json"), Log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { defer close(done); loop.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for sizes(m) != [4]int{1, 2, 2, 1} {
		if time.Now().After(deadline) {
			t.Fatalf("after the join loop's round: alive, seen, addrs, restarts = %v, want [1 2 2 1] (joiner alive; n1 kept)", sizes(m))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m.VersionOf("n1") != "v1" || !m.EverSeen("n1") || !m.Restarting("n1", time.Hour) {
		t.Fatal("what n1, a node of the table, left behind was forgotten")
	}
	if _, ok := m.AliveSet()["joiner"]; !ok || !m.EverSeen("joiner") {
		t.Fatal("a member alive now was forgotten")
	}

	// From now on a made-up name is forgotten as it leaves.
	for i := range fakes {
		n := gossipNode(fmt.Sprintf("later-%d", i), fmt.Sprintf(`{"id":"later-%d"}`, i))
		m.NotifyJoin(n)
		m.NotifyLeave(n)
	}
	if got := sizes(m); got != [4]int{1, 2, 2, 1} {
		t.Fatalf("after %d more made-up members came and went: %v, want [1 2 2 1]", fakes, got)
	}
}

// TestAliveBoundToRecordedAddress: a member under the name of a node of
// the table counts only from the gossip address its record holds; a name
// the table does not hold (a joiner this replica has not heard of yet) and
// a record without an address are let through; an impostor accepted
// before the table was known is dropped from the alive set once it is.
func TestAliveBoundToRecordedAddress(t *testing.T) {
	m := NewDetached(nil)
	at := func(name, ip string, port uint16) *memberlist.Node {
		return &memberlist.Node{Name: name, Addr: net.ParseIP(ip), Port: port, Meta: []byte(`{"id":"` + name + `"}`)}
	}
	m.NotifyJoin(at("n2", "192.0.2.9", 7000)) // before the table: let in
	m.SetKnown([]*api.Node{
		{ID: "n1", Addr: "192.0.2.1", GossipPort: 7946},
		{ID: "n2", Addr: "192.0.2.2", GossipPort: 7946},
		{ID: "old", Addr: "192.0.2.3"}, // no gossip port recorded
	})
	if _, ok := m.AliveSet()["n2"]; ok {
		t.Fatal("a member alive under n2's name from another address stays alive once the table is known")
	}
	for _, c := range []struct {
		n  *memberlist.Node
		ok bool
	}{
		{at("n1", "192.0.2.1", 7946), true},
		{at("n1", "192.0.2.1", 7947), false},
		{at("n1", "192.0.2.66", 7946), false},
		{at("n1", "::ffff:192.0.2.1", 7946), true},
		{at("joiner", "192.0.2.77", 7000), true},
		{at("old", "192.0.2.50", 1), true},
	} {
		err := m.NotifyAlive(c.n)
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrWrongAddress) {
			t.Errorf("NotifyAlive(%s at %s:%d) = %v, want ok=%v", c.n.Name, c.n.Addr, c.n.Port, err, c.ok)
		}
	}
	// Events of a member memberlist took in before: not alive either.
	m.NotifyUpdate(at("n1", "192.0.2.66", 7946))
	if _, ok := m.AliveSet()["n1"]; ok {
		t.Fatal("an update from another address made n1 alive")
	}
	m.NotifyJoin(at("n1", "192.0.2.1", 7946))
	if _, ok := m.AliveSet()["n1"]; !ok {
		t.Fatal("n1 from its recorded address is not alive")
	}
}

// TestGossipImpersonationRefused: with real memberlist instances, a gossip
// key holder that joins under the name of a node dead for longer than
// DeadNodeReclaimTime, from another address, is not counted alive; the
// node itself, restarted at its recorded address, is. Before, every member
// counted the dead node alive again as soon as the impostor joined.
func TestGossipImpersonationRefused(t *testing.T) {
	keys := [][]byte{key('k')}
	leader := startGossip(t, "leader", 2377, keys)
	victim := startGossip(t, "victim", 2378, keys)
	vPort := victim.ml.LocalNode().Port
	table := []*api.Node{
		{ID: "leader", Addr: "127.0.0.1", GossipPort: int(leader.ml.LocalNode().Port)},
		{ID: "victim", Addr: "127.0.0.1", GossipPort: int(vPort)},
	}
	leader.SetKnown(table) // as its join loop does
	if _, err := victim.Join([]string{gossipAddr(leader)}); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, nil, func() bool { _, ok := leader.AliveSet()["victim"]; return ok }, func() string { return "victim never alive" })
	victim.Shutdown() // its host dies, no leave
	pollUntil(t, nil, func() bool { _, ok := leader.AliveSet()["victim"]; return !ok }, func() string { return "victim never dead" })
	time.Sleep(1500 * time.Millisecond) // past DeadNodeReclaimTime: memberlist would hand the name over

	fake := startGossip(t, "victim", 2378, keys) // another port
	if _, err := fake.Join([]string{gossipAddr(leader)}); err != nil {
		t.Fatal(err)
	}
	// The fake has the leader's state once Join returns (push-pull), and
	// the leader has had the fake's alive message.
	pollUntil(t, nil, func() bool { _, ok := fake.AliveSet()["leader"]; return ok }, func() string { return "the fake never saw the leader" })
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, ok := leader.AliveSet()["victim"]; ok {
			t.Fatalf("the leader counts the dead node alive again, announced from %s", gossipAddr(fake))
		}
	}
	fake.Shutdown()

	// The node itself comes back at its recorded address.
	back, err := New(Config{Name: "victim", BindAddr: "127.0.0.1", AdvertiseAddr: "127.0.0.1", BindPort: int(vPort), AdvertisePort: int(vPort), Keys: keys},
		Meta{NodeID: "victim", ClusterPort: 2378})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.Shutdown)
	if _, err := back.Join([]string{gossipAddr(leader)}); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, nil, func() bool { _, ok := leader.AliveSet()["victim"]; return ok },
		func() string {
			return fmt.Sprintf("the node restarted at its recorded address is not alive again: leader's memberlist %v, addrs %v", leader.MemberStates(), leader.PeerAddrs())
		})
}
