package test

// A node that left and joins again, as an operator does it.

import (
	"encoding/json"
	"fmt"
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
