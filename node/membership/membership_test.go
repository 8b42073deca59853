package node

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/shoal-org/shoal/consensus"
)

func testMembership() *membership {
	return &membership{
		fence:    newFence(0),
		subs:     map[chan struct{}]struct{}{},
		msgs:     make(chan []byte, 16),
		alive:    map[string]memberMeta{},
		addrs:    map[string]string{},
		seen:     map[string]memberMeta{},
		restarts: map[string]time.Time{},
	}
}

func gossipNode(name string, meta string) *memberlist.Node {
	return &memberlist.Node{Name: name, Addr: net.ParseIP("192.0.2.1"), Port: 7946, Meta: []byte(meta)}
}

// A clean stop is announced, held for the grace, and forgotten when the
// node joins again; a node that just vanished is not restarting.
func TestMembershipRestartAnnouncement(t *testing.T) {
	m := testMembership()
	m.NotifyJoin(gossipNode("n1", `{"id":"n1"}`))
	m.NotifyJoin(gossipNode("n2", `{"id":"n2"}`))

	m.NotifyMsg(append([]byte{restartMsgType}, "n1"...))
	m.NotifyLeave(gossipNode("n1", ""))
	m.NotifyLeave(gossipNode("n2", "")) // failed: no announcement
	if !m.restarting("n1", time.Minute) {
		t.Fatal("an announced clean stop is not held")
	}
	if m.restarting("n1", 0) {
		t.Fatal("held past its grace")
	}
	if m.restarting("n2", time.Minute) {
		t.Fatal("a failed node is held as restarting")
	}
	select {
	case msg := <-m.msgs:
		t.Fatalf("the announcement reached the user-message queue: %q", msg)
	default:
	}
	m.NotifyJoin(gossipNode("n1", `{"id":"n1"}`))
	if m.restarting("n1", time.Minute) {
		t.Fatal("still restarting after it joined again")
	}
	// Other user messages still queue.
	m.NotifyMsg([]byte("Rx"))
	if got := <-m.msgs; string(got) != "Rx" {
		t.Fatalf("queued %q", got)
	}
}

// Release and protocol level come from gossip metadata and outlive the
// member's death; members that never advertised count as unknown level.
func TestMembershipVersions(t *testing.T) {
	m := testMembership()
	m.NotifyJoin(gossipNode("n1", `{"id":"n1","v":"v1.2.0","pl":2}`))
	m.NotifyJoin(gossipNode("n2", `{"id":"n2"}`)) // a release before the gate
	m.NotifyLeave(gossipNode("n1", ""))
	if v := m.versionOf("n1"); v != "v1.2.0" {
		t.Fatalf("version of a down node %q", v)
	}
	got := m.peerLevels([]string{"n1", "n2", "n3"})
	want := []consensus.PeerLevel{
		{ID: "n1", Level: 2, Version: "v1.2.0", Known: true},
		{ID: "n2", Known: true},
		{ID: "n3"},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("peerLevels[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// The leader refuses a command some member of the Raft configuration is
// too old for, at once and without retrying until the write timeout, and
// accepts it once that member advertises the level.
func TestWriteGatedByMemberLevels(t *testing.T) {
	a := newSoloAgent(t)
	a.cfg.WriteTimeout = time.Minute // a retried refusal would end in ErrNoQuorum instead
	m := testMembership()
	a.cl.members = m
	m.NotifyJoin(gossipNode(a.id.NodeID, `{"id":"`+a.id.NodeID+`","v":"v1.0.0","pl":1}`))
	since := func(cmd consensus.Command) int {
		if cmd.Type() == consensus.TypeDeleteTasks {
			return 2 // as if DeleteTasks were new in the next release
		}
		return consensus.SinceLevel(cmd)
	}
	a.cl.raft.SetCommandGate(levelGate(a.cl.raft, m, since))
	ctx := context.Background()

	before := a.cl.store.Index()
	_, err := a.write(ctx, &consensus.DeleteTasks{IDs: []string{"none"}})
	if !errors.Is(err, consensus.ErrCommandUnsupported) {
		t.Fatalf("write of a too-new command: %v", err)
	}
	if !strings.Contains(err.Error(), "v1.0.0, level 1") || !strings.Contains(err.Error(), shortID(a.id.NodeID)) {
		t.Fatalf("the refusal does not name the node and its release: %v", err)
	}
	if a.cl.store.Index() != before {
		t.Fatal("a refused command changed the state")
	}
	if errorCode(err) != "command_unsupported" {
		t.Fatalf("forwarded as %q", errorCode(err))
	}
	// Commands every release applies are not held back.
	if _, err := a.write(ctx, &consensus.SetVoterTarget{Target: 3}); err != nil {
		t.Fatalf("base-level write: %v", err)
	}
	// Upgraded: the member now advertises level 2.
	m.NotifyUpdate(gossipNode(a.id.NodeID, `{"id":"`+a.id.NodeID+`","v":"v1.1.0","pl":2}`))
	if _, err := a.write(ctx, &consensus.DeleteTasks{IDs: []string{"none"}}); err != nil {
		t.Fatalf("write after the upgrade: %v", err)
	}
}

func TestOnlyLBMoved(t *testing.T) {
	base := memberMeta{NodeID: "n1", ClusterPort: 2377, Subnet: "10.42.1.0/24", Epoch: 1, Version: "v1", Level: 3, LB: 10, GK: "k1"}
	cases := map[string]struct {
		mut  func(*memberMeta)
		want bool
	}{
		"lb forward": {func(m *memberMeta) { m.LB = 11 }, true},
		"same":       {func(m *memberMeta) {}, true},
		"subnet":     {func(m *memberMeta) { m.Subnet = "10.42.2.0/24"; m.LB = 11 }, false},
		"epoch":      {func(m *memberMeta) { m.Epoch = 2 }, false},
		"version":    {func(m *memberMeta) { m.Version = "v2"; m.LB = 11 }, false},
		"level":      {func(m *memberMeta) { m.Level = 4 }, false},
		"keyring":    {func(m *memberMeta) { m.GK = "k2"; m.LB = 12 }, false},
		"port":       {func(m *memberMeta) { m.ClusterPort = 2378 }, false},
	}
	for name, c := range cases {
		cur := base
		c.mut(&cur)
		if got := onlyLBMoved(base, cur); got != c.want {
			t.Errorf("%s: onlyLBMoved = %v, want %v", name, got, c.want)
		}
	}
}

// A member whose load balancer index alone moved wakes the drains
// (lbSubscribe) but not the general subscribers (leader and network loops,
// which read the whole state): with n nodes every write brings n of these.
// Any other change, a join and a leave wake both.
func TestMembershipLBIndexWakesOnlyDrains(t *testing.T) {
	m := testMembership()
	m.lbSubs = map[chan struct{}]struct{}{}
	gen, cancelGen := m.subscribe()
	defer cancelGen()
	lb, cancelLB := m.lbSubscribe()
	defer cancelLB()
	drain := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	m.NotifyJoin(gossipNode("n1", `{"id":"n1","lb":5}`))
	if !drain(gen) || !drain(lb) {
		t.Fatal("a join must wake every subscriber")
	}
	m.NotifyUpdate(gossipNode("n1", `{"id":"n1","lb":6}`))
	if drain(gen) {
		t.Fatal("an LB index update woke the general subscribers")
	}
	if !drain(lb) {
		t.Fatal("an LB index update did not wake the drains")
	}
	if got := m.lbIndexes("self")["n1"]; got != 6 {
		t.Fatalf("lb index of n1 = %d, want 6", got)
	}
	m.NotifyUpdate(gossipNode("n1", `{"id":"n1","lb":7,"sn":"10.42.3.0/24"}`))
	if !drain(gen) || !drain(lb) {
		t.Fatal("a subnet change must wake every subscriber")
	}
	m.NotifyLeave(gossipNode("n1", ""))
	if !drain(gen) || !drain(lb) {
		t.Fatal("a leave must wake every subscriber")
	}
}
