package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestHostReboot: a node that loses power comes back whole, a follower
// and then the leader. What lived in
// memory or on tmpfs is gone (every process, mount, network device and
// nftables rule, IP forwarding, the run dir with runc's state and the
// secrets, the WireGuard device and its process); the data dir stays. The
// node's task of a global service on an encrypted network runs again with
// its secret, the published port answers through the node, and a container
// on it reaches the service by name and every task through WireGuard.
func TestHostReboot(t *testing.T) {
	harness.Context(t, testTimeout)
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	const plain = "s3cret-after-reboot"
	h1.MustCLI(t, "secret", "create", "pw", writeTemp(t, "pw", []byte(plain)))
	h1.MustCLI(t, "network", "create", "--encrypted", "sealed")
	h1.MustCLI(t, "service", "create", "--name", "web", "--mode", "global", "--secret", "pw", "--network", "sealed",
		"--publish", "18090:80", "bb:1", "sh", "-c", webCmd)
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		per := runningPerNode(tasksOf(t, h1, "web"))
		return len(per) == 3, fmt.Sprintf("running per node %v", per)
	}, "web runs on every node")
	for _, who := range []string{"a follower", "the leader"} {
		t.Logf("rebooting %s", who)
		leader := c.Leader(t, time.Minute)
		victim := leader
		if who == "a follower" {
			victim = c.Host(2)
			if victim == leader {
				victim = c.Host(3)
			}
		}
		rebootAndCheck(t, c, victim, plain)
	}
}

// rebootAndCheck reboots victim and checks that it serves web again (see
// TestHostReboot).
func rebootAndCheck(t *testing.T, c *harness.Cluster, victim *harness.Host, plain string) {
	t.Helper()
	webOn := func() (id string) {
		var cs []api.Container
		if err := victim.JSON(&cs, "ps"); err != nil {
			return ""
		}
		for _, cc := range cs {
			if strings.HasPrefix(cc.Name, "web.") && cc.State == api.ContainerRunning && cc.TaskID != "" {
				id = cc.ID
			}
		}
		return id
	}
	before := webOn()
	if before == "" {
		t.Fatalf("%s runs no web container before the reboot", victim.Name)
	}
	if err := victim.Reboot(); err != nil {
		t.Fatal(err)
	}
	c.WaitReady(t, formTimeout, 3)
	leader := c.Leader(t, time.Minute)

	// Its task runs again, in a container of the new boot.
	var ctr string
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		ctr = webOn()
		per := runningPerNode(tasksOf(t, leader, "web"))
		return ctr != "" && ctr != before && len(per) == 3 && per[hostname(victim)] == 1,
			fmt.Sprintf("container %q (before the reboot %q); running per node %v", ctr, before, per)
	}, "the rebooted node runs its web task again")

	if out := victim.MustCLI(t, "exec", ctr, "cat", "/run/secrets/pw"); out != plain {
		t.Fatalf("secret after the reboot: %q", out)
	}
	url := fmt.Sprintf("http://%s:18090/", victim.IP)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		body, err := get(url)
		return err == nil && strings.HasPrefix(body, "hello from web."), fmt.Sprintf("%q %v", body, err)
	}, "the published port answers through the rebooted node")
	// By name (the embedded DNS on the new bridge) and across the overlay:
	// tasks.web lists every task; each is fetched from the rebooted node.
	var tasks []api.Task
	if err := leader.JSON(&tasks, "service", "ps", "web"); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString("timeout 3 wget -q -O - http://web/ && nslookup tasks.web 2>&1 | grep -c '^Address' ")
	n := 0
	for _, tk := range tasks {
		if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning && tk.IP != "" {
			fmt.Fprintf(&script, "; timeout 3 wget -q -O - http://%s/", tk.IP)
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d running tasks with an address, want 3: %+v", n, tasks)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		out, _, err := victim.CLI("exec", ctr, "sh", "-c", script.String())
		return err == nil && strings.Count(out, "hello from web.") == 4, fmt.Sprintf("%q %v", out, err)
	}, "a container on the rebooted node reaches the service by name and every task through WireGuard")
}

// runningPerNode counts the running tasks meant to run, by node name.
func runningPerNode(tasks []api.Task) map[string]int {
	per := map[string]int{}
	for _, tk := range tasks {
		if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
			per[tk.Node]++
		}
	}
	return per
}

// TestClusterPowerCut: every node loses power at once (a rack's outage)
// and boots again. The cluster forms again from the data dirs alone, and a
// replicated service and a global one run again everywhere they should,
// their published ports answering on every node.
func TestClusterPowerCut(t *testing.T) {
	harness.Context(t, testTimeout)
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "3", "--publish", "18091:80", "bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "edge", "--mode", "global", "--publish", "18092:80", "bb:1", "sh", "-c", webCmd)
	waitSlots(t, h1, "web", 3, "", 2*time.Minute)
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		per := runningPerNode(tasksOf(t, h1, "edge"))
		return len(per) == 3, fmt.Sprintf("edge running per node %v", per)
	}, "edge runs on every node")

	for _, h := range c.Hosts() {
		if err := h.PowerOff(); err != nil {
			t.Fatal(err)
		}
	}
	c.StartAll(t)
	c.WaitReady(t, formTimeout, 3)
	leader := c.Leader(t, time.Minute)
	waitSlots(t, leader, "web", 3, "", 2*time.Minute)
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		per := runningPerNode(tasksOf(t, leader, "edge"))
		return len(per) == 3, fmt.Sprintf("edge running per node %v", per)
	}, "edge runs on every node again")
	for _, port := range []int{18091, 18092} {
		for _, h := range c.Hosts() {
			url := fmt.Sprintf("http://%s:%d/", h.IP, port)
			harness.Eventually(t, 30*time.Second, func() (bool, string) {
				body, err := get(url)
				return err == nil && strings.HasPrefix(body, "hello from "), fmt.Sprintf("%q %v", body, err)
			}, "%s answers after the power cut", url)
		}
	}
}
