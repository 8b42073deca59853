package test

// End-to-end test of `shoal stack deploy` with real compose files: the
// files are read by the CLI (compose-go), the services run on a real
// 2-node cluster.

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// stackCompose is the stack of the test: web's tag and port and api's mode
// come from the environment, web's replicas from .env.
const stackCompose = `name: shop
services:
  web:
    image: bb:${WEB_TAG:-1}
    command: ["sleep", "3600"]
    ports: ["${WEB_PORT:-8080}:80"]
    deploy:
      replicas: ${WEB_REPLICAS}
      update_config:
        parallelism: 0
  api:
    image: bb:1
    command: sleep 3600
    environment:
      MODE: ${API_MODE:?set API_MODE}
    healthcheck:
      test: ["CMD", "true"]
      interval: 2s
  worker:
    image: bb:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
    volumes: [data:/data]
    deploy:
      mode: global
volumes:
  data:
`

// stackServices returns the services of the cluster by name.
func stackServices(t *testing.T, h *harness.Host) map[string]api.Service {
	t.Helper()
	var list []api.Service
	if err := h.JSON(&list, "service", "ls"); err != nil {
		t.Fatal(err)
	}
	m := map[string]api.Service{}
	for _, s := range list {
		m[s.Name] = s
	}
	return m
}

// runningTaskIDs returns the IDs of the running tasks of svc, sorted.
func runningTaskIDs(t *testing.T, h *harness.Host, svc string) []string {
	t.Helper()
	var ids []string
	for _, tk := range tasksOf(t, h, svc) {
		if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
			ids = append(ids, tk.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestStackDeployComposeUpdatePrune(t *testing.T) {
	c, tar := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	svcImportV2(t, h1, tar)

	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("compose.yml", stackCompose)
	write(".env", "WEB_REPLICAS=3\nWEB_PORT=8000\n")
	t.Setenv("API_MODE", "prod")
	t.Setenv("WEB_PORT", "8088") // the environment wins over .env

	// 1. Deploy: the name comes from the file, values from .env and the
	// environment; what Shoal lacks is reported by key and ignored.
	out, errOut, err := h2.CLI("stack", "deploy", "-c", file)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if strings.Contains(errOut, "volumes") {
		t.Errorf("deploy stderr %q: volumes are supported", errOut)
	}
	if out != "Creating service shop_api\nCreating service shop_web\nCreating service shop_worker\n" {
		t.Errorf("deploy stdout %q", out)
	}
	svcs := stackServices(t, h1)
	web, worker := svcs["shop_web"], svcs["shop_worker"]
	if web.Replicas != 3 || len(web.Ports) != 1 || web.Ports[0].Published != 8088 || web.Image != "bb:1" {
		t.Errorf("shop_web: replicas %d, ports %+v, image %s", web.Replicas, web.Ports, web.Image)
	}
	if worker.Mode != api.ModeGlobal {
		t.Errorf("shop_worker mode %q", worker.Mode)
	}
	if want := []api.Mount{{Type: api.MountVolume, Source: "shop_data", Target: "/data"}}; !slices.Equal(worker.Spec.Mounts, want) {
		t.Errorf("shop_worker mounts %+v, want %+v", worker.Spec.Mounts, want)
	}
	for _, h := range []*harness.Host{h1, h2} { // the stack's volume, on every node that runs a worker
		harness.Eventually(t, volTimeout, func() (bool, string) {
			v, err := volumeOf(t, h, "shop_data")
			return err == nil && v.InUse, cliStderr(err)
		}, "volume shop_data in use on %s", h.Name)
	}
	var inspected api.Service
	if err := h1.JSON(&inspected, "service", "inspect", "shop_api"); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(inspected.Spec.Env, "MODE=prod") || inspected.Spec.Labels["com.docker.stack.namespace"] != "shop" {
		t.Errorf("shop_api spec: env %q, labels %v", inspected.Spec.Env, inspected.Spec.Labels)
	}
	var stacks []struct {
		Name     string `json:"name"`
		Services int    `json:"services"`
	}
	if err := h1.JSON(&stacks, "stack", "ls"); err != nil || len(stacks) != 1 || stacks[0].Name != "shop" || stacks[0].Services != 3 {
		t.Errorf("stack ls: %+v %v", stacks, err)
	}
	waitSlots(t, h1, "shop_web", 3, "bb:1", 90*time.Second)
	waitSlots(t, h1, "shop_api", 1, "bb:1", 90*time.Second)
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		n := len(runningTaskIDs(t, h1, "shop_worker"))
		return n == 2, fmt.Sprintf("%d worker tasks running", n)
	}, "shop_worker on both nodes")
	apiTasks := runningTaskIDs(t, h1, "shop_api")
	workerTasks := runningTaskIDs(t, h1, "shop_worker")

	// The stack's services reach each other by the names the file gives
	// them, as with docker stack: from shop_api, "web" is shop_web's VIP.
	var webSvc api.Service
	if err := h1.JSON(&webSvc, "service", "inspect", "shop_web"); err != nil || webSvc.VIP == "" {
		t.Fatalf("inspect shop_web: VIP %q, %v", webSvc.VIP, err)
	}
	var resolved []string
	for _, h := range []*harness.Host{h1, h2} {
		out, errOut, err := h.CLI("exec", "shop_api.1", "nslookup", "web")
		resolved = append(resolved, fmt.Sprintf("%s: %q %q %v", h.Name, out, errOut, err))
		if err == nil && strings.Contains(out, webSvc.VIP) {
			resolved = nil
			break
		}
	}
	if resolved != nil {
		t.Errorf("nslookup web in shop_api.1 resolved no shop_web VIP %s: %q", webSvc.VIP, resolved)
	}

	// 2. Redeploy with only web changed (a new tag through the
	// environment): only web's version moves; the others keep their tasks.
	t.Setenv("WEB_TAG", "2")
	out, _, err = h1.CLI("stack", "deploy", "-c", file, "shop")
	if err != nil {
		t.Fatalf("redeploy: %v", err)
	}
	if out != "Updating service shop_web\nService shop_api is up to date\nService shop_worker is up to date\n" {
		t.Errorf("redeploy stdout %q", out)
	}
	waitSlots(t, h1, "shop_web", 3, "bb:2", 90*time.Second)
	after := stackServices(t, h1)
	if after["shop_web"].Version == web.Version {
		t.Errorf("shop_web version still %d", web.Version)
	}
	for _, n := range []string{"shop_api", "shop_worker"} {
		if after[n].Version != svcs[n].Version {
			t.Errorf("%s version %d → %d: updated though unchanged", n, svcs[n].Version, after[n].Version)
		}
	}
	if got := runningTaskIDs(t, h1, "shop_api"); !slices.Equal(got, apiTasks) {
		t.Errorf("shop_api tasks %v → %v: restarted though unchanged", apiTasks, got)
	}
	if got := runningTaskIDs(t, h1, "shop_worker"); !slices.Equal(got, workerTasks) {
		t.Errorf("shop_worker tasks %v → %v: restarted though unchanged", workerTasks, got)
	}

	// 3. The worker leaves the file: kept without --prune, removed with it.
	write("compose.yml", strings.Replace(stackCompose, "  worker:\n", "  unused:\n    profiles: [never]\n", 1))
	out, _, err = h2.CLI("stack", "deploy", "-c", file, "shop")
	if err != nil || strings.Contains(out, "Removing") {
		t.Fatalf("deploy without --prune: %q %v", out, err)
	}
	if _, ok := stackServices(t, h1)["shop_worker"]; !ok {
		t.Fatal("shop_worker removed without --prune")
	}
	out, _, err = h2.CLI("stack", "deploy", "--prune", "-c", file, "shop")
	if err != nil || out != "Removing service shop_worker\nService shop_api is up to date\nService shop_web is up to date\n" {
		t.Fatalf("deploy --prune: %q %v", out, err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		s := stackServices(t, h2)
		_, ok := s["shop_worker"]
		return !ok && len(s) == 2, fmt.Sprintf("services %v", slices.Sorted(maps.Keys(s)))
	}, "shop_worker pruned")

	// 4. A typo'd file: a clear error naming file, line and key, and
	// nothing created, not even the services that were right.
	bad := filepath.Join(dir, "bad.yml")
	write("bad.yml", "services:\n  a:\n    image: bb:1\n    command: [sleep, '60']\n  b:\n    imagee: bb:1\n")
	_, _, err = h1.CLI("stack", "deploy", "-c", bad, "typo")
	mustFail(t, err, "deploy of a typo'd file", bad+":6: services.b.imagee: unknown key")
	// An unset required variable likewise.
	os.Unsetenv("API_MODE")
	_, _, err = h1.CLI("stack", "deploy", "-c", file, "other")
	mustFail(t, err, "deploy without API_MODE", file+":15: services.api.environment.MODE: required variable API_MODE is missing a value: set API_MODE")
	for name := range stackServices(t, h1) {
		if strings.HasPrefix(name, "typo_") || strings.HasPrefix(name, "other_") {
			t.Errorf("service %s created from a bad file", name)
		}
	}
}
