package test

// A team moves its real stack onto Shoal (session 14's walk): one compose
// file with a web tier of 2 replicas behind a published port, a db on an
// internal network with a named volume, a secret and a config at custom
// targets with modes, healthchecks, depends_on, env_file, interpolation
// with defaults, update and restart policies, limits and labels (and
// docker compose's container_name, which Swarm ignores). Driven
// only through the CLI on 3 nodes, as docs/cli.md and the README describe
// it; each command and its output is logged.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// walkS14Compose is the team's file. Its web tier answers "hello from
// TASK MODE" on 80 (published on 8080) and the db answers "db-ok" on 5432
// on the internal network only.
const walkS14Compose = `version: "3.8"
services:
  web:
    image: bb:${TAG:-1}
    container_name: web
    command: ["sh", "-c", "echo web starting; echo \"hello from $$(hostname) $$MODE\" >/www/index.html; exec httpd -f -p 80 -h /www"]
    env_file: [web.env]
    environment:
      GREETING: ${GREETING:-hi}
    ports: ["8080:80"]
    networks: [front, back]
    depends_on: [db]
    labels: [tier=web]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      timeout: 5s
      retries: 3
    secrets:
      - source: db_password
        target: db_pw
        mode: 0400
    configs:
      - source: app_conf
        target: /etc/app/app.conf
        mode: 0440
    deploy:
      replicas: 2
      labels:
        team: shop
      update_config:
        parallelism: 1
        delay: 1s
        order: start-first
      restart_policy:
        condition: on-failure
        delay: 1s
        max_attempts: 3
      resources:
        limits:
          cpus: "0.5"
          memory: 64M
        reservations:
          memory: 32M
  db:
    image: bb:1
    command: ["sh", "-c", "echo db starting; date >>/data/boots; mkdir -p /www; echo db-ok >/www/index.html; exec httpd -f -p 5432 -h /www"]
    networks: [back]
    volumes: [dbdata:/data]
    secrets: [db_password]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:5432/"]
      interval: 1s
    deploy:
      placement:
        constraints: [node.hostname == DBNODE]
  worker:
    image: bb:1
    command: ["sleep", "3600"]
    networks: [back]
networks:
  front: {}
  back:
    internal: true
volumes:
  dbdata: {}
secrets:
  db_password:
    file: ./pw.txt
configs:
  app_conf:
    file: ./app.conf
`

func TestWalkS14(t *testing.T) {
	start := time.Now()
	c, tar := svcCluster(t, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	svcImportV2(t, h1, tar)
	t.Logf("cluster formed in %v", time.Since(start))

	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	compose := strings.Replace(walkS14Compose, "DBNODE", hostname(h3), 1)
	file := filepath.Join(dir, "compose.yml")
	write("compose.yml", compose)
	write("web.env", "MODE=prod\n# a comment\nLOG_LEVEL=info\n")
	write("pw.txt", "s3cret-pw\n")
	write("app.conf", "color=blue\n")
	os.Unsetenv("TAG")
	os.Unsetenv("GREETING")

	// 1. Deploy, from a node that will run no db.
	deployStart := time.Now()
	out, err := walkRun(t, h1, "stack", "deploy", "--detach=false", "-c", file, "shop")
	if err != nil {
		t.Fatalf("stack deploy: %v", err)
	}
	if !strings.Contains(out, "shop_web: converged, 2/2 running") || !strings.Contains(out, "shop_db: converged, 1/1 running") {
		t.Errorf("stack deploy --detach=false did not follow the services to convergence")
	}
	for _, w := range []string{"shop_front", "shop_back", "shop_db_password", "shop_app_conf", "shop_web", "shop_db", "shop_worker"} {
		if !strings.Contains(out, w) {
			t.Errorf("deploy output does not mention %s", w)
		}
	}
	walkRun(t, h2, "stack", "ls")
	walkRun(t, h2, "stack", "services", "shop")
	waitSlots(t, h1, "shop_web", 2, "bb:1", 60*time.Second)
	waitSlots(t, h1, "shop_db", 1, "bb:1", 60*time.Second)
	walkRun(t, h3, "stack", "ps", "shop")

	var web api.Service
	if err := h2.JSON(&web, "service", "inspect", "shop_web"); err != nil {
		t.Fatal(err)
	}
	sp := web.Spec
	t.Logf("shop_web spec: env %q labels %v limits mem %d cpu %v update %+v restart %+v", sp.Env, sp.Labels, sp.Resources.Limits.MemoryBytes, sp.Resources.Limits.NanoCPUs, sp.UpdateConfig, sp.RestartPolicy)
	for _, e := range []string{"MODE=prod", "LOG_LEVEL=info", "GREETING=hi"} {
		if !slices.Contains(sp.Env, e) {
			t.Errorf("shop_web env %q lacks %s", sp.Env, e)
		}
	}
	if sp.Labels["tier"] != "web" || sp.Labels["team"] != "shop" || sp.Labels["com.docker.stack.namespace"] != "shop" {
		t.Errorf("shop_web labels %v", sp.Labels)
	}
	if web.Image != "bb:1" {
		t.Errorf("shop_web image %q, want bb:1 (${TAG:-1})", web.Image)
	}

	// 2. The published port from the LAN side, through a node without a web task.
	tasks := runningTasks(t, h1, "shop_web")
	busy := map[string]bool{}
	for _, tk := range tasks {
		busy[tk.Node] = true
	}
	var idle *harness.Host
	for _, h := range c.Hosts() {
		if !busy[hostname(h)] {
			idle = h
		}
	}
	if idle == nil {
		t.Fatalf("every node runs a web task: %v", busy)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		body, err := get(fmt.Sprintf("http://%s:8080/", idle.IP))
		return err == nil && strings.HasPrefix(body, "hello from shop_web.") && strings.HasSuffix(body, "prod"), fmt.Sprintf("%q %v", body, err)
	}, "8080 answers through %s (no web task there)", idle.Name)

	// Health: every web container turns healthy.
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		var got []string
		for _, h := range c.Hosts() {
			for _, ct := range containersOn(t, h, false) {
				if strings.HasPrefix(ct.Name, "shop_web.") || strings.HasPrefix(ct.Name, "shop_db.") {
					got = append(got, ct.Name+"="+ct.Health)
				}
			}
		}
		n := 0
		for _, g := range got {
			if strings.HasSuffix(g, "=healthy") {
				n++
			}
		}
		return n == 3, fmt.Sprint(got)
	}, "web and db healthy")

	// 3. exec into a task: the secret and the config at their targets with
	// their modes; db by its short name from web. A user types the task
	// name on some node first.
	web1 := taskNamed(t, h1, "shop_web", 1)
	on := hostOf(t, c, web1)
	other := h1
	if on == h1 {
		other = h2
	}
	if out, err := walkRun(t, other, "exec", "shop_web.1", "cat", "/run/secrets/db_pw"); err == nil || !strings.Contains(out, hostname(on)) {
		t.Errorf("exec of a task on another node: want an error naming %s, got %q %v", hostname(on), out, err)
	}
	if out, err := walkRun(t, on, "exec", "shop_web.1", "cat", "/run/secrets/db_pw"); err != nil || out != "s3cret-pw\n" {
		t.Errorf("secret: %q %v", out, err)
	}
	if out, err := walkRun(t, on, "exec", "shop_web.1", "stat", "-c", "%a %u", "/run/secrets/db_pw", "/etc/app/app.conf"); err != nil || out != "400 0\n440 0\n" {
		t.Errorf("modes: %q %v, want 400 and 440", out, err)
	}
	if out, err := walkRun(t, on, "exec", "shop_web.1", "cat", "/etc/app/app.conf"); err != nil || out != "color=blue\n" {
		t.Errorf("config: %q %v", out, err)
	}
	if out, err := walkRun(t, on, "exec", "shop_web.1", "wget", "-q", "-O", "-", "http://db:5432/"); err != nil || out != "db-ok\n" {
		t.Errorf("web → db by name: %q %v", out, err)
	}
	if out, err := walkRun(t, on, "exec", "shop_web.1", "sh", "-c", "ulimit -a >/dev/null; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"); err != nil || strings.TrimSpace(out) != "67108864" {
		t.Errorf("memory limit inside web: %q %v, want 67108864", out, err)
	}
	if out, err := walkRun(t, on, "exec", "shop_web.1", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.soft_limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.low"); err != nil || strings.TrimSpace(out) != "33554432" {
		t.Errorf("memory reservation inside web: %q %v, want 33554432 (deploy.resources.reservations.memory 32M is the soft limit, as docker sets it)", out, err)
	}
	if out, err := walkRun(t, on, "exec", "shop_web.1", "sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max"); err != nil ||
		strings.Join(strings.Fields(out), " ") != "50000 100000" {
		t.Errorf("cpu limit inside web: %q %v, want 0.5 CPU (50000 100000)", out, err)
	}
	out, _ = walkRun(t, h2, "service", "logs", "shop_web")
	if strings.Count(out, "web starting") < 2 {
		t.Errorf("service logs shop_web: want both tasks' \"web starting\"")
	}

	// 4. Isolation: db is not reachable from the LAN (no published port),
	// web is not reachable on back from a container on another network,
	// and the internal network has no way out.
	db := runningTasks(t, h1, "shop_db")[0]
	dbIP := db.IPs["shop_back"]
	webBack, webFront := web1.IPs["shop_back"], web1.IPs["shop_front"]
	if dbIP == "" || webBack == "" || webFront == "" {
		t.Fatalf("addresses: db %v, web %v", db.IPs, web1.IPs)
	}
	lan, lanIP := lanHost(t, c, h3)
	if out, err := inNS(lan, "wget", "-q", "-O", "-", "http://"+dbIP+":5432/"); err == nil {
		t.Errorf("db %s:5432 answers the LAN: %q", dbIP, out)
	}
	if out, err := walkRun(t, h3, "exec", "shop_db.1", "wget", "-q", "-T", "3", "-O", "-", "http://"+lanIP+"/"); err == nil {
		t.Errorf("db on the internal network reaches the LAN: %q", out)
	}
	h1.MustCLI(t, "network", "create", "other")
	h1.MustCLI(t, "service", "create", "-d", "--name", "probe", "--network", "other", "bb:1", "sleep", "3600")
	waitSlots(t, h1, "probe", 1, "", 60*time.Second)
	probe := runningTasks(t, h1, "probe")[0]
	nsP := netnsOf(t, c, probe)
	for _, ip := range []string{webBack, webFront, dbIP} {
		if out, err := inNS(nsP, "wget", "-q", "-O", "-", "http://"+ip+"/"); err == nil {
			t.Errorf("probe on another network reaches %s: %q", ip, out)
		}
	}
	if ok, out := resolves(nsP, dnsOf(t, h1, probe), "shop_db"); ok {
		t.Errorf("probe resolves shop_db: %q", out)
	}

	// A web task whose health check fails is replaced (restart_policy
	// on-failure): its page goes, wget gets 404.
	web2 := taskNamed(t, h1, "shop_web", 2)
	walkRun(t, hostOf(t, c, web2), "exec", "shop_web.2", "rm", "/www/index.html")
	harness.Eventually(t, 40*time.Second, func() (bool, string) {
		for _, tk := range runningTasks(t, h1, "shop_web") {
			if tk.Slot == 2 && tk.ID != web2.ID && tk.Health == api.HealthHealthy {
				return true, ""
			}
		}
		return false, fmt.Sprint(tasksOf(t, h1, "shop_web"))
	}, "unhealthy shop_web.2 replaced by a healthy task")
	walkRun(t, h1, "service", "ps", "shop_web")

	// 5. Updates through the published port, start-first from the file:
	// no request fails.
	throughUpdate(t, c, 8080, "service update --image bb:2", func() {
		if _, err := walkRun(t, h2, "service", "update", "--image", "bb:2", "shop_web"); err != nil {
			t.Error(err)
		}
	})
	waitSlots(t, h1, "shop_web", 2, "bb:2", 60*time.Second)
	throughUpdate(t, c, 8080, "service update --env-add MODE=canary", func() {
		if _, err := walkRun(t, h3, "service", "update", "--env-add", "MODE=canary", "shop_web"); err != nil {
			t.Error(err)
		}
	})
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		body, err := get(fmt.Sprintf("http://%s:8080/", idle.IP))
		return err == nil && strings.HasSuffix(body, "canary"), fmt.Sprintf("%q %v", body, err)
	}, "canary answers")
	throughUpdate(t, c, 8080, "service rollback", func() {
		if _, err := walkRun(t, h1, "service", "rollback", "shop_web"); err != nil {
			t.Error(err)
		}
	})
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		body, err := get(fmt.Sprintf("http://%s:8080/", idle.IP))
		return err == nil && strings.HasSuffix(body, "prod"), fmt.Sprintf("%q %v", body, err)
	}, "rolled back to prod")
	walkRun(t, h1, "service", "scale", "shop_web=3")
	waitSlots(t, h1, "shop_web", 3, "bb:2", 60*time.Second)

	// 6. The file changes: worker leaves, the config's content changes
	// under the same name. Docker refuses (a config is immutable: a new
	// content needs a new name); the refusal must say so and change
	// nothing. The same for a secret, through a non-voter if there is one
	// (only the leader can open it to compare).
	write("app.conf", "color=green\n")
	noWorker := strings.Replace(compose, "  worker:\n    image: bb:1\n    command: [\"sleep\", \"3600\"]\n    networks: [back]\n", "", 1)
	write("compose.yml", noWorker)
	before := stackServices(t, h1)
	refusedDeploy := func(via *harness.Host, what string) {
		t.Helper()
		out, err := walkRun(t, via, "stack", "deploy", "--prune", "-c", file, "shop")
		if err == nil || !strings.Contains(out, what) || !strings.Contains(out, "nothing was changed") {
			t.Errorf("a changed %s under the same name: want a refusal naming it, got %v", what, err)
		}
		after := stackServices(t, h1)
		for n, s := range before {
			if after[n].Version != s.Version {
				t.Errorf("refused deploy changed %s", n)
			}
		}
	}
	refusedDeploy(h2, "config shop_app_conf")
	write("app.conf", "color=blue\n")
	write("pw.txt", "n3w-pw\n")
	refusedDeploy(h3, "secret shop_db_password")
	write("pw.txt", "s3cret-pw\n")
	write("app.conf", "color=green\n")
	// The team versions the config by name, as with docker.
	write("compose.yml", strings.Replace(noWorker, "  app_conf:\n    file: ./app.conf\n", "  app_conf:\n    name: shop_app_conf_v2\n    file: ./app.conf\n", 1))
	if _, err := walkRun(t, h2, "stack", "deploy", "--prune", "-c", file, "shop"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		_, ok := stackServices(t, h1)["shop_worker"]
		return !ok, ""
	}, "shop_worker pruned")
	waitSlots(t, h1, "shop_web", 2, "bb:1", 60*time.Second)
	web1 = taskNamed(t, h1, "shop_web", 1)
	if out, err := walkRun(t, hostOf(t, c, web1), "exec", "shop_web.1", "cat", "/etc/app/app.conf"); err != nil || out != "color=green\n" {
		t.Errorf("config after redeploy: %q %v", out, err)
	}

	// Another team's stack asks for the same published port: refused
	// naming the port, and none of its networks or configs is left.
	write("blog.yml", "services:\n  app:\n    image: bb:1\n    ports: [\"8080:80\"]\n    networks: [net]\n    configs: [c]\nnetworks:\n  net: {}\nconfigs:\n  c:\n    file: ./app.conf\n")
	if out, err := walkRun(t, h1, "stack", "deploy", "-c", filepath.Join(dir, "blog.yml"), "blog"); err == nil || !strings.Contains(out, "8080") {
		t.Errorf("a second stack on port 8080: want a refusal naming the port, got %v", err)
	}
	for _, kind := range []string{"network", "config", "service"} {
		var objs []struct {
			Name string `json:"name"`
		}
		if err := objJSON(h1, &objs, kind, "ls"); err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if strings.HasPrefix(o.Name, "blog_") {
				t.Errorf("refused stack blog left %s %s", kind, o.Name)
			}
		}
	}
	// An image no node has: the waiting deploy fails naming it.
	write("typo.yml", "services:\n  app:\n    image: bb:3\n")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	out, stderr, err := h1.CLIContext(ctx, "stack", "deploy", "--detach=false", "--timeout", "40s", "-c", filepath.Join(dir, "typo.yml"), "typo")
	cancel()
	t.Logf("$ shoal stack deploy --detach=false -c typo.yml typo\n%s%s(err %v)", out, stderr, err)
	if err == nil || !strings.Contains(stderr, "bb:3") {
		t.Errorf("a stack with an image no node has: want an error naming bb:3, got %v", err)
	}
	if _, ok := stackServices(t, h1)["typo_app"]; ok {
		t.Errorf("a refused stack left typo_app")
	}

	// 7. events --since shows the deploy.
	var evs []api.Event
	out, _ = walkRun(t, h3, "events", "--since", deployStart.Format(time.RFC3339), "--until", time.Now().Format(time.RFC3339), "--filter", "type=service", "--format", "json")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev api.Event
		if json.Unmarshal([]byte(line), &ev) == nil {
			evs = append(evs, ev)
		}
	}
	created := map[string]bool{}
	for _, ev := range evs {
		if ev.Action == "created" {
			created[ev.Name] = true
		}
	}
	for _, n := range []string{"shop_web", "shop_db", "shop_worker"} {
		if !created[n] {
			t.Errorf("events --since: no created event for %s", n)
		}
	}

	// 8. stack rm: services, networks, secrets and configs go; the named
	// volume stays on db's node until volume rm.
	if _, err := walkRun(t, h1, "stack", "rm", "shop"); err != nil {
		t.Error(err)
	}
	// A teardown script may run it twice, as with docker.
	if out, err := walkRun(t, h2, "stack", "rm", "shop"); err != nil || !strings.Contains(out, "Nothing found in stack: shop") {
		t.Errorf("stack rm of a removed stack: %q %v, want a note and success", out, err)
	}
	for n := range stackServices(t, h1) {
		if strings.HasPrefix(n, "shop_") {
			t.Errorf("service %s left after stack rm", n)
		}
	}
	var objs []struct {
		Name string `json:"name"`
	}
	for _, kind := range []string{"network", "secret", "config"} {
		if err := objJSON(h2, &objs, kind, "ls"); err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if strings.HasPrefix(o.Name, "shop_") {
				t.Errorf("%s %s left after stack rm", kind, o.Name)
			}
		}
	}
	if _, err := volumeOf(t, h3, "shop_dbdata"); err != nil {
		t.Errorf("volume shop_dbdata gone from %s after stack rm: %v", h3.Name, err)
	}
	// A team's "rm and deploy again", at once: the stack comes back whole
	// and db finds its volume's data (one boot line more).
	if _, err := walkRun(t, h2, "stack", "deploy", "--detach=false", "-c", file, "shop"); err != nil {
		t.Errorf("deploy right after stack rm: %v", err)
	}
	if out, err := walkRun(t, h3, "exec", "shop_db.1", "wc", "-l", "/data/boots"); err != nil || !strings.HasPrefix(strings.TrimSpace(out), "2") {
		t.Errorf("db's volume after the redeploy: %q %v, want 2 boots", out, err)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		body, err := get(fmt.Sprintf("http://%s:8080/", idle.IP))
		return err == nil && strings.HasPrefix(body, "hello from shop_web."), fmt.Sprintf("%q %v", body, err)
	}, "8080 answers after the redeploy")
	if _, err := walkRun(t, h1, "stack", "rm", "shop"); err != nil {
		t.Error(err)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		out, err := walkRun(t, h3, "volume", "rm", "shop_dbdata")
		return err == nil, out
	}, "volume rm shop_dbdata after stack rm")
	t.Logf("walk took %v", time.Since(start))
}

// taskNamed returns the running task of svc's slot.
func taskNamed(t *testing.T, h *harness.Host, svc string, slot int) api.Task {
	t.Helper()
	for _, tk := range runningTasks(t, h, svc) {
		if tk.Slot == slot {
			return tk
		}
	}
	t.Fatalf("%s.%d is not running", svc, slot)
	return api.Task{}
}
