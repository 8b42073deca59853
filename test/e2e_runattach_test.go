package test

// A network a `shoal run` container is attached to cannot be removed, from
// any node, as docker's "has active endpoints"; once the container is
// removed it can.

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestNetworkRmRefusedWhileRunContainerAttached: `run -d --network
// back-net` on node 2, then `network rm back-net` on node 1 is refused
// (non-zero exit, the container and its node named, the network kept and
// the container still on it); after `rm -f` of the container on node 2
// the same `network rm` succeeds. Before, the removal succeeded and the
// container was left with lo only: run containers are local to their node
// and the state machine checked services only. Also after an agent
// restart the record follows what runs: a container that ended while its
// agent was down no longer holds the network.
func TestNetworkRmRefusedWhileRunContainerAttached(t *testing.T) {
	harness.Context(t, testTimeout)
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "network", "create", "--attachable", "back-net")
	h2.MustCLI(t, "run", "-d", "--name", "onback", "--network", "back-net", "bb:1", "sleep", "3600")

	_, stderr, err := h1.CLI("network", "rm", "back-net")
	if err == nil || !strings.Contains(stderr, "active endpoints") || !strings.Contains(stderr, "container onback on node "+h2.NS) {
		t.Fatalf("network rm with a run container attached: err %v, stderr %q; want a refusal naming container onback on node %s", err, stderr, h2.NS)
	}
	if _, _, err := h1.CLI("network", "inspect", "back-net"); err != nil {
		t.Fatalf("the refused rm removed the network: %v", err)
	}
	if out := h2.MustCLI(t, "exec", "onback", "ip", "-o", "-4", "addr"); !strings.Contains(out, "eth0") {
		t.Fatalf("the container lost its interface: %q", out)
	}

	h2.MustCLI(t, "rm", "-f", "onback")
	h1.MustCLI(t, "network", "rm", "back-net")

	// A container that ends while its agent is down: the restarted agent
	// records what it finds.
	h1.MustCLI(t, "network", "create", "--attachable", "back2")
	h2.MustCLI(t, "run", "-d", "--name", "short", "--network", "back2", "bb:1", "sleep", "3")
	if _, _, err := h1.CLI("network", "rm", "back2"); err == nil {
		t.Fatal("network rm back2 with container short attached succeeded")
	}
	var ct api.Container
	if err := h2.JSON(&ct, "inspect", "short"); err != nil || ct.Pid == 0 {
		t.Fatalf("inspect short: %v %+v", err, ct)
	}
	if err := h2.Stop(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", ct.Pid))
		return os.IsNotExist(err), "short still runs"
	}, "container short ends while its agent is down")
	if err := h2.Start(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		_, stderr, err := h1.CLI("network", "rm", "back2")
		return err == nil, stderr
	}, "network rm back2 once the restarted agent recorded that short ended")
}
