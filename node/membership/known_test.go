package membership

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

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
