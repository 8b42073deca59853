package scheduler_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/scheduler"
	"github.com/shoal-org/shoal/node/scheduler/simcluster"
)

// nodeClocks are the skews of the node that dates a move's reports against
// the leader's clock.
var nodeClocks = []time.Duration{-time.Hour, -20 * time.Second, 0, 20 * time.Second, time.Hour}

// TestRebalanceDelayNodeClock: the delay between two rebalancing moves
// counts from when the leader saw the last move start, not from the start
// as the node's clock dates it. Before, a node an hour ahead held the next
// move back an hour, and one 20 s behind let it start at once (no delay).
func TestRebalanceDelayNodeClock(t *testing.T) {
	for _, skew := range nodeClocks {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			c := cluster(t, "n1", "n2")
			sp := testSpec("web", 4)
			sp.UpdateConfig.Delay = 10 * time.Second
			s := c.CreateService(sp)
			converge(t, c)
			c.AddNode("n3", nil)
			c.AddNode("n4", nil)
			p := step(t, c)
			if len(p.Create) != 1 {
				t.Fatalf("first move: %s", simcluster.Summarize(p))
			}
			x := p.Create[0].ID
			c.Report()
			c.Tasks[x].StartedAt = c.Now.Add(skew) // the node's clock dates the start
			c.Tasks[x].UpdatedAt = c.Now.Add(skew)
			started := c.Now
			step(t, c) // the old task stops
			c.Report()
			p = step(t, c)
			if want := started.Add(10 * time.Second); len(p.Create) != 0 || !p.NextWake.Equal(want) {
				t.Fatalf("after the first move: %s, wake %v; want no move, wake at %v (the delay after the leader saw the start)",
					simcluster.Summarize(p), p.NextWake, want)
			}
			c.Now = started.Add(10 * time.Second)
			if p := step(t, c); len(p.Create) != 1 || p.Create[0].Replaces == "" {
				t.Fatalf("no second move once the delay passed: %s", simcluster.Summarize(p))
			}
			converge(t, c)
			if got := spreadOf(c, s.ID, "n1", "n2", "n3", "n4"); got != "n1=1 n2=1 n3=1 n4=1" {
				t.Fatalf("spread %s", got)
			}
		})
	}
}

// TestRebalanceBackoffNodeClock: after a move fails, the service makes no
// other move for the backoff after the leader saw the failure, whatever
// the clock of the node that dated it. Before, a node an hour behind let
// the next move start at once (failing moves in a loop), and one an hour
// ahead stopped rebalancing for an hour.
func TestRebalanceBackoffNodeClock(t *testing.T) {
	for _, skew := range nodeClocks {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			c := cluster(t, "n1")
			s := c.CreateService(testSpec("web", 2))
			converge(t, c)
			c.AddNode("n2", nil)
			p := step(t, c)
			if len(p.Create) != 1 || p.Create[0].Replaces == "" {
				t.Fatalf("move: %s", simcluster.Summarize(p))
			}
			x := p.Create[0].ID
			c.Tasks[x].State, c.Tasks[x].UpdatedAt = api.TaskRejected, c.Now.Add(skew)
			failed := c.Now
			p = step(t, c)
			if want := failed.Add(scheduler.RebalanceBackoff); len(p.Create) != 0 || !p.NextWake.Equal(want) {
				t.Fatalf("after the failed move: %s, wake %v; want no move, wake at %v", simcluster.Summarize(p), p.NextWake, want)
			}
			c.Now = failed.Add(scheduler.RebalanceBackoff / 2)
			if p := step(t, c); len(p.Create) != 0 {
				t.Fatalf("a move within the backoff: %s", simcluster.Summarize(p))
			}
			c.Now = failed.Add(scheduler.RebalanceBackoff)
			if p := step(t, c); len(p.Create) != 1 || p.Create[0].Replaces == "" {
				t.Fatalf("no move once the backoff passed: %s", simcluster.Summarize(p))
			}
			converge(t, c)
			if got := spreadOf(c, s.ID, "n1", "n2"); got != "n1=1 n2=1" {
				t.Fatalf("spread %s", got)
			}
		})
	}
}
