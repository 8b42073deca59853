package test

// --force-new-cluster must not split the cluster when the voters it gave up
// on come back: the recovered node's acknowledged writes win, the returning
// nodes drop their old Raft state and follow it, and their containers are
// reconciled against the recovered state.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestForceNewClusterFencesOldVoters is the repro of issue 14 item 2: three
// voters and a 6-replica service; hosts 2 and 3 die; host 1 is restarted
// with --force-new-cluster and acknowledges a scale to 4 and a new service;
// then hosts 2 and 3 return with their old 3-voter configuration.
func TestForceNewClusterFencesOldVoters(t *testing.T) {
	harness.Context(t, 9*time.Minute)
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

	for _, h := range []*harness.Host{h2, h3} {
		if err := h.Restart(); err != nil {
			t.Fatal(err)
		}
	}

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
