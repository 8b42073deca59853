package membership

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func testMembership() *Membership { return NewDetached(nil) }

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
	if !m.Restarting("n1", time.Minute) {
		t.Fatal("an announced clean stop is not held")
	}
	if m.Restarting("n1", 0) {
		t.Fatal("held past its grace")
	}
	if m.Restarting("n2", time.Minute) {
		t.Fatal("a failed node is held as restarting")
	}
	select {
	case msg := <-m.msgs:
		t.Fatalf("the announcement reached the user-message queue: %q", msg)
	default:
	}
	m.NotifyJoin(gossipNode("n1", `{"id":"n1"}`))
	if m.Restarting("n1", time.Minute) {
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
	if v := m.VersionOf("n1"); v != "v1.2.0" {
		t.Fatalf("version of a down node %q", v)
	}
	got := m.PeerLevels([]string{"n1", "n2", "n3"})
	want := []command.PeerLevel{
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

func TestOnlyLBMoved(t *testing.T) {
	base := Meta{NodeID: "n1", ClusterPort: 2377, Subnet: "10.42.1.0/24", Epoch: 1, Version: "v1", Level: 3, LB: 10, GK: "k1"}
	cases := map[string]struct {
		mut  func(*Meta)
		want bool
	}{
		"lb forward": {func(m *Meta) { m.LB = 11 }, true},
		"same":       {func(m *Meta) {}, true},
		"subnet":     {func(m *Meta) { m.Subnet = "10.42.2.0/24"; m.LB = 11 }, false},
		"epoch":      {func(m *Meta) { m.Epoch = 2 }, false},
		"version":    {func(m *Meta) { m.Version = "v2"; m.LB = 11 }, false},
		"level":      {func(m *Meta) { m.Level = 4 }, false},
		"keyring":    {func(m *Meta) { m.GK = "k2"; m.LB = 12 }, false},
		"port":       {func(m *Meta) { m.ClusterPort = 2378 }, false},
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
	gen, cancelGen := m.Subscribe()
	defer cancelGen()
	lb, cancelLB := m.LBSubscribe()
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
	if got := m.LBIndexes("self")["n1"]; got != 6 {
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

func TestTimingArithmetic(t *testing.T) {
	for _, c := range []struct {
		t       Timing
		n       int
		want    time.Duration
		wakeups float64
	}{
		// The old timers: 0.1+0.2+3*0.2; 3 wake-ups per 200 ms probe, 10 gossip ticks.
		{Timing{200 * time.Millisecond, 400 * time.Millisecond, 3, 100 * time.Millisecond}, 3, 900 * time.Millisecond, 25},
		{Timing{300 * time.Millisecond, 150 * time.Millisecond, 1, 300 * time.Millisecond}, 3, 750 * time.Millisecond, 13.333},
		// log10(100) = 2 doubles the suspicion.
		{Timing{300 * time.Millisecond, 150 * time.Millisecond, 1, 300 * time.Millisecond}, 100, 1050 * time.Millisecond, 13.333},
		{Timing{300 * time.Millisecond, 150 * time.Millisecond, 1, 300 * time.Millisecond}, 1, 750 * time.Millisecond, 13.333},
		// Tolerant: 0.4+0.8+0.8 up to 10 nodes, 0.4+0.8+1.6 at 100; 3 per 800 ms probe, 0.625 gossip ticks.
		{TolerantTiming, 3, 2000 * time.Millisecond, 4.375},
		{TolerantTiming, 100, 2800 * time.Millisecond, 4.375},
		// Fast, on raft's beats: 0.45+0.9+0.9 up to 10 nodes, 0.45+0.9+1.8 at 100; 3 per 900 ms probe, 0.556 gossip ticks.
		{DefaultTiming, 3, 2250 * time.Millisecond, 3.889},
		{DefaultTiming, 100, 3150 * time.Millisecond, 3.889},
	} {
		if got := c.t.ExpectedDetection(c.n); got != c.want {
			t.Errorf("%+v n=%d: detection %s, want %s", c.t, c.n, got, c.want)
		}
		if got := c.t.IdleWakeups(); math.Abs(got-c.wakeups) > 0.01 {
			t.Errorf("%+v: %.3f wake-ups/s, want %.3f", c.t, got, c.wakeups)
		}
	}
}

// Gossip's budget, now that raft finds a dead host first (DefaultTiming):
// its direct ping and its indirect probes each wait at least 400 ms (a
// starved agent is scheduled late, not never), it still finds a dead node
// within 2.25 s up to 10 nodes (fast's 900 ms probes, three raft beats;
// raft's silence finds it in 0.9 s) and within Swarm's 5 s heartbeat up
// to 100,
// and an idle member wakes for it at most 5 times a second.
func TestTimingBudget(t *testing.T) {
	for name, tl := range map[string]Timing{"default": DefaultTiming, "tolerant": TolerantTiming} {
		if tl.ProbeTimeout < 400*time.Millisecond || tl.ProbeInterval-tl.ProbeTimeout < 400*time.Millisecond {
			t.Errorf("%s probe: %s direct of %s interval, want >= 400 ms for each half", name, tl.ProbeTimeout, tl.ProbeInterval)
		}
		for _, n := range []int{3, 50, 100} {
			if got := tl.ExpectedDetection(n); got > 5*time.Second {
				t.Errorf("%s n=%d: detection %s > 5 s", name, n, got)
			}
		}
		if got := tl.ExpectedDetection(10); got > 2250*time.Millisecond {
			t.Errorf("%s detection at 10 nodes %s > 2.25 s", name, got)
		}
		if w := tl.IdleWakeups(); w > 5 {
			t.Errorf("%s: %.1f gossip wake-ups a second when idle, want <= 5", name, w)
		}
		// Gossip ticks at most every other probe: broadcasts also ride every
		// ping and ack, so a tick of its own per probe only adds wake-ups.
		if tl.GossipInterval < 2*tl.ProbeInterval {
			t.Errorf("%s: gossip every %s against probes every %s, want at most one tick per two probes", name, tl.GossipInterval, tl.ProbeInterval)
		}
	}
}

func TestShouldPublishLB(t *testing.T) {
	cases := []struct {
		name                     string
		published, local, demand uint64
		want                     bool
	}{
		{"no drain anywhere", 5, 9, 0, false},
		{"a drain already answered", 9, 12, 9, false},
		{"a drain ahead of what was gossiped", 5, 9, 7, true},
		{"a drain ahead of this node too: gossip progress", 5, 6, 9, true},
		{"nothing new to say", 9, 9, 12, false},
	}
	for _, c := range cases {
		if got := ShouldPublishLB(c.published, c.local, c.demand); got != c.want {
			t.Errorf("%s: ShouldPublishLB(%d, %d, %d) = %v, want %v", c.name, c.published, c.local, c.demand, got, c.want)
		}
	}
}

// The load balancer index is gossiped when the load balancer changed, and
// an index reached without a change only while some member's drain waits
// past what was gossiped; this node's own drains read the local index.
func TestLBIndexGossipedOnDemand(t *testing.T) {
	m := testMembership()
	gossiped := func() Meta {
		t.Helper()
		var meta Meta
		if err := json.Unmarshal(m.NodeMeta(512), &meta); err != nil {
			t.Fatal(err)
		}
		return meta
	}
	step := func(what string, do func(), wantLB, wantLocal uint64) {
		t.Helper()
		do()
		if got := gossiped().LB; got != wantLB {
			t.Errorf("%s: gossiped lb %d, want %d", what, got, wantLB)
		}
		if got := m.LBIndexes("self")["self"]; got != wantLocal {
			t.Errorf("%s: local lb %d, want %d", what, got, wantLocal)
		}
	}
	step("a change", func() { m.SetLBIndex(5, true) }, 5, 5)
	step("no change, no drain", func() { m.SetLBIndex(8, false) }, 5, 8)
	step("a drain at 7 joins", func() { m.NotifyJoin(gossipNode("n1", `{"id":"n1","dw":7}`)) }, 8, 8)
	step("answered: no more", func() { m.SetLBIndex(9, false) }, 8, 9)
	step("the drain moves to 12", func() { m.NotifyUpdate(gossipNode("n1", `{"id":"n1","dw":12}`)) }, 9, 9)
	step("progress toward it", func() { m.SetLBIndex(12, false) }, 12, 12)
	step("past it: quiet", func() { m.SetLBIndex(13, false) }, 12, 13)
	step("the drain ends", func() { m.NotifyUpdate(gossipNode("n1", `{"id":"n1"}`)) }, 12, 13)
	step("still quiet", func() { m.SetLBIndex(20, false) }, 12, 20)
	m.SetDrainWait(4)
	if got := gossiped(); got.DW != 4 || got.LB != 20 {
		t.Errorf("own drain: gossiped dw %d lb %d, want 4 and the freshest lb 20", got.DW, got.LB)
	}
}

func TestReconnectPick(t *testing.T) {
	gone := []string{"a:7946", "b:7946", "c:7946"}
	cases := []struct {
		name       string
		gone       []string
		alive      int
		roll, pick float64
		want       []string
	}{
		{"nothing gone", nil, 3, 0, 0, nil},
		{"alone after a partition: always knocks", gone[:2], 1, 0.99, 0.99, []string{"b:7946"}},
		{"no alive count counts as one", gone[:1], 0, 0.99, 0, []string{"a:7946"}},
		{"one of 100 gone: rarely", gone[:1], 99, 0.5, 0, nil},
		{"one of 100 gone: on a low roll", gone[:1], 99, 0.005, 0, []string{"a:7946"}},
		{"many gone: one knock, not all", gone, 75, 0.01, 0.5, []string{"b:7946"}},
		{"roll at the probability: no", gone[:1], 2, 0.5, 0, nil},
		{"pick 1.0 stays in range", gone, 1, 0, 1.0, []string{"c:7946"}},
	}
	for _, c := range cases {
		if got := ReconnectPick(c.gone, c.alive, c.roll, c.pick); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: ReconnectPick(%v, %d, %v, %v) = %v, want %v", c.name, c.gone, c.alive, c.roll, c.pick, got, c.want)
		}
	}
}

// A restart announcement naming a member never seen, or a name too long to
// be a node ID, is dropped: any member may send one, and made-up names
// used to grow the map without bound.
func TestMembershipRestartUnknownDropped(t *testing.T) {
	m := testMembership()
	m.NotifyJoin(gossipNode("n1", `{"id":"n1"}`))
	for i := 0; i < 1000; i++ {
		m.NotifyMsg(append([]byte{restartMsgType}, fmt.Sprintf("made-up-%d", i)...))
	}
	m.NotifyMsg(append([]byte{restartMsgType}, strings.Repeat("n", maxNodeID+1)...))
	m.NotifyMsg(append([]byte{restartMsgType}, "n1"...))
	m.mu.Lock()
	n := len(m.restarts)
	m.mu.Unlock()
	if n != 1 || !m.Restarting("n1", time.Minute) {
		t.Fatalf("%d announcements kept, want n1's alone", n)
	}
	select {
	case msg := <-m.msgs:
		t.Fatalf("an announcement reached the user-message queue: %q", msg)
	default:
	}
}
