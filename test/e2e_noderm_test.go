package test

// End-to-end tests of `node rm` as a final act: a removed host that comes
// back (after being down, or removed while alive with --force) learns from
// the cluster that it was removed, stops its task containers, leaves gossip
// and resets to an uninitialised node that can join again with a token. The
// published port keeps answering through every remaining node meanwhile.

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

const nodermPort = 18090

// nodermCluster forms 4 nodes and runs a global web service (one replica on
// every node) published on nodermPort.
func nodermCluster(t *testing.T) (*harness.Cluster, []string) {
	t.Helper()
	harness.Context(t, 2*testTimeout)
	c, _ := svcCluster(t, 4)
	h1 := c.Host(1)
	h1.MustCLI(t, "service", "create", "--name", "web", "--mode", "global",
		"--publish", fmt.Sprintf("%d:80", nodermPort), "bb:1", "sh", "-c", webCmd)
	harness.Eventually(t, 90*time.Second, globalOn(t, h1, "web", c.Hosts()...), "web running on every node")
	ids := nodeIDs(t, c.Hosts()...)
	harness.Eventually(t, 30*time.Second, portAnswers(c.Hosts()[:3]...), "published port answers everywhere")
	return c, ids
}

// globalOn holds when exactly one task of svc runs on each of hosts and
// none elsewhere.
func globalOn(t *testing.T, via *harness.Host, svc string, hosts ...*harness.Host) harness.Condition {
	return func() (bool, string) {
		per := map[string]int{}
		for _, tk := range tasksOf(t, via, svc) {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
				per[tk.Node]++
			}
		}
		if len(per) != len(hosts) {
			return false, fmt.Sprintf("running per node %v", per)
		}
		for _, h := range hosts {
			if per[hostname(h)] != 1 {
				return false, fmt.Sprintf("running per node %v", per)
			}
		}
		return true, ""
	}
}

// portAnswers holds when 20 requests in a row to the published port of each
// of hosts succeed.
func portAnswers(hosts ...*harness.Host) harness.Condition {
	return func() (bool, string) {
		for _, h := range hosts {
			for i := 0; i < 20; i++ {
				if _, err := get(fmt.Sprintf("http://%s:%d/", h.IP, nodermPort)); err != nil {
					return false, fmt.Sprintf("request %d via %s: %v", i+1, h.Name, err)
				}
			}
		}
		return true, ""
	}
}

// prober sends rounds of 20 requests to the published port of each host
// until stopped, and remembers every failure.
type prober struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	rounds int
	fails  []string
}

func startProber(hosts ...*harness.Host) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{cancel: cancel}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for ctx.Err() == nil {
			for _, h := range hosts {
				for i := 0; i < 20 && ctx.Err() == nil; i++ {
					if _, err := get(fmt.Sprintf("http://%s:%d/", h.IP, nodermPort)); err != nil && ctx.Err() == nil {
						p.mu.Lock()
						p.fails = append(p.fails, fmt.Sprintf("%s via %s: %v", time.Now().UTC().Format("15:04:05.000"), h.Name, err))
						p.mu.Unlock()
					}
				}
			}
			p.mu.Lock()
			p.rounds++
			p.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return p
}

// stop ends the prober and fails t if any request failed.
func (p *prober) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("%s published port: %d rounds of 20 requests per node", time.Now().UTC().Format("15:04:05.000"), p.rounds)
	if len(p.fails) > 0 {
		n := min(len(p.fails), 5)
		t.Fatalf("%d published-port requests failed, first: %v", len(p.fails), p.fails[:n])
	}
}

// removedAndReset checks the end state after the removal of host gone
// (node ID id): the remaining hosts list 3 nodes and 3 gossip members; the
// removed host is in no cluster and runs no task containers.
func removedAndReset(t *testing.T, gone *harness.Host, id string, rest ...*harness.Host) {
	t.Helper()
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		st, err := gone.Status()
		if err != nil {
			return false, err.Error()
		}
		if st.Joined {
			return false, fmt.Sprintf("%s still in cluster %s (members %d)", gone.Name, st.ClusterID, st.Members)
		}
		return true, ""
	}, "%s learns it was removed", gone.Name)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, c := range containersOn(t, gone, true) {
			if c.TaskID != "" {
				return false, fmt.Sprintf("task container %s (%s) still on %s", c.Name, c.State, gone.Name)
			}
		}
		return true, ""
	}, "no task containers on %s", gone.Name)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range rest {
			nodes, err := h.Nodes()
			if err != nil {
				return false, err.Error()
			}
			if _, ok := nodesBy(nodes)[id]; ok || len(nodes) != 3 {
				return false, fmt.Sprintf("%s sees %s", h.Name, harness.Summary(nodes))
			}
			st, err := h.Status()
			if err != nil {
				return false, err.Error()
			}
			if st.Members != 3 {
				return false, fmt.Sprintf("%s sees %d gossip members", h.Name, st.Members)
			}
		}
		return true, ""
	}, "3 nodes and 3 gossip members on the remaining hosts")
	if _, _, err := gone.CLI("leave"); err == nil {
		t.Fatalf("leave on the reset %s succeeded; want `not part of a cluster`", gone.Name)
	}
}

// rejoins joins host back with a fresh token and waits for 4 ready nodes,
// its web replica and 4 gossip members; then the published port must answer
// on every node, the returned one included.
func rejoins(t *testing.T, c *harness.Cluster, h *harness.Host) {
	t.Helper()
	h1 := c.Host(1)
	tok := h1.Token(t)
	if err := h.Join(tok, h1); err != nil {
		t.Fatalf("join after removal: %v", err)
	}
	c.WaitReady(t, formTimeout, 4)
	harness.Eventually(t, 90*time.Second, globalOn(t, h1, "web", c.Hosts()...), "web running on every node again")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range c.Hosts() {
			st, err := h.Status()
			if err != nil {
				return false, err.Error()
			}
			if st.Members != 4 {
				return false, fmt.Sprintf("%s sees %d gossip members", h.Name, st.Members)
			}
		}
		return true, ""
	}, "4 gossip members after the re-join")
	// A join's own churn (the leader may mark the new node down until gossip
	// sees it, its first task is then replaced, and a request may meet a
	// backend in the first seconds of the new node's data plane: one reset
	// in 120 requests was seen once) is not what these tests are about —
	// the removal window above is probed request by request. Here the
	// published port must answer 20 of 20 on every node, three times.
	for i := 0; i < 3; i++ {
		harness.Eventually(t, 30*time.Second, portAnswers(c.Hosts()...), "published port answers on every node after the re-join")
	}
}

// TestNodeRmDownNodeReturns: a host removed while down comes back, learns
// it was removed, resets itself and can join again.
func TestNodeRmDownNodeReturns(t *testing.T) {
	c, ids := nodermCluster(t)
	h1, h4 := c.Host(1), c.Host(4)
	rest := c.Hosts()[:3]
	if err := h4.Kill(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, downTimeout, nodeStatusSeen(ids[3], api.NodeDown, rest...), "h4 down")
	harness.Eventually(t, 30*time.Second, portAnswers(rest...), "published port answers without h4")
	h1.MustCLI(t, "node", "rm", ids[3])

	p := startProber(rest...)
	if err := h4.Restart(); err != nil {
		t.Fatal(err)
	}
	removedAndReset(t, h4, ids[3], rest...)
	p.stop(t)
	rejoins(t, c, h4)
}

// TestNodeRmForceLiveNode: a live host removed with --force learns it was
// removed, resets itself and can join again.
func TestNodeRmForceLiveNode(t *testing.T) {
	c, ids := nodermCluster(t)
	h1, h4 := c.Host(1), c.Host(4)
	rest := c.Hosts()[:3]
	p := startProber(rest...)
	h1.MustCLI(t, "node", "rm", "--force", ids[3])
	removedAndReset(t, h4, ids[3], rest...)
	p.stop(t)
	rejoins(t, c, h4)
}

// TestNodeRmLeaveWithoutQuorum: a removed node that no gossip hint reaches
// leaves without a quorum: `shoal leave` asks whether it was removed and
// resets locally. A node that was not removed still leaves the usual way.
func TestNodeRmLeaveWithoutQuorum(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	h1, h3 := c.Host(1), c.Host(3)
	id3 := h3.NodeID(t)
	unblock := blockGossip(t, h3, h1, c.Host(2))
	harness.Eventually(t, downTimeout, nodeStatusSeen(id3, api.NodeDown, h1, c.Host(2)), "h3 down for gossip")
	h1.MustCLI(t, "node", "rm", id3)
	if _, stderr, err := h3.CLI("leave"); err != nil {
		t.Fatalf("leave on the removed h3: %v: %s", err, stderr)
	}
	st, err := h3.Status()
	if err != nil || st.Joined {
		t.Fatalf("h3 after leave: %+v, %v; want in no cluster", st, err)
	}

	unblock()
	if err := h3.Join(h1.Token(t), h1); err != nil {
		t.Fatalf("join after removal: %v", err)
	}
	c.WaitReady(t, formTimeout, 3)
	// Not removed: leave goes through the leader as before.
	if _, stderr, err := h3.CLI("leave"); err != nil {
		t.Fatalf("leave of a member: %v: %s", err, stderr)
	}
	c.WaitReady(t, formTimeout, 2, h1, c.Host(2))
}
