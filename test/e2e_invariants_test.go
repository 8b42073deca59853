package test

// End-to-end tests of the state's invariants (issues 14 and 15): the state
// machine, not only the API node's replica, decides whether a published
// port or a service name is free, and the data plane keeps working.

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestConcurrentCreatesOnePort: two `service create --publish P:80` with
// different names, sent at the same moment through two different nodes'
// sockets. Both nodes' replicas have neither service when the API checks,
// so only the state machine can refuse one: exactly one must succeed and
// the other get a clear error. Then a service on another port must answer
// on every node and by name from a container — a clash used to make every
// node's load balancer sync fail, freezing nftables for good.
func TestConcurrentCreatesOnePort(t *testing.T) {
	c, tar := svcCluster(t, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	// Each node holds the image, so both creates pass the API's checks at
	// once, without waiting for the image record to replicate.
	h2.MustCLI(t, "image", "import", tar, "bb:1")
	h3.MustCLI(t, "image", "import", tar, "bb:1")

	type result struct {
		name, stderr string
		err          error
	}
	for round, port := range []int{8080, 8081, 8082} {
		names := [2]string{fmt.Sprintf("race%d-a", round), fmt.Sprintf("race%d-b", round)}
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]result, 2)
		for i, h := range []*harness.Host{h2, h3} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, stderr, err := h.CLI("service", "create", "-d", "--name", names[i],
					"--publish", fmt.Sprintf("%d:80", port), "bb:1", "sh", "-c", webCmd)
				results[i] = result{names[i], stderr, err}
			}()
		}
		close(start)
		wg.Wait()

		var won, lost []result
		for _, r := range results {
			if r.err == nil {
				won = append(won, r)
			} else {
				lost = append(lost, r)
			}
		}
		if len(won) != 1 {
			t.Fatalf("round %d (port %d): %d creates succeeded, want exactly 1: %+v", round, port, len(won), results)
		}
		msg := strings.ToLower(lost[0].stderr)
		key := fmt.Sprintf("%d/tcp", port)
		if !strings.Contains(msg, key) || !strings.Contains(msg, won[0].name) || !strings.Contains(msg, "in use") {
			t.Fatalf("round %d: refusal %q does not say that %s is in use by %s", round, lost[0].stderr, key, won[0].name)
		}
		// Every node agrees: one service publishes the port.
		harness.Eventually(t, 30*time.Second, func() (bool, string) {
			for _, h := range c.Hosts() {
				var svcs []api.Service
				if err := h.JSON(&svcs, "service", "ls"); err != nil {
					return false, err.Error()
				}
				var on []string
				for _, s := range svcs {
					for _, p := range s.Ports {
						if p.Published == port {
							on = append(on, s.Name)
						}
					}
				}
				if len(on) != 1 || on[0] != won[0].name {
					return false, fmt.Sprintf("%s: port %d published by %v", h.Name, port, on)
				}
			}
			return true, ""
		}, "round %d: every node lists one service on port %d", round, port)
	}

	// The data plane is not wedged: a new service on another port answers
	// on every node, and resolves by name from a container.
	h1.MustCLI(t, "service", "create", "-d", "--name", "probe", "--replicas", "2", "--publish", "18090:80", "bb:1", "sh", "-c", webCmd)
	waitSlots(t, h1, "probe", 2, "", 90*time.Second)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range c.Hosts() {
			body, err := get(fmt.Sprintf("http://%s:18090/", h.IP))
			if err != nil {
				return false, fmt.Sprintf("%s: %v", h.Name, err)
			}
			if !strings.HasPrefix(body, "hello from probe.") {
				return false, fmt.Sprintf("%s answered %q", h.Name, body)
			}
		}
		return true, ""
	}, "the new service's published port answers on every node")
	var probe api.Service
	if err := h1.JSON(&probe, "service", "inspect", "probe"); err != nil {
		t.Fatal(err)
	}
	out := h3.MustCLI(t, "run", "--rm", "bb:1", "sh", "-c", "nslookup probe 2>&1; true")
	if !strings.Contains(out, probe.VIP) {
		t.Fatalf("DNS from a container does not resolve probe to %s: %q", probe.VIP, out)
	}
	// And the contested port of round 0 reaches its one owner from every node.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range c.Hosts() {
			body, err := get(fmt.Sprintf("http://%s:8080/", h.IP))
			if err != nil {
				return false, fmt.Sprintf("%s: %v", h.Name, err)
			}
			if !strings.HasPrefix(body, "hello from race0-") {
				return false, fmt.Sprintf("%s answered %q", h.Name, body)
			}
		}
		return true, ""
	}, "port 8080 answers on every node")
}

// TestServiceNamesAreDNSLabels: service names are what containers resolve,
// so `WEB` after `web` is refused (one DNS name), even when created through
// another node, and a name that is no DNS label is refused; neither changes
// the state.
func TestServiceNamesAreDNSLabels(t *testing.T) {
	c, tar := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	h2.MustCLI(t, "image", "import", tar, "bb:1")
	h1.MustCLI(t, "service", "create", "-d", "--name", "web", "bb:1", "sleep", "1000")
	cases := []struct {
		name string
		via  *harness.Host
		svc  string
		want []string
	}{
		{"case of an existing name", h2, "WEB", []string{"web", "only in case"}},
		{"case of an existing name, same node", h1, "Web", []string{"web", "only in case"}},
		{"dot", h1, "web.internal", []string{"web.internal", "'.' not allowed", "dns label"}},
		{"trailing dash", h2, "web-", []string{"must end with a letter or digit"}},
		{"too long", h1, strings.Repeat("a", 64), []string{"longer than 63"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := tc.via.CLI("service", "create", "-d", "--name", tc.svc, "bb:1", "sleep", "1000")
			if err == nil {
				t.Fatalf("service %q accepted", tc.svc)
			}
			for _, w := range tc.want {
				if !strings.Contains(strings.ToLower(stderr), strings.ToLower(w)) {
					t.Fatalf("error %q does not mention %q", stderr, w)
				}
			}
		})
	}
	// A stack-style name is a label the DNS answers (DESIGN.md: STACK_NAME).
	h2.MustCLI(t, "service", "create", "-d", "--name", "shop_web", "bb:1", "sleep", "1000")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, h := range c.Hosts() {
			var svcs []api.Service
			if err := h.JSON(&svcs, "service", "ls"); err != nil {
				return false, err.Error()
			}
			var names []string
			for _, s := range svcs {
				names = append(names, s.Name)
			}
			if strings.Join(names, ",") != "shop_web,web" {
				return false, fmt.Sprintf("%s lists %v", h.Name, names)
			}
		}
		return true, ""
	}, "only web and shop_web exist")
}
