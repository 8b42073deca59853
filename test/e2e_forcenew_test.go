package test

// --force-new-cluster must not split the cluster when the voters it gave up
// on come back: the recovered node's acknowledged writes win, the returning
// nodes drop their old Raft state and follow it, and their containers are
// reconciled against the recovered state.

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestForceNewClusterFencesOldVoters is the repro of issue 14 item 2: three
// voters and a 6-replica service; hosts 2 and 3 die; host 1 is restarted
// with --force-new-cluster and acknowledges a scale to 4 and a new service;
// then hosts 2 and 3 return with their old 3-voter configuration.
//
// Whether they split the cluster used to be a race: if host 1 re-admitted
// them (as non-voters, once gossip showed them alive) before they elected a
// leader among themselves, they followed it; otherwise host 1 followed them.
// "old voters elect first" makes the bad order certain by holding back
// gossip (only gossip) between host 1 and the returning hosts; "as in the
// issue" leaves the order to chance.
func TestForceNewClusterFencesOldVoters(t *testing.T) {
	harness.Context(t, 16*time.Minute)
	t.Run("old voters elect first", func(t *testing.T) { forceNewAndReturn(t, true) })
	t.Run("as in the issue", func(t *testing.T) { forceNewAndReturn(t, false) })
}

func forceNewAndReturn(t *testing.T, electFirst bool) {
	c, _ := svcCluster(t, 3)
	waitVoters(t, c, 3, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	all := c.Hosts()
	ids := nodeIDs(t, all...)

	h1.MustCLI(t, "service", "create", "-d", "--name", "web", "--replicas", "6", "bb:1", "sleep", "100000")
	waitSlots(t, h1, "web", 6, "", 2*time.Minute)

	for _, h := range []*harness.Host{h2, h3} {
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	if err := h1.KillProcess(); err != nil {
		t.Fatal(err)
	}
	h1.MustStart(t, "--force-new-cluster")
	harness.Eventually(t, electionTimeout, func() (bool, string) {
		_, _, err := h1.CLI("service", "scale", "-d", "web=4")
		return err == nil, cliStderr(err)
	}, "scale acknowledged by the recovered node")
	h1.MustCLI(t, "service", "create", "-d", "--name", "other", "--replicas", "1", "bb:1", "sleep", "100000")

	// Hosts 2 and 3 return. Their old configuration has them as 2 of 3
	// voters. With electFirst, gossip between them and host 1 is held back
	// until each of them either follows a leader or has dropped that
	// configuration: host 1 re-admitting them before they elect among
	// themselves is what made the fifth run pass.
	unblock := func() {}
	if electFirst {
		unblock = blockGossip(t, h1, h2, h3)
	}
	for _, h := range []*harness.Host{h2, h3} {
		if err := h.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	harness.Eventually(t, electionTimeout, func() (bool, string) {
		for _, h := range []*harness.Host{h2, h3} {
			st, err := h.Status()
			if err != nil {
				return false, fmt.Sprintf("%s: %v", h.Name, err)
			}
			if st.Leader == "" && len(st.Voters) > 0 {
				return false, fmt.Sprintf("%s: no leader yet, voters %v", h.Name, st.Voters)
			}
		}
		return true, ""
	}, "returning hosts settled")
	unblock()

	// The acknowledged writes are what every node sees, including the
	// returning ones.
	harness.Eventually(t, 3*time.Minute, recoveredStateSeen(all...), "recovered writes seen on every node")
	leader := c.Leader(t, formTimeout)
	t.Logf("leader after the old voters returned: %s", leader.Name)

	// Writes keep working from every node and reach every node.
	for i, h := range all {
		harness.Eventually(t, electionTimeout, writeSucceeds(h, ids[i], "after", h.Name), "write through %s", h.Name)
	}
	for i, h := range all {
		harness.Eventually(t, electionTimeout, labelSeen(ids[i], "after", h.Name, all...), "write through %s seen everywhere", h.Name)
	}

	// The old voters' containers are reconciled against the recovered
	// state: 4 web containers run cluster-wide, and the new service runs.
	harness.Eventually(t, 3*time.Minute, func() (bool, string) {
		web, other, per := 0, 0, ""
		for _, h := range all {
			w, err := runningNamed(h, "web")
			if err != nil {
				return false, err.Error()
			}
			o, err := runningNamed(h, "other")
			if err != nil {
				return false, err.Error()
			}
			web, other = web+w, other+o
			per += fmt.Sprintf(" %s:%d", h.Name, w)
		}
		return web == 4 && other == 1, fmt.Sprintf("%d web containers running (want 4:%s), %d other (want 1)", web, per, other)
	}, "running containers match the recovered state")

	// Still one leader, and voters again among the returned nodes.
	waitVoters(t, c, 3, 3)
	c.Leader(t, electionTimeout)
}

// recoveredStateSeen holds when every host sees web scaled to 4 and the
// service created after --force-new-cluster.
func recoveredStateSeen(hosts ...*harness.Host) harness.Condition {
	return func() (bool, string) {
		for _, h := range hosts {
			var svcs []api.Service
			if err := h.JSON(&svcs, "service", "ls"); err != nil {
				return false, fmt.Sprintf("%s: %v", h.Name, err)
			}
			got := map[string]uint64{}
			for _, s := range svcs {
				got[s.Name] = s.Replicas
			}
			if r, ok := got["web"]; !ok || r != 4 {
				return false, fmt.Sprintf("%s sees web with %d replicas (want 4), services %v", h.Name, r, got)
			}
			if _, ok := got["other"]; !ok {
				return false, fmt.Sprintf("%s does not see the service created after recovery (services %v)", h.Name, got)
			}
		}
		return true, ""
	}
}

// runningNamed counts the running containers on h whose task belongs to
// service svc (task containers are named SERVICE.SLOT.TASKID).
func runningNamed(h *harness.Host, svc string) (int, error) {
	var cs []api.Container
	if err := h.JSON(&cs, "ps"); err != nil {
		return 0, fmt.Errorf("ps on %s: %w", h.Name, err)
	}
	n := 0
	for _, c := range cs {
		if c.State == api.ContainerRunning && c.TaskID != "" && strings.HasPrefix(c.Name, svc+".") {
			n++
		}
	}
	return n, nil
}

// blockGossip drops gossip (tcp and udp, port harness.GossipPort) between
// h and peers, in h's namespace; cluster-port traffic still flows. The
// returned function lifts the block; it is idempotent and also runs at
// cleanup.
func blockGossip(t *testing.T, h *harness.Host, peers ...*harness.Host) func() {
	t.Helper()
	var ips []string
	for _, p := range peers {
		ips = append(ips, p.IP)
	}
	const table = "shoal_gossip_block"
	rules := fmt.Sprintf(`table inet %[1]s {
	set peers { type ipv4_addr; elements = { %[2]s } }
	chain input { type filter hook input priority -300; policy accept; ip saddr @peers meta l4proto { tcp, udp } th sport %[3]d drop; ip saddr @peers meta l4proto { tcp, udp } th dport %[3]d drop; }
	chain output { type filter hook output priority -300; policy accept; ip daddr @peers meta l4proto { tcp, udp } th sport %[3]d drop; ip daddr @peers meta l4proto { tcp, udp } th dport %[3]d drop; }
}
`, table, strings.Join(ips, ", "), harness.GossipPort)
	cmd := exec.Command("ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("block gossip on %s: %v: %s", h.Name, err, out)
	}
	var once sync.Once
	unblock := func() {
		once.Do(func() {
			if out, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "delete", "table", "inet", table).CombinedOutput(); err != nil {
				t.Errorf("unblock gossip on %s: %v: %s", h.Name, err, out)
			}
		})
	}
	t.Cleanup(unblock)
	return unblock
}
