package test

// End-to-end tests of the cluster core: forming, joining, voters, leader
// failure, restarts, partitions, node removal and disaster recovery. They
// drive only the CLI, as DESIGN.md states, through test/harness.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestClusterForms: three nodes, every node sees three ready nodes, one
// leader and two reachable voters, and the same cluster ID.
func TestClusterForms(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	ids := nodeIDs(t, c.Hosts()...)
	harness.Eventually(t, formTimeout, func() (bool, string) {
		for _, h := range c.Hosts() {
			nodes, err := h.Nodes()
			if err != nil {
				return false, err.Error()
			}
			m := countManager(nodes)
			if len(nodes) != 3 || m[api.ManagerLeader] != 1 || m[api.ManagerReachable] != 2 {
				return false, fmt.Sprintf("%s sees %s", h.Name, harness.Summary(nodes))
			}
			byID := nodesBy(nodes)
			for i, id := range ids {
				n, ok := byID[id]
				if !ok || n.Status != api.NodeReady || !n.Voter || n.Addr != c.Host(i+1).IP {
					return false, fmt.Sprintf("%s sees node %s as %+v", h.Name, id, n)
				}
			}
		}
		return true, ""
	}, "3 ready voters, one leader, on every node")
	var clusterID string
	for _, h := range c.Hosts() {
		st, err := h.Status()
		if err != nil {
			t.Fatal(err)
		}
		if clusterID == "" {
			clusterID = st.ClusterID
		}
		if st.ClusterID == "" || st.ClusterID != clusterID || !st.Joined || len(st.Voters) != 3 {
			t.Errorf("%s status %+v, want cluster %s, joined, 3 voters", h.Name, st, clusterID)
		}
	}
}

// TestJoinThroughNonInitNode: a node joins through a member that did not
// run init.
func TestJoinThroughNonInitNode(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.StartAll(t)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	h1.MustCLI(t, "init")
	token := h1.Token(t)
	if err := h2.Join(token, h1); err != nil {
		t.Fatal(err)
	}
	c.WaitReady(t, formTimeout, 2, h1, h2)
	if err := h3.Join(token, h2); err != nil {
		t.Fatalf("join through h2 (not the init node): %v", err)
	}
	c.WaitReady(t, formTimeout, 3)
	id3 := h3.NodeID(t)
	harness.Eventually(t, formTimeout, nodeStatusSeen(id3, api.NodeReady, h1, h2, h3), "h3 ready everywhere")
}

// TestJoinRefused: a wrong token and a rotated token are refused with a
// clear message and a non-zero exit, and nothing joins; the new token works.
func TestJoinRefused(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.StartAll(t)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	h1.MustCLI(t, "init")
	token := h1.Token(t)
	if err := h2.Join(token, h1); err != nil {
		t.Fatal(err)
	}
	c.WaitReady(t, formTimeout, 2, h1, h2)

	nothingJoined := func(what string) {
		t.Helper()
		for _, h := range []*harness.Host{h1, h2} {
			nodes, err := h.Nodes()
			if err != nil {
				t.Fatal(err)
			}
			if len(nodes) != 2 {
				t.Fatalf("after %s, %s sees %s, want the 2 original nodes", what, h.Name, harness.Summary(nodes))
			}
		}
		if st, err := h3.Status(); err != nil || st.Joined || st.ClusterID != "" {
			t.Fatalf("after %s, h3 status %+v (%v), want not joined", what, st, err)
		}
	}

	// Same CA hash, wrong secret.
	i := strings.LastIndex(token, "-")
	if i < 0 || i == len(token)-1 {
		t.Fatalf("token %q does not look like SHOAL-1-<hash>-<secret>", token)
	}
	wrong := token[:i+1] + strings.Repeat("a", len(token)-i-1)
	if wrong == token {
		wrong = token[:i+1] + strings.Repeat("b", len(token)-i-1)
	}
	mustFail(t, h3.Join(wrong, h1), "join with a wrong secret", "token")
	nothingJoined("a wrong secret")

	// Garbage is refused before any connection.
	mustFail(t, h3.Join("not-a-token", h1), "join with a malformed token", "token")
	nothingJoined("a malformed token")

	// Rotation: the old token stops working, from any node.
	h1.MustCLI(t, "token", "--rotate")
	fresh := h2.Token(t)
	if fresh == token {
		t.Fatal("token --rotate did not change the token")
	}
	mustFail(t, h3.Join(token, h1), "join with the rotated-out token", "token")
	mustFail(t, h3.Join(token, h2), "join with the rotated-out token via h2", "token")
	nothingJoined("a rotated token")

	if err := h3.Join(fresh, h2); err != nil {
		t.Fatalf("join with the new token: %v", err)
	}
	c.WaitReady(t, formTimeout, 3)
}

// TestVotersGrowToFive: the 4th node is a non-voter; with a 5th, autopilot
// makes all five voters.
func TestVotersGrowToFive(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	token := c.Form(t)
	waitVoters(t, c, 3, 3)

	h4 := c.AddHost()
	h4.MustStart(t)
	if err := h4.Join(token, c.Host(2)); err != nil {
		t.Fatal(err)
	}
	waitVoters(t, c, 4, 3)
	id4 := h4.NodeID(t)
	if n, err := c.Host(1).Node(id4); err != nil || n.Voter || n.ManagerStatus != "" {
		t.Fatalf("4th node %+v (%v), want a non-voter with empty manager_status", n, err)
	}

	h5 := c.AddHost()
	h5.MustStart(t)
	if err := h5.Join(token, h4); err != nil {
		t.Fatal(err)
	}
	waitVoters(t, c, 5, 5)
	for _, h := range c.Hosts() {
		if st, err := h.Status(); err != nil || len(st.Voters) != 5 {
			t.Errorf("%s status %+v (%v), want 5 voters", h.Name, st, err)
		}
	}
}

// TestLeaderHostKilled: pulling the leader's plug elects a new leader among
// the survivors, writes succeed through every survivor and the old leader
// is marked down; when its host comes back it is a ready voter again. Under
// each failure-detection profile: tolerant's raft heartbeats come once a
// second and a follower's own timeout is 2–4 s, so what elects quickly there
// is gossip's verdict (ExpediteElection).
func TestLeaderHostKilled(t *testing.T) {
	for _, profile := range []string{"fast", "tolerant"} {
		t.Run(profile, func(t *testing.T) { leaderHostKilled(t, profile) })
	}
}

// formAndKillLeader forms c with every host a voter, notes each host's
// node ID and kills the leader's host: where a failover test starts.
func formAndKillLeader(t *testing.T, c *harness.Cluster) (old *harness.Host, survivors []*harness.Host, ids map[*harness.Host]string) {
	t.Helper()
	c.Form(t)
	n := len(c.Hosts())
	waitVoters(t, c, n, n)
	ids = map[*harness.Host]string{}
	for _, h := range c.Hosts() {
		ids[h] = h.NodeID(t)
	}
	old = c.Leader(t, electionTimeout)
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	return old, hostsExcept(c.Hosts(), old), ids
}

func leaderHostKilled(t *testing.T, profile string) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3, harness.WithAgentArgs("--gossip-profile", profile))
	old, survivors, ids := formAndKillLeader(t, c)
	leader := c.Leader(t, electionTimeout, survivors...)
	if leader == old {
		t.Fatal("the killed host is still the leader")
	}
	for _, h := range survivors {
		harness.Eventually(t, electionTimeout, writeSucceeds(h, ids[h], "written-by", h.Name), "write through %s", h.Name)
	}
	for _, h := range survivors {
		harness.Eventually(t, electionTimeout, labelSeen(ids[h], "written-by", h.Name, survivors...), "label from %s", h.Name)
	}
	harness.Eventually(t, downTimeout, nodeStatusSeen(ids[old], api.NodeDown, survivors...), "old leader down")
	nodes, err := leader.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	if n := nodesBy(nodes)[ids[old]]; n.ManagerStatus == api.ManagerLeader {
		t.Errorf("dead node still listed as leader: %s", harness.Summary(nodes))
	}

	// The old leader's host comes back: same node, ready, a voter again,
	// and it takes writes.
	if err := old.Restart(); err != nil {
		t.Fatal(err)
	}
	waitVoters(t, c, 3, 3)
	if got := old.NodeID(t); got != ids[old] {
		t.Fatalf("old leader came back as %s, was %s", got, ids[old])
	}
	harness.Eventually(t, electionTimeout, writeSucceeds(old, ids[old], "back", "yes"), "write through the returned host")
}

// TestAgentKill9Restart: an agent killed with SIGKILL comes back with the
// same node ID and is ready again on every node.
func TestAgentKill9Restart(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	leader := c.Leader(t, electionTimeout)
	for _, h := range []*harness.Host{hostsExcept(c.Hosts(), leader)[0], leader} {
		id := h.NodeID(t)
		if err := h.KillProcess(); err != nil {
			t.Fatal(err)
		}
		h.MustStart(t)
		if got := h.NodeID(t); got != id {
			t.Fatalf("%s came back as node %s, was %s", h.Name, got, id)
		}
		c.WaitReady(t, formTimeout, 3)
		harness.Eventually(t, electionTimeout, writeSucceeds(h, id, "restarted", "yes"), "write through restarted %s", h.Name)
	}
}

// TestFullClusterRestart: stopping every agent and starting them again keeps
// the cluster ID, the nodes and the state.
func TestFullClusterRestart(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	waitVoters(t, c, 3, 3)
	h1 := c.Host(1)
	ids := nodeIDs(t, c.Hosts()...)
	before, err := h1.Status()
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, electionTimeout, writeSucceeds(h1, ids[1], "before", "restart"), "write before restart")

	for _, h := range c.Hosts() {
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	c.StartAll(t)
	c.WaitReady(t, formTimeout, 3)
	for i, h := range c.Hosts() {
		st, err := h.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.ClusterID != before.ClusterID || st.NodeID != ids[i] {
			t.Errorf("%s after restart: cluster %s node %s, want %s %s", h.Name, st.ClusterID, st.NodeID, before.ClusterID, ids[i])
		}
	}
	harness.Eventually(t, formTimeout, labelSeen(ids[1], "before", "restart", c.Hosts()...), "label survives the restart")
	harness.Eventually(t, electionTimeout, writeSucceeds(c.Host(3), ids[2], "after", "restart"), "write after restart")
}

// isolatedWriteFails checks that a write through an isolated host fails with
// a non-zero exit and a message about quorum or the leader within 15 s.
func isolatedWriteFails(t *testing.T, h *harness.Host, id string) {
	t.Helper()
	const bound = 15 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), bound+10*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err := h.CLIContext(ctx, "node", "update", "--label-add", "isolated=write", id)
	took := time.Since(start)
	mustFail(t, err, "write on the isolated "+h.Name, "quorum", "leader")
	if took > bound {
		t.Fatalf("write on the isolated %s took %s to fail, want < %s", h.Name, took.Round(time.Millisecond), bound)
	}
	t.Logf("write on isolated %s refused after %s: %s", h.Name, took.Round(time.Millisecond), cliStderr(err))
}

// TestMinorityPartition: a node cut off from the majority refuses writes
// within a bounded time while the majority keeps working; after the heal it
// accepts writes again. Done for a follower, then for the leader.
func TestMinorityPartition(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	waitVoters(t, c, 3, 3)
	ids := map[*harness.Host]string{}
	for _, h := range c.Hosts() {
		ids[h] = h.NodeID(t)
	}
	leader := c.Leader(t, electionTimeout)
	follower := hostsExcept(c.Hosts(), leader)[0]

	for round, iso := range []*harness.Host{follower, leader} {
		t.Logf("round %d: isolating %s", round, iso.Name)
		if err := c.Partition(iso); err != nil {
			t.Fatal(err)
		}
		majority := hostsExcept(c.Hosts(), iso)
		isolatedWriteFails(t, iso, ids[iso])
		key := fmt.Sprintf("round%d", round)
		harness.Eventually(t, electionTimeout, writeSucceeds(majority[0], ids[majority[1]], key, "majority"), "majority write")
		if err := c.Heal(); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, electionTimeout, writeSucceeds(iso, ids[iso], key, "healed"), "write on %s after heal", iso.Name)
		harness.Eventually(t, electionTimeout, labelSeen(ids[majority[1]], key, "majority", c.Hosts()...), "majority write replicated to %s", iso.Name)
		harness.Eventually(t, electionTimeout, labelSeen(ids[iso], key, "healed", c.Hosts()...), "healed write replicated")
		c.WaitReady(t, formTimeout, 3)
	}
}

// TestRemovedNodeRefused: a dead node removed with `node rm --force` is
// refused when it comes back; the cluster keeps working.
func TestRemovedNodeRefused(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	waitVoters(t, c, 3, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	id1, id3 := h1.NodeID(t), h3.NodeID(t)
	if err := h3.Kill(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, downTimeout, nodeStatusSeen(id3, api.NodeDown, h1, h2), "h3 down")
	h1.MustCLI(t, "node", "rm", "--force", id3)
	gone := func() (bool, string) {
		for _, h := range []*harness.Host{h1, h2} {
			nodes, err := h.Nodes()
			if err != nil {
				return false, err.Error()
			}
			if _, ok := nodesBy(nodes)[id3]; ok || len(nodes) != 2 {
				return false, fmt.Sprintf("%s sees %s", h.Name, harness.Summary(nodes))
			}
		}
		return true, ""
	}
	harness.Eventually(t, electionTimeout, gone, "removed node gone from node ls")

	if err := h3.Restart(); err != nil {
		t.Fatal(err)
	}
	// Observation window: the returning node keeps retrying with its old
	// certificate; it must never reappear.
	harness.Consistently(t, 10*time.Second, gone, "removed node stays out")
	if err := labelWrite(h3, id3, "removed", "write"); err == nil {
		t.Fatal("a write through the removed node succeeded")
	}
	harness.Eventually(t, electionTimeout, writeSucceeds(h2, id1, "after", "rm"), "write after removal")
	harness.Eventually(t, electionTimeout, labelSeen(id1, "after", "rm", h1, h2), "write replicated")
}

// TestForceNewCluster: after losing two of three voters, the survivor
// restarted with --force-new-cluster answers writes and keeps its state.
func TestForceNewCluster(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	waitVoters(t, c, 3, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	id1, id2 := h1.NodeID(t), h2.NodeID(t)
	before, err := h1.Status()
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, electionTimeout, writeSucceeds(h3, id2, "zone", "a"), "label before the disaster")
	harness.Eventually(t, electionTimeout, labelSeen(id2, "zone", "a", h1), "label on h1")

	for _, h := range []*harness.Host{h2, h3} {
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	isolatedWriteFails(t, h1, id1)

	if err := h1.KillProcess(); err != nil {
		t.Fatal(err)
	}
	h1.MustStart(t, "--force-new-cluster")
	harness.Eventually(t, electionTimeout, writeSucceeds(h1, id1, "recovered", "yes"), "write after --force-new-cluster")
	harness.Eventually(t, electionTimeout, labelSeen(id2, "zone", "a", h1), "state kept")
	st, err := h1.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.ClusterID != before.ClusterID || st.NodeID != id1 || st.Leader != id1 {
		t.Fatalf("after --force-new-cluster: %+v, want cluster %s led by %s", st, before.ClusterID, id1)
	}
}

// TestNodeUpdateFromNonVoter: a non-voter forwards a node update to the
// leader and every node sees it.
func TestNodeUpdateFromNonVoter(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 4)
	c.Form(t)
	var nonVoter *harness.Host
	for _, h := range c.Hosts() {
		st, err := h.Status()
		if err != nil {
			t.Fatal(err)
		}
		if !st.Voter {
			nonVoter = h
		}
	}
	if nonVoter == nil {
		t.Fatal("no non-voter among 4 nodes")
	}
	target := c.Leader(t, electionTimeout).NodeID(t)
	nonVoter.MustCLI(t, "node", "update", "--availability", "drain", "--label-add", "zone=a", target)
	harness.Eventually(t, electionTimeout, func() (bool, string) {
		for _, h := range c.Hosts() {
			n, err := h.Node(target)
			if err != nil {
				return false, err.Error()
			}
			if n.Availability != api.AvailabilityDrain || n.Labels["zone"] != "a" {
				return false, fmt.Sprintf("%s sees availability %q labels %v", h.Name, n.Availability, n.Labels)
			}
		}
		return true, ""
	}, "drain and label seen on every node")
}

// TestUnknownNodeID: commands naming a node that does not exist fail with
// a clear error.
func TestUnknownNodeID(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 2)
	c.Form(t)
	h := c.Host(2)
	for _, args := range [][]string{
		{"node", "inspect", "nosuchnode"},
		{"node", "update", "--label-add", "a=b", "nosuchnode"},
		{"node", "update", "--availability", "drain", "nosuchnode"},
		{"node", "rm", "nosuchnode"},
		{"node", "rm", "--force", "nosuchnode"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			_, _, err := h.CLI(args...)
			mustFail(t, err, strings.Join(args, " "), "not found", "no such", "unknown", "nosuchnode")
		})
	}
	c.WaitReady(t, formTimeout, 2)
}

// TestDeadVoterReplaced: a voter's host dies for good in a cluster of 3
// voters and a non-voter. node ls shows it down and unreachable; once it
// has stayed dead past autopilot's grace, the non-voter is promoted, so the
// cluster again survives a failure: 3 healthy voters, and a write still
// commits after another voter dies.
func TestDeadVoterReplaced(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	token := c.Form(t)
	waitVoters(t, c, 3, 3)
	h4 := c.AddHost()
	h4.MustStart(t)
	if err := h4.Join(token, c.Host(1)); err != nil {
		t.Fatal(err)
	}
	waitVoters(t, c, 4, 3)
	leader := c.Leader(t, electionTimeout)
	var victim *harness.Host
	for _, h := range c.Hosts()[:3] {
		if h != leader {
			victim = h
			break
		}
	}
	victimID := victim.NodeID(t)
	id4 := h4.NodeID(t)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, downTimeout, func() (bool, string) {
		n, err := leader.Node(victimID)
		return err == nil && n.Status == api.NodeDown && n.ManagerStatus == api.ManagerUnreachable,
			fmt.Sprintf("%+v %v", n, err)
	}, "the dead voter is down and unreachable")
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		n, err := leader.Node(id4)
		st, serr := leader.Status()
		return err == nil && serr == nil && n.Voter && n.ManagerStatus == api.ManagerReachable && len(st.Voters) == 3 &&
				!slices.Contains(st.Voters, victimID),
			fmt.Sprintf("4th node %+v (%v), voters %v (%v)", n, err, st.Voters, serr)
	}, "autopilot promotes the non-voter in the dead voter's place")
	// Three healthy voters again: the cluster survives one more death.
	var second *harness.Host
	for _, h := range c.Hosts()[:3] {
		if h != leader && h != victim {
			second = h
		}
	}
	if err := second.Kill(); err != nil {
		t.Fatal(err)
	}
	survivor := leader
	harness.Eventually(t, electionTimeout, func() (bool, string) {
		_, _, err := survivor.CLI("node", "update", "--label-add", "after=second-death", id4)
		return err == nil, cliStderr(err)
	}, "a write commits with the promoted voter after a second voter died")
}
