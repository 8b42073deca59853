package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal-org/shoal/test/harness"
)

// TestMeshKeepsClientAddressAcrossNodes: a LAN client reaching a published
// port through nodes WITHOUT a local replica is seen by the backend with
// its own address (the ingress node DNATs without masquerade, the
// backend's node routes the replies back through it), and still so after
// the backend's host dies and the task is started on another node.
func TestMeshKeepsClientAddressAcrossNodes(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	// Never on h1: it holds the only copy of the image (the replacement
	// task fetches it from there) and routes the LAN host.
	h1.MustCLI(t, "service", "create", "--name", "far", "--publish", "18095:80",
		"--constraint", "node.hostname!="+hostname(h1), "bb:1", "sh", "-c", ipCmd)
	waitSlots(t, h1, "far", 1, "", 90*time.Second)
	lan, lanIP := lanHost(t, c, h1)

	throughOthers := func(backend *harness.Host, alive []*harness.Host) {
		t.Helper()
		for _, h := range alive {
			if h == backend {
				continue
			}
			harness.Eventually(t, 90*time.Second, func() (bool, string) {
				out, err := clientSeen(lan, fmt.Sprintf("http://%s:18095/cgi-bin/ip", h.IP))
				return err == nil && out == lanIP, fmt.Sprintf("via %s (backend on %s): %v %q", h.Name, backend.Name, err, out)
			}, "a backend on another node sees the LAN client's address")
		}
	}
	first := hostOf(t, c, runningTasks(t, h1, "far")[0])
	throughOthers(first, c.Hosts())

	// The backend's host dies: the task comes back elsewhere, and the mesh
	// through the nodes without it still keeps the client's address.
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}
	var alive []*harness.Host
	for _, h := range c.Hosts() {
		if h != first {
			alive = append(alive, h)
		}
	}
	asker := alive[0]
	var second *harness.Host
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		for _, tk := range runningTasks(t, asker, "far") {
			if h := hostOf(t, c, tk); h != first {
				second = h
				return true, ""
			}
		}
		return false, "waiting for the task on a live node"
	}, "the task is rescheduled off the dead host")
	throughOthers(second, alive)
}

// TestMeshFromNodeToItsOwnBackend: a node calling another node's published
// port (a health check, a client running on a node) reaches a backend on
// its own node. The ingress node masquerades connections from peer nodes:
// unmasqueraded, the backend's reply went straight to its node's local
// address, skipping the ingress node's un-DNAT, and the caller reset it
// (with one replica, every connection failed; with N, one in N).
func TestMeshFromNodeToItsOwnBackend(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	h1.MustCLI(t, "service", "create", "--name", "own", "--publish", "18096:80", "bb:1", "sh", "-c", ipCmd)
	waitSlots(t, h1, "own", 1, "", 90*time.Second)
	backend := hostOf(t, c, runningTasks(t, h1, "own")[0])
	for _, via := range c.Hosts() {
		if via == backend {
			continue
		}
		url := fmt.Sprintf("http://%s:18096/cgi-bin/ip", via.IP)
		// Eventually: the ingress node's balancer may not have the backend
		// yet; once it answers, every call must.
		harness.Eventually(t, 60*time.Second, func() (bool, string) {
			out, err := wgetFrom(backend.NS, url)
			return err == nil, fmt.Sprintf("from %s via %s: %v %q", backend.Name, via.Name, err, out)
		}, "a node reaches its own backend through another node's published port")
		for i := 0; i < 5; i++ {
			if out, err := wgetFrom(backend.NS, url); err != nil {
				t.Fatalf("call %d from %s via %s: %v %q", i+1, backend.Name, via.Name, err, out)
			}
		}
	}
}
