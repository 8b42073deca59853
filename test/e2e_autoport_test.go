package test

// End-to-end test of published ports the cluster picks (`--publish 80`,
// compose "80"), as Swarm does from 30000-32767: the port is stored in the
// spec, answers through every node, stays across `service update` and a
// redeploy of the same stack file, and is not given to another service.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// publishedPort returns the published port of svc's port to target, as
// `service inspect` shows it, failing the test unless the cluster picked
// one of 30000-32767.
func publishedPort(t *testing.T, h *harness.Host, svc string, target int) int {
	t.Helper()
	var s api.Service
	if err := h.JSON(&s, "service", "inspect", svc); err != nil {
		t.Fatalf("inspect %s: %v", svc, err)
	}
	for _, p := range s.Spec.Ports {
		if p.Target == target {
			if p.Published < api.AutoPortMin || p.Published > api.AutoPortMax {
				t.Fatalf("%s: published port %d for %d, want one of %d-%d", svc, p.Published, target, api.AutoPortMin, api.AutoPortMax)
			}
			return p.Published
		}
	}
	t.Fatalf("%s publishes no port to %d: %+v", svc, target, s.Spec.Ports)
	return 0
}

// answersEverywhere waits until port answers through every node with a
// reply of svc's tasks (webCmd's "hello from SVC.").
func answersEverywhere(t *testing.T, c *harness.Cluster, svc string, port int) {
	t.Helper()
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range c.Hosts() {
			body, err := get(fmt.Sprintf("http://%s:%d/", h.IP, port))
			if err != nil {
				return false, fmt.Sprintf("%s: %v", h.Name, err)
			}
			if !strings.HasPrefix(body, "hello from "+svc+".") {
				return false, fmt.Sprintf("%s answered %q", h.Name, body)
			}
		}
		return true, ""
	}, "%s answers on %d through every node", svc, port)
}

func TestAutoPublishedPort(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)

	// 1. `--publish 80`: a port of the range, shown by service ls, serving
	// through every node (one of the three runs no task).
	h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "2", "--publish", "80", "bb:1", "sh", "-c", webCmd)
	waitSlots(t, h1, "web", 2, "", 60*time.Second)
	port := publishedPort(t, h1, "web", 80)
	if out := h2.MustCLI(t, "service", "ls"); !strings.Contains(out, fmt.Sprintf("*:%d->80/tcp", port)) {
		t.Errorf("service ls does not show *:%d->80/tcp:\n%s", port, out)
	}
	answersEverywhere(t, c, "web", port)

	// 2. An update that does not touch the port (through another node)
	// keeps it; the tasks roll to the new env and answer on it again.
	before := tasksOf(t, h1, "web")
	h2.MustCLI(t, "service", "update", "--env-add", "X=1", "web")
	if got := publishedPort(t, h1, "web", 80); got != port {
		t.Fatalf("service update --env-add moved the published port %d → %d", port, got)
	}
	old := map[string]bool{}
	for _, tk := range before {
		old[tk.ID] = true
	}
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		tasks := tasksOf(t, h1, "web")
		per, msg := runningBySlot(tasks, 2, "")
		if per == nil {
			return false, msg
		}
		for _, tk := range tasks {
			if old[tk.ID] && tk.DesiredState == api.TaskRunning {
				return false, "task " + tk.ID + " of the old spec still desired running"
			}
		}
		return true, ""
	}, "web rolled to X=1")
	answersEverywhere(t, c, "web", port)

	// 3. A second service gets another port, created through another node.
	h2.MustCLI(t, "service", "create", "--name", "api", "--publish", "80", "bb:1", "sh", "-c", webCmd)
	waitSlots(t, h1, "api", 1, "", 60*time.Second)
	apiPort := publishedPort(t, h1, "api", 80)
	if apiPort == port {
		t.Fatalf("api got web's published port %d", port)
	}
	answersEverywhere(t, c, "api", apiPort)

	// 4. A stack file's "80" gets a port too, and deploying the same file
	// again changes nothing: the service is up to date, the port stays.
	file := filepath.Join(t.TempDir(), "compose.yml")
	const compose = `services:
  web:
    image: bb:1
    command: ["sh", "-c", "echo hello from $$(hostname) >/www/index.html; exec httpd -f -p 80 -h /www"]
    ports:
      - "80"
`
	if err := os.WriteFile(file, []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	h1.MustCLI(t, "stack", "deploy", "-c", file, "shop")
	waitSlots(t, h1, "shop_web", 1, "", 60*time.Second)
	stackPort := publishedPort(t, h1, "shop_web", 80)
	if stackPort == port || stackPort == apiPort {
		t.Fatalf("shop_web got port %d, already web's (%d) or api's (%d)", stackPort, port, apiPort)
	}
	out, _, err := h2.CLI("stack", "deploy", "-c", file, "shop")
	if err != nil || !strings.Contains(out, "Service shop_web is up to date") {
		t.Fatalf("redeploy of the same file: %q %v", out, err)
	}
	if got := publishedPort(t, h1, "shop_web", 80); got != stackPort {
		t.Fatalf("redeploy moved shop_web's port %d → %d", stackPort, got)
	}
	answersEverywhere(t, c, "shop_web", stackPort)
}
