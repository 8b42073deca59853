package test

// End-to-end test of a network too small for index-derived node shares
// (`network create --subnet 172.28.0.0/24`, compose ipam subnets): the
// state machine hands each node a /28 of the lower half as its first task
// (or `run` container) on the network arrives.

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestNetworksSmallSubnet: a /24 network with a service of 4 replicas on 3
// nodes: each node that runs a task gets its own /28 of the lower half,
// every container's address is inside its node's share, containers reach
// each other across nodes by address, VIP and name; an attachable
// container on a node without a share claims one. A subnet without room
// for a single share is refused, and a task finds no node once the shares
// are held, saying so in service ps.
func TestNetworksSmallSubnet(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	if _, stderr, err := h1.CLI("network", "create", "--subnet", "172.28.0.0/28", "tiny"); err == nil || !strings.Contains(stderr, "must be a /27 or larger") {
		t.Fatalf("a /28 network: err %v, stderr %q", err, stderr)
	}
	h1.MustCLI(t, "network", "create", "--subnet", "172.28.0.0/24", "small")
	h1.MustCLI(t, "network", "create", "--subnet", "172.29.0.0/24", "--attachable", "side")
	var small api.Network
	if err := netJSON(h1, &small, "inspect", "small"); err != nil {
		t.Fatal(err)
	}
	if small.Subnet != "172.28.0.0/24" || small.ShareBits != api.AllocatedShareBits || len(small.Shares) != 0 {
		t.Fatalf("network small: %+v; want 172.28.0.0/24 with share_bits 28 and no shares yet", small)
	}

	h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "4", "--network", "small", "bb:1", "sh", "-c", webCmd)
	waitSlots(t, h1, "web", 4, "", 90*time.Second)
	var web api.Service
	if err := h1.JSON(&web, "service", "inspect", "web"); err != nil {
		t.Fatal(err)
	}
	if err := netJSON(h1, &small, "inspect", "small"); err != nil {
		t.Fatal(err)
	}
	subnet := netip.MustParsePrefix(small.Subnet)
	vip, err := netip.ParseAddr(web.VIPs["small"])
	if err != nil || !subnet.Contains(vip) {
		t.Fatalf("web's VIP on small %q (%v), want inside %s", web.VIPs["small"], err, subnet)
	}
	// A node gets its share in the entry that assigns it its first task:
	// the task waits for the overlay rather than racing it and failing.
	for _, tk := range tasksOf(t, h1, "web") {
		if tk.State == api.TaskRejected || tk.State == api.TaskFailed {
			t.Errorf("task %s on %s: %s: %s %s", tk.Name, tk.Node, tk.State, tk.Message, tk.Error)
		}
	}
	tasks := runningTasks(t, h1, "web")
	nodes := map[string]bool{}
	for _, tk := range tasks {
		nodes[tk.NodeID] = true
		share, err := netip.ParsePrefix(small.Shares[tk.NodeID])
		if err != nil {
			t.Fatalf("task %s on %s: its node holds no share of small (%v): %v", tk.Name, tk.Node, small.Shares, err)
		}
		ip, err := netip.ParseAddr(tk.IPs["small"])
		if err != nil || !share.Contains(ip) || share.Bits() != api.AllocatedShareBits || !subnet.Contains(share.Addr()) {
			t.Fatalf("task %s on %s: address %q, node share %s of %s", tk.Name, tk.Node, tk.IPs["small"], share, subnet)
		}
	}
	if len(nodes) != 3 || len(small.Shares) != 3 {
		t.Fatalf("web runs on %d nodes, shares %v; want 3 of each", len(nodes), small.Shares)
	}
	seen := map[string]bool{}
	for _, s := range small.Shares {
		if seen[s] {
			t.Fatalf("two nodes hold share %s: %v", s, small.Shares)
		}
		seen[s] = true
	}

	// Same network, across nodes: every replica by address, the VIP and
	// the name, from each task.
	for _, from := range tasks {
		ns, dns := netnsOf(t, c, from), dnsOf(t, h1, from)
		harness.Eventually(t, 60*time.Second, func() (bool, string) {
			for _, to := range tasks {
				if out, err := wgetFrom(ns, "http://"+to.IPs["small"]+"/"); err != nil || !strings.Contains(out, "hello from web.") {
					return false, fmt.Sprintf("%s to %s (%s): %v %q", from.Name, to.Name, to.IPs["small"], err, out)
				}
			}
			if out, err := wgetFrom(ns, "http://"+vip.String()+"/"); err != nil || !strings.Contains(out, "hello from web.") {
				return false, fmt.Sprintf("%s to the VIP: %v %q", from.Name, err, out)
			}
			if ok, out := resolves(ns, dns, "web"); !ok || !strings.Contains(out, vip.String()) {
				return false, fmt.Sprintf("%s resolves web: %q", from.Name, out)
			}
			return true, ""
		}, "a container reaches its network's tasks on every node")
	}

	// A /26 holds 2 node shares: a third node may not take a task of it,
	// and service ps says why.
	h1.MustCLI(t, "network", "create", "--subnet", "172.30.0.0/26", "pair")
	h1.MustCLI(t, "service", "create", "-d", "--name", "two", "--replicas", "3", "--replicas-max-per-node", "1", "--network", "pair", "bb:1", "sh", "-c", webCmd)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		running, pending := 0, ""
		for _, tk := range tasksOf(t, h1, "two") {
			switch {
			case tk.State == api.TaskRunning:
				running++
			case tk.State == api.TaskNew && tk.NodeID == "":
				pending = tk.Message
			}
		}
		return running == 2 && strings.Contains(pending, "1 node with no address space left on network pair"),
			fmt.Sprintf("%d running, pending task says %q", running, pending)
	}, "a third node gets no task of a network with 2 shares")

	// An attachable network no task uses: a `run` container claims its
	// node's share and gets an address inside it.
	h2 := c.Host(2)
	out := h2.MustCLI(t, "run", "--rm", "--network", "side", "bb:1", "ip", "-4", "addr", "show", "eth0")
	var side api.Network
	if err := netJSON(h1, &side, "inspect", "side"); err != nil {
		t.Fatal(err)
	}
	share, err := netip.ParsePrefix(side.Shares[h2.NodeID(t)])
	if err != nil || len(side.Shares) != 1 {
		t.Fatalf("network side after a run on %s: shares %v", h2.Name, side.Shares)
	}
	i := strings.Index(out, "inet ")
	if i < 0 {
		t.Fatalf("run container's addresses: %q", out)
	}
	addr, err := netip.ParsePrefix(strings.Fields(out[i+len("inet "):])[0])
	if err != nil || !share.Contains(addr.Addr()) {
		t.Fatalf("run container's address %q, want inside %s", out, share)
	}
}

// TestStackSmallSubnet: a compose file whose network asks for a /24
// through ipam (as teams write them) deploys: the network is made with
// allocated shares and both replicas, on two nodes, answer each other.
func TestStackSmallSubnet(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)
	file := filepath.Join(t.TempDir(), "compose.yml")
	compose := `name: team
services:
  web:
    image: bb:1
    command: ["sh", "-c", 'echo "hello from $$(hostname)" >/www/index.html; exec httpd -f -p 80 -h /www']
    networks: [back]
    deploy: {replicas: 2, placement: {max_replicas_per_node: 1}}
networks:
  back:
    ipam:
      config: [{subnet: 172.28.0.0/24}]
`
	if err := os.WriteFile(file, []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := h1.CLI("stack", "deploy", "-c", file); err != nil {
		t.Fatalf("deploy: %v: %s", err, stderr)
	}
	var back api.Network
	if err := netJSON(h1, &back, "inspect", "team_back"); err != nil {
		t.Fatal(err)
	}
	if back.Subnet != "172.28.0.0/24" || back.ShareBits != api.AllocatedShareBits {
		t.Fatalf("network team_back: %+v", back)
	}
	waitSlots(t, h1, "team_web", 2, "", 90*time.Second)
	tasks := runningTasks(t, h1, "team_web")
	if len(tasks) != 2 || tasks[0].NodeID == tasks[1].NodeID {
		t.Fatalf("tasks %+v: want one on each node", tasks)
	}
	subnet := netip.MustParsePrefix(back.Subnet)
	for _, tk := range tasks {
		if a, err := netip.ParseAddr(tk.IPs["team_back"]); err != nil || !subnet.Contains(a) {
			t.Fatalf("task %s address %q, want inside %s", tk.Name, tk.IPs["team_back"], subnet)
		}
	}
	ns := netnsOf(t, c, tasks[0])
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := wgetFrom(ns, "http://"+tasks[1].IPs["team_back"]+"/")
		return err == nil && strings.Contains(out, "hello from team_web."), fmt.Sprintf("%v %q", err, out)
	}, "a replica reaches the other across nodes")
}
