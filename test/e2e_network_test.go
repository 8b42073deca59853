package test

// End-to-end tests of service traffic: published ports answer on every node
// (routing mesh), containers reach services by VIP and by name, and a dead
// host's backends stop receiving traffic.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// get fetches url from the test process (root namespace, which reaches the
// hosts' addresses over the harness bridge), bounded in time.
func get(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return strings.TrimSpace(string(b)), err
}

const webCmd = `echo "hello from $(hostname)" >/www/index.html; exec httpd -f -p 80 -h /www`

func TestServiceTraffic(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "3", "--publish", "18080:80", "bb:1", "sh", "-c", webCmd)
	waitSlots(t, h1, "web", 3, "", 60*time.Second)

	// Routing mesh: every node answers, and the replies cover every replica.
	seen := map[string]bool{}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, h := range c.Hosts() {
			body, err := get(fmt.Sprintf("http://%s:18080/", h.IP))
			if err != nil {
				return false, fmt.Sprintf("%s: %v", h.Name, err)
			}
			seen[body] = true
		}
		return len(seen) == 3, fmt.Sprintf("replies seen: %v", seen)
	}, "published port answers on every node and reaches every replica")

	// From a container: by VIP and by name through the embedded DNS.
	var svc api.Service
	if err := h1.JSON(&svc, "service", "inspect", "web"); err != nil {
		t.Fatal(err)
	}
	if svc.VIP == "" {
		t.Fatal("service has no VIP")
	}
	out := c.Host(2).MustCLI(t, "run", "--rm", "bb:1", "sh", "-c",
		"timeout 3 wget -q -O - http://"+svc.VIP+"/; nslookup web 2>&1; nslookup tasks.web 2>&1 | grep -c Address; true")
	if !strings.Contains(out, "hello from web.") {
		t.Fatalf("VIP from a container: %q", out)
	}
	if !strings.Contains(out, svc.VIP) {
		t.Fatalf("DNS from a container does not resolve web to %s: %q", svc.VIP, out)
	}

	// A dead host's replicas stop getting traffic; every request succeeds
	// once the replicas run elsewhere.
	victim := c.Host(3)
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		per, msg := runningBySlot(tasksOf(t, h1, "web"), 3, "")
		if per == nil {
			return false, msg
		}
		return per[hostname(victim)] == 0, fmt.Sprintf("%v", per)
	}, "replicas moved off the dead host")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for i := 0; i < 12; i++ {
			for _, h := range c.Hosts()[:2] {
				if _, err := get(fmt.Sprintf("http://%s:18080/", h.IP)); err != nil {
					return false, fmt.Sprintf("request %d via %s: %v", i, h.Name, err)
				}
			}
		}
		return true, ""
	}, "24 requests in a row succeed through the survivors")
}

// TestNFTFlushRepaired: someone else's `nft flush ruleset` on a node (an
// nftables service restarting, a firewall reload) deletes the load
// balancer's and the anti-spoofing guard's tables. The agent hears of it
// from the kernel (node/netloop nftwatch.go) and makes them again: the
// published port answers on that node again and the guard table is back,
// with no service change to prompt it.
func TestNFTFlushRepaired(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "1", "--publish", "18081:80", "bb:1", "sh", "-c", webCmd)
	waitSlots(t, h1, "web", 1, "", 60*time.Second)
	url := fmt.Sprintf("http://%s:18081/", h2.IP)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		_, err := get(url)
		return err == nil, fmt.Sprint(err)
	}, "published port answers on h2")
	tables := func() string {
		out, _ := exec.Command("ip", "netns", "exec", h2.NS, "nft", "list", "tables").CombinedOutput()
		return string(out)
	}
	// The kernel gives a table made again a new handle: the repair can
	// come before any read of the tables after the flush (the agent
	// watches nftables), so a new handle is what shows the flush happened.
	handle := func() string {
		out, _ := exec.Command("ip", "netns", "exec", h2.NS, "nft", "-a", "list", "table", "ip", "shoal").CombinedOutput()
		first, _, _ := strings.Cut(string(out), "\n")
		return first
	}
	before, beforeHandle := tables(), handle()
	if !strings.Contains(before, "bridge") || !strings.Contains(beforeHandle, "# handle") {
		t.Fatalf("no guard table or no shoal table on h2 before the flush: %q, %q", before, beforeHandle)
	}
	if out, err := exec.Command("ip", "netns", "exec", h2.NS, "nft", "flush", "ruleset").CombinedOutput(); err != nil {
		t.Fatalf("nft flush ruleset: %v: %s", err, out)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		got, h := tables(), handle()
		if got != before {
			return false, fmt.Sprintf("tables %q, want %q", got, before)
		}
		if h == beforeHandle {
			return false, fmt.Sprintf("table ip shoal still %q: not flushed, or not made again", h)
		}
		_, err := get(url)
		return err == nil, fmt.Sprint(err)
	}, "tables made again and the published port answering on h2")
}
