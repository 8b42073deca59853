package test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// Timeouts of the end-to-end tests. Generous: the machines are shared and a
// test's timings are never asserted, only bounded.
const (
	formTimeout     = 90 * time.Second
	electionTimeout = 60 * time.Second
	downTimeout     = 60 * time.Second
	testTimeout     = 4 * time.Minute
)

// nodesBy indexes nodes by ID.
func nodesBy(nodes []api.Node) map[string]api.Node {
	m := make(map[string]api.Node, len(nodes))
	for _, n := range nodes {
		m[n.ID] = n
	}
	return m
}

// countManager counts nodes per manager_status ("" counts non-voters).
func countManager(nodes []api.Node) map[string]int {
	m := map[string]int{}
	for _, n := range nodes {
		m[n.ManagerStatus]++
	}
	return m
}

// nodeIDs returns the node ID of every host, in order.
func nodeIDs(t testing.TB, hosts ...*harness.Host) []string {
	t.Helper()
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		ids[i] = h.NodeID(t)
	}
	return ids
}

// hostsExcept returns hosts without the excluded ones.
func hostsExcept(hosts []*harness.Host, exclude ...*harness.Host) []*harness.Host {
	var out []*harness.Host
	for _, h := range hosts {
		skip := false
		for _, x := range exclude {
			skip = skip || h == x
		}
		if !skip {
			out = append(out, h)
		}
	}
	return out
}

// labelWrite sets label k=v on node id through host h.
func labelWrite(h *harness.Host, id, k, v string) error {
	_, _, err := h.CLI("node", "update", "--label-add", k+"="+v, id)
	return err
}

// labelSeen holds when node id carries label k=v on every one of hosts.
func labelSeen(id, k, v string, hosts ...*harness.Host) harness.Condition {
	return func() (bool, string) {
		for _, h := range hosts {
			n, err := h.Node(id)
			if err != nil {
				return false, err.Error()
			}
			if n.Labels[k] != v {
				return false, fmt.Sprintf("%s sees labels %v on %s", h.Name, n.Labels, id)
			}
		}
		return true, ""
	}
}

// nodeStatusSeen holds when every one of hosts sees node id with status.
func nodeStatusSeen(id, status string, hosts ...*harness.Host) harness.Condition {
	return func() (bool, string) {
		for _, h := range hosts {
			nodes, err := h.Nodes()
			if err != nil {
				return false, err.Error()
			}
			n, ok := nodesBy(nodes)[id]
			if !ok || n.Status != status {
				return false, fmt.Sprintf("%s sees %s", h.Name, harness.Summary(nodes))
			}
		}
		return true, ""
	}
}

// cliStderr returns the stderr of a failed CLI call, or the error text.
func cliStderr(err error) string {
	var ce *harness.CLIError
	if errors.As(err, &ce) {
		return strings.TrimSpace(ce.Stderr)
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// mustFail fails t unless err is a non-zero CLI exit whose stderr mentions
// one of words (case-insensitive).
func mustFail(t testing.TB, err error, what string, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want a refusal", what)
	}
	msg := strings.ToLower(cliStderr(err))
	if msg == "" {
		t.Fatalf("%s: failed with an empty stderr (%v)", what, err)
	}
	for _, w := range words {
		if strings.Contains(msg, strings.ToLower(w)) {
			return
		}
	}
	t.Fatalf("%s: error %q mentions none of %q", what, msg, words)
}

// votersCondition holds when `node ls` on every one of hosts shows n voters
// (one leader, n-1 reachable) among want nodes, all ready.
func votersCondition(want, n int, hosts ...*harness.Host) harness.Condition {
	return func() (bool, string) {
		for _, h := range hosts {
			nodes, err := h.Nodes()
			if err != nil {
				return false, err.Error()
			}
			m := countManager(nodes)
			ready := 0
			for _, nd := range nodes {
				if nd.Status == api.NodeReady {
					ready++
				}
			}
			if len(nodes) != want || ready != want || m[api.ManagerLeader] != 1 || m[api.ManagerReachable] != n-1 {
				return false, fmt.Sprintf("%s sees %s", h.Name, harness.Summary(nodes))
			}
		}
		return true, ""
	}
}

// waitVoters waits until every running host sees want ready nodes of which
// n are voters.
func waitVoters(t testing.TB, c *harness.Cluster, want, n int) {
	t.Helper()
	harness.Eventually(t, formTimeout, votersCondition(want, n, c.Running()...), "%d voters among %d ready nodes", n, want)
}

// writeSucceeds holds once a label write on node id through h is accepted.
func writeSucceeds(h *harness.Host, id, k, v string) harness.Condition {
	return func() (bool, string) {
		if err := labelWrite(h, id, k, v); err != nil {
			return false, err.Error()
		}
		return true, ""
	}
}
