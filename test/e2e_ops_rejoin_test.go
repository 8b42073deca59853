package test

// A node that left and joins again, as an operator does it.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestJoinNotMarkedDown: `shoal leave` on h3, then `shoal join` again:
// the node is ready from its join on, with no `down` in between. Before,
// every join into a cluster whose leader had led for more than 3 s was
// marked down a few ms after `joined` (its record is committed before it
// joins gossip) and ready again ~100 ms later: a `node down` event and a
// status flap for each new node.
func TestJoinNotMarkedDown(t *testing.T) {
	c := harness.New(t, 3)
	c.Form(t)
	h1, h3 := c.Host(1), c.Host(3)
	h3.MustCLI(t, "leave")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		nodes, err := h1.Nodes()
		return err == nil && len(nodes) == 2, fmt.Sprintf("%d nodes (%v)", len(nodes), err)
	}, "h3 gone from node ls")
	// Not a poll: an operator joins again seconds later, when the
	// leader's last raft answer from h3 is older than its heard window
	// (500 ms) and nothing but gossip can keep h3 ready. Joined at once,
	// that stale answer hid the bug.
	time.Sleep(3 * time.Second)
	token := strings.TrimSpace(h1.MustCLI(t, "token"))
	h3.MustCLI(t, "join", "--token", token, h1.Addr())

	// Autopilot makes h3 a voter again (3 nodes, 3 voters) once it is
	// ready; the bug's down and ready came before that.
	var n api.Node
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		var err error
		n, err = h1.Node(h3.NS)
		return err == nil && n.Status == api.NodeReady && n.ManagerStatus == api.ManagerReachable,
			fmt.Sprintf("status %q, manager status %q (%v)", n.Status, n.ManagerStatus, err)
	}, "h3 ready and a voter again")
	if n.StatusChangedAt.After(n.CreatedAt) {
		t.Errorf("h3's status changed at %s, after its join at %s: it was marked down and ready again",
			n.StatusChangedAt.Format(time.RFC3339Nano), n.CreatedAt.Format(time.RFC3339Nano))
	}
	out := h1.MustCLI(t, "events", "--since", "2m", "--until", "0s", "--filter", "type=node", "--filter", "name="+h3.NS, "--format", "json")
	var story []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events line %q: %v", line, err)
		}
		if ev.Action == "joined" {
			story = nil // from the last join on
		}
		story = append(story, ev.Action)
	}
	for _, a := range story {
		if a == api.NodeDown {
			t.Errorf("h3 marked down after it joined again; its node events since: %v\n%s", story, out)
		}
	}
}

// TestJoinAfterRecoveryWhileAnotherNodeLeads: after a --force-new-cluster
// recovery on h1 (which snapshots the state with h1 the only voter), h2
// and h3 come back and vote again, and h2 or h3 takes over the lead (h1
// restarted). A fourth node then joins: it is ready from its join on.
// Before, the joiner installed the leader's snapshot, whose configuration
// knows only h1 as a voter, and its raft gate refused every further
// connection of the actual leader as "not a member of the raft
// configuration" until it had heard from no leader for 10 s: the leader
// marked it down ("raft heard nothing") a second after its join and ready
// ~10 s later, and `shoal join` took those 10 s.
func TestJoinAfterRecoveryWhileAnotherNodeLeads(t *testing.T) {
	c := harness.New(t, 3)
	token := c.Form(t)
	waitVoters(t, c, 3, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	for _, h := range []*harness.Host{h2, h3} {
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	if err := h1.KillProcess(); err != nil {
		t.Fatal(err)
	}
	h1.MustStart(t, "--force-new-cluster")
	for _, h := range []*harness.Host{h2, h3} {
		if err := h.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	waitVoters(t, c, 3, 3)
	if err := h1.Restart(); err != nil {
		t.Fatal(err)
	}
	var leader *harness.Host
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		leader = c.Leader(t, 30*time.Second)
		return leader != h1, "leader " + leader.Name
	}, "a leader other than h1")
	waitVoters(t, c, 3, 3)

	h4 := c.AddHost()
	h4.MustStart(t)
	// A voter promoted a moment ago may not hold the key that opens the
	// CA yet: the leader pulls it from another voter during the join,
	// which then succeeds at once (it was refused with "the leader cannot
	// sign certificates yet: … only voters hold the key-encryption key").
	if err := h4.Join(token, leader); err != nil {
		t.Fatalf("h4 join through %s right after the leader change: %v", leader.Name, err)
	}
	c.WaitReady(t, 60*time.Second, 4)
	n, err := leader.Node(h4.NS)
	if err != nil {
		t.Fatal(err)
	}
	if n.StatusChangedAt.After(n.CreatedAt) {
		out, _, _ := leader.CLI("events", "--since", "2m", "--until", "0s", "--filter", "type=node", "--filter", "name="+h4.NS)
		t.Fatalf("h4's status changed at %s, after its join at %s: it was marked down and ready again; its events:\n%s",
			n.StatusChangedAt.Format(time.RFC3339Nano), n.CreatedAt.Format(time.RFC3339Nano), out)
	}
}

// TestJoinWhileLeaderLacksKEK: the leader elected after the old one died
// does not hold the key-encryption key yet (made so here by deleting it on
// the survivors, as a voter promoted a moment ago lacks it until it pulls
// it from another voter), and the only holder is coming back. A join
// right then succeeds: the leader pulls the key during the join. It was
// refused with "the leader cannot sign certificates yet: … only voters
// hold the key-encryption key".
func TestJoinWhileLeaderLacksKEK(t *testing.T) {
	c := harness.New(t, 3)
	token := c.Form(t)
	waitVoters(t, c, 3, 3)
	old := c.Leader(t, time.Minute)
	var others []*harness.Host
	for _, h := range c.Hosts() {
		if h != old {
			others = append(others, h)
		}
	}
	h4 := c.AddHost()
	h4.MustStart(t)
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader(t, time.Minute, others...)
	for _, h := range others {
		if err := os.Remove(filepath.Join(h.DataDir, "cluster", "kek")); err != nil {
			t.Fatal(err)
		}
	}
	restarted := make(chan error, 1)
	go func() { restarted <- old.Restart() }()
	err := h4.Join(token, leader)
	if rerr := <-restarted; rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("h4 join through the new leader %s: %v", leader.Name, err)
	}
	c.WaitReady(t, 60*time.Second, 4)
}
