package test

// The voters autopilot chose, as the rest of the cluster sees them: the
// `node.role==manager` constraint and the `promoted` node events follow
// the Raft configuration, not only the node that ran `init`.

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestRoleConstraintFollowsVoters: on a fresh 3-node cluster every node is
// a voter (node ls: leader, reachable, reachable), so a global service
// constrained to node.role==manager runs on all three and none is left for
// node.role==worker; and `events --filter type=node` tells of the two
// promotions. Before, the stored voter flag stayed what init and join wrote:
// the manager service ran on the first node only, the worker service on the
// two others, and no `promoted` event ever came.
func TestRoleConstraintFollowsVoters(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		voters := 0
		for _, n := range opsNodes(t, h2) {
			if n.ManagerStatus == api.ManagerLeader || n.ManagerStatus == api.ManagerReachable {
				voters++
			}
		}
		return voters == 3, fmt.Sprintf("%d voters", voters)
	}, "3 voters in node ls")

	h1.MustCLI(t, "service", "create", "-d", "--name", "mgr", "--mode", "global", "--constraint", "node.role==manager", "bb:1", "sleep", "1000")
	h1.MustCLI(t, "service", "create", "-d", "--name", "wrk", "--mode", "global", "--constraint", "node.role==worker", "bb:1", "sleep", "1000")
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		on := map[string]bool{}
		for _, tk := range tasksOf(t, h2, "mgr") {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
				on[tk.Node] = true
			}
		}
		wrk := tasksOf(t, h2, "wrk")
		var nodes []string
		for n := range on {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		return len(on) == 3 && len(wrk) == 0, fmt.Sprintf("mgr running on %v; wrk has %d tasks", nodes, len(wrk))
	}, "node.role==manager on all 3 voters, node.role==worker on none")

	// Asked of h1, which saw every change live: a node that joined replays
	// nothing of what its replica caught up on when it joined (events are
	// what the node saw happen), and h2's promotion may be among those.
	out := h1.MustCLI(t, "events", "--since", "10m", "--until", "0s", "--filter", "type=node", "--format", "json")
	promoted := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events line %q: %v", line, err)
		}
		if ev.Action == "promoted" {
			promoted[ev.Name] = true
		}
	}
	if !promoted[c.Host(2).NS] || !promoted[c.Host(3).NS] {
		t.Fatalf("events: promoted %v, want the two joined nodes; all node events:\n%s", promoted, out)
	}
}
