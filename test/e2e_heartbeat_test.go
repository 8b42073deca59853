package test

// Idle raft traffic (issue 10): hashicorp/raft sends every follower a
// heartbeat every 100–200 ms; the consensus transport lets one reach a
// follower at most every HeartbeatInterval (300 ms) and keeps the leader.
// The count is taken at the follower's cluster port, over the real TLS
// transport, with an nftables counter in its namespace.

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/test/harness"
)

// raftRequestCounter counts the TCP segments carrying data (PSH) that
// reach port 2377 in h's namespace: one per RPC a peer sends it, each
// under one TLS record at idle.
type raftRequestCounter struct {
	ns string
}

const hbCountTable = "shoal_test_hbcount"

func newRaftRequestCounter(t *testing.T, h *harness.Host) *raftRequestCounter {
	t.Helper()
	rc := &raftRequestCounter{ns: h.NS}
	script := fmt.Sprintf(`table inet %[1]s {
	chain in {
		type filter hook input priority -300; policy accept;
		tcp dport %[2]d tcp flags & psh == psh counter
	}
}
`, hbCountTable, harness.ClusterPort)
	cmd := exec.Command("ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft counter in %s: %v: %s", h.NS, err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "exec", h.NS, "nft", "delete", "table", "inet", hbCountTable).Run()
	})
	return rc
}

var nftPackets = regexp.MustCompile(`counter packets (\d+)`)

func (rc *raftRequestCounter) packets(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", rc.ns, "nft", "list", "table", "inet", hbCountTable).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list in %s: %v: %s", rc.ns, err, out)
	}
	m := nftPackets.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in %s: %s", rc.ns, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestIdleRaftHeartbeatsThinned: over 10 s of idleness a follower of a
// formed 3-node cluster receives at most one raft heartbeat per 300 ms
// (plus the few empty appends raft sends every 2–4 s), where raft alone
// sends one every 100–200 ms (~70 in 10 s), and it keeps its leader.
func TestIdleRaftHeartbeatsThinned(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	waitVoters(t, c, 3, 3)
	leader := c.Leader(t, electionTimeout)
	f := hostsExcept(c.Hosts(), leader)[0]
	leaderID := leader.NodeID(t)
	rc := newRaftRequestCounter(t, f)

	const window = 10 * time.Second
	st0, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	before := rc.packets(t)
	start := time.Now()
	// Poll over the window that the follower keeps its leader.
	for time.Since(start) < window {
		st, err := f.Status()
		if err != nil {
			t.Fatalf("status of %s: %v", f.Name, err)
		}
		if st.Leader != leaderID {
			t.Fatalf("after %v idle %s follows %q, want %q", time.Since(start), f.Name, st.Leader, leaderID)
		}
		time.Sleep(harness.PollInterval)
	}
	elapsed := time.Since(start)
	got := rc.packets(t) - before
	// Heartbeats: at most one per 300 ms and one at the start; empty
	// appends: one per 2–4 s; anything else a leader may send an idle
	// follower: a few.
	limit := int(elapsed/(300*time.Millisecond)) + 1 + int(elapsed/(2*time.Second)) + 5
	st1, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s received %d raft requests in %v (limit %d); the leader's log grew by %d entries",
		f.Name, got, elapsed.Round(time.Millisecond), limit, st1.LastIndex-st0.LastIndex)
	if got > limit {
		t.Errorf("%s received %d requests on the cluster port in %v idle, want at most %d", f.Name, got, elapsed, limit)
	}
}
