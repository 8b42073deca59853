package test

// `shoal events` on a node whose agent was restarted, as an operator reads
// it after an upgrade or a crash.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestEventsAfterAgentRestart: after h2's agent restarts, the first change
// made in the cluster (a node label here) is in h2's `events`. Before, the
// loop took the states up to the last index of h2's raft log as replayed
// history; that log ends with entries raft writes for itself (the term's
// no-op, barriers), which never reach the store, so the store stayed below
// it until the next write, and that write's news was dropped as history.
func TestEventsAfterAgentRestart(t *testing.T) {
	c := harness.New(t, 3)
	c.Form(t)
	h1, h2 := c.Host(1), c.Host(2)
	if err := h2.Restart(); err != nil {
		t.Fatal(err)
	}
	c.WaitReady(t, 60*time.Second, 3)
	// What the test writes must come after h2's replay (a write that lands
	// while h2 replays is history, by design): h2 shows the cluster again.
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		nodes, err := h2.Nodes()
		return err == nil && len(nodes) == 3, fmt.Sprint(len(nodes), err)
	}, "h2 serves its replica")
	h1.MustCLI(t, "node", "update", "--label-add", "after=restart", h1.NS)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		out, _, err := h2.CLI("events", "--since", "5m", "--until", "0s", "--filter", "type=node", "--format", "json")
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var ev api.Event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("events line %q: %v", line, err)
			}
			seen = append(seen, ev.Action+" "+ev.Name)
			if ev.Action == "updated" && ev.Name == h1.NS {
				return true, ""
			}
		}
		return false, fmt.Sprint(seen)
	}, "h2's events show the label update made after its restart")
}
