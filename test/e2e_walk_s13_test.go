package test

// A new user's walk through the session-13 features on 3 nodes, driven only
// through the CLI as docs/cli.md describes them: endpoint modes and network
// aliases seen from another task, published ports the cluster picks and
// their updates, max replicas per node and spread preferences with the
// create/update wait, a compose stack using all of them, and bad input for
// each (a clear error, nothing changed).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// walkRun runs a CLI command, logs what a user would see, and returns it.
func walkRun(t *testing.T, h *harness.Host, args ...string) (string, error) {
	t.Helper()
	out, stderr, err := h.CLI(args...)
	t.Logf("$ shoal %s\n%s%s(err %v)", strings.Join(args, " "), out, stderr, err)
	return out + stderr, err
}

// walkSpec returns the stored service (nil when absent).
func walkService(t *testing.T, h *harness.Host, name string) *api.Service {
	t.Helper()
	var list []api.Service
	if err := h.JSON(&list, "service", "ls"); err != nil {
		t.Fatal(err)
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i]
		}
	}
	return nil
}

// walkRefused checks that a command fails naming words and leaves
// service name's version unchanged (absent stays absent).
func walkRefused(t *testing.T, h *harness.Host, name string, words []string, args ...string) {
	t.Helper()
	before := walkService(t, h, name)
	out, err := walkRun(t, h, args...)
	if err == nil {
		t.Errorf("shoal %s: accepted, want refused", strings.Join(args, " "))
	}
	for _, w := range words {
		if !strings.Contains(out, w) {
			t.Errorf("shoal %s: error %q does not say %q", strings.Join(args, " "), out, w)
		}
	}
	after := walkService(t, h, name)
	switch {
	case before == nil && after != nil:
		t.Errorf("refused shoal %s created %s", strings.Join(args, " "), name)
	case before != nil && (after == nil || after.Version != before.Version):
		t.Errorf("refused shoal %s changed %s", strings.Join(args, " "), name)
	}
}

// addrCount counts the answers in busybox nslookup's output.
func addrCount(out string) int { return strings.Count(out, "Address") }

func TestWalkS13(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	h1.MustCLI(t, "network", "create", "back")
	h1.MustCLI(t, "network", "create", "front")

	// Clients to look names up from, one per network.
	h1.MustCLI(t, "service", "create", "-d", "--name", "cb", "--network", "back", "bb:1", "sleep", "3600")
	h1.MustCLI(t, "service", "create", "-d", "--name", "cf", "--network", "front", "bb:1", "sleep", "3600")

	// 1. dnsrr, without -d: the wait ends.
	if _, err := walkRun(t, h1, "service", "create", "--name", "rr", "--replicas", "2", "--endpoint-mode", "dnsrr",
		"--network", "back", "bb:1", "sh", "-c", webCmd); err != nil {
		t.Fatal(err)
	}
	waitSlots(t, h1, "cb", 1, "", 60*time.Second)
	waitSlots(t, h1, "cf", 1, "", 60*time.Second)
	cb := runningTasks(t, h1, "cb")[0]
	nsB, dnsB := netnsOf(t, c, cb), dnsOf(t, h1, cb)
	cf := runningTasks(t, h1, "cf")[0]
	nsF, dnsF := netnsOf(t, c, cf), dnsOf(t, h1, cf)
	lookup := func(ns, dns, name string, want func(string) bool, what string) {
		t.Helper()
		harness.Eventually(t, 30*time.Second, func() (bool, string) {
			ok, out := resolves(ns, dns, name)
			return ok && want(out), name + ": " + out
		}, "%s", what)
	}
	rrIPs := func() []string {
		var ips []string
		for _, tk := range runningTasks(t, h1, "rr") {
			ips = append(ips, tk.IP)
		}
		return ips
	}
	hasAll := func(ips []string, n int) func(string) bool {
		return func(out string) bool {
			for _, ip := range ips {
				if !strings.Contains(out, ip) {
					return false
				}
			}
			return addrCount(out) == n
		}
	}
	lookup(nsB, dnsB, "rr", hasAll(rrIPs(), 2), "dnsrr name → 2 task IPs")
	lookup(nsB, dnsB, "tasks.rr", hasAll(rrIPs(), 2), "tasks.rr → 2 task IPs")
	walkRun(t, h2, "service", "inspect", "rr")
	walkRun(t, h2, "service", "ls")

	walkRefused(t, h1, "rr", []string{"dnsr"}, "service", "update", "--endpoint-mode", "dnsr", "rr")
	walkRefused(t, h1, "rr", []string{"dnsrr"}, "service", "update", "--publish-add", "80", "rr")
	walkRun(t, h1, "service", "update", "--endpoint-mode", "vip", "rr")
	rr := walkService(t, h1, "rr")
	if rr.VIPs["back"] == "" {
		t.Errorf("after --endpoint-mode vip: vips %v", rr.VIPs)
	}
	lookup(nsB, dnsB, "rr", func(o string) bool { return strings.Contains(o, rr.VIPs["back"]) && addrCount(o) == 1 }, "vip name → VIP")
	lookup(nsB, dnsB, "tasks.rr", hasAll(rrIPs(), 2), "tasks.rr under vip → task IPs")
	walkRun(t, h1, "service", "update", "--endpoint-mode", "dnsrr", "rr")
	lookup(nsB, dnsB, "rr", hasAll(rrIPs(), 2), "back to dnsrr → task IPs")

	// 2. Aliases, --publish 80, through --network-add / --network-rm.
	if _, err := walkRun(t, h1, "service", "create", "--name", "web", "--replicas", "2", "--publish", "80",
		"--network", "name=back,alias=www,alias=w3", "bb:1", "sh", "-c", webCmd); err != nil {
		t.Fatal(err)
	}
	web := walkService(t, h1, "web")
	lookup(nsB, dnsB, "www", func(o string) bool { return strings.Contains(o, web.VIPs["back"]) }, "alias www → VIP on back")
	lookup(nsB, dnsB, "w3", func(o string) bool { return strings.Contains(o, web.VIPs["back"]) }, "alias w3 → VIP on back")
	if ok, out := resolves(nsF, dnsF, "www"); ok {
		t.Errorf("www resolves on front: %q", out)
	}
	// tasks.ALIAS is the tasks on that network, as tasks.NAME (libnetwork
	// registers both).
	var webBack []string
	for _, tk := range runningTasks(t, h1, "web") {
		webBack = append(webBack, tk.IPs["back"])
	}
	lookup(nsB, dnsB, "tasks.www", hasAll(webBack, 2), "tasks.www → web's 2 tasks on back")
	port := publishedPort(t, h1, "web", 80)
	walkRun(t, h3, "service", "ls")
	answersEverywhere(t, c, "web", port)

	walkRefused(t, h1, "web", []string{"rr"}, "service", "update", "--network-add", "name=back,alias=rr", "web")
	walkRefused(t, h1, "", []string{"www"}, "service", "create", "-d", "--name", "web2", "--network", "name=back,alias=www", "bb:1", "sleep", "3600")
	walkRefused(t, h1, "web", []string{"bad.alias"}, "service", "update", "--network-add", "name=back,alias=bad.alias", "web")
	walkRun(t, h1, "service", "update", "--network-add", "name=back,alias=www,alias=w4", "web")
	web = walkService(t, h1, "web")
	t.Logf("aliases after --network-add name=back,alias=www,alias=w4: %v", web.Spec.NetworkAliases)
	walkRefused(t, h1, "web", []string{"nonet"}, "service", "update", "--network-add", "name=nonet,alias=x", "web")

	if _, err := walkRun(t, h1, "service", "update", "--network-add", "name=front,alias=wf", "web"); err != nil {
		t.Error(err)
	}
	web = walkService(t, h1, "web")
	t.Logf("aliases after --network-add front: %v, vips %v", web.Spec.NetworkAliases, web.VIPs)
	lookup(nsF, dnsF, "wf", func(o string) bool { return strings.Contains(o, web.VIPs["front"]) }, "alias wf → VIP on front")
	if _, err := walkRun(t, h1, "service", "update", "--network-rm", "back", "web"); err != nil {
		t.Error(err)
	}
	web = walkService(t, h1, "web")
	if len(web.Spec.NetworkAliases["back"]) != 0 {
		t.Errorf("--network-rm back kept the aliases %v", web.Spec.NetworkAliases)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		ok, out := resolves(nsB, dnsB, "www")
		return !ok, out
	}, "www gone after --network-rm back")

	// Ports: add, keep, remove.
	if _, err := walkRun(t, h2, "service", "update", "--publish-add", "81", "web"); err != nil {
		t.Error(err)
	}
	if got := publishedPort(t, h1, "web", 80); got != port {
		t.Errorf("--publish-add 81 moved 80's port %d → %d", port, got)
	}
	p81 := publishedPort(t, h1, "web", 81)
	if out, _ := walkRun(t, h1, "service", "ls"); !strings.Contains(out, fmt.Sprintf("*:%d->81/tcp", p81)) {
		t.Errorf("service ls lacks *:%d->81/tcp", p81)
	}
	walkRefused(t, h1, "web", []string{"80-81", "ranges are not supported"}, "service", "update", "--publish-add", "80-81", "web")
	walkRefused(t, h1, "web", []string{`"8x" is not a number`}, "service", "update", "--publish-add", "8x", "web")
	walkRun(t, h1, "service", "update", "--publish-add", "80", "web")
	web = walkService(t, h1, "web")
	t.Logf("ports after --publish-add 80 again: %+v", web.Spec.Ports)
	walkRun(t, h1, "service", "update", "--publish-rm", fmt.Sprintf("%d:81", p81), "web")
	web = walkService(t, h1, "web")
	t.Logf("ports after --publish-rm P:81: %+v", web.Spec.Ports)
	walkRun(t, h1, "service", "update", "--publish-add", "81", "web")
	walkRun(t, h1, "service", "update", "--publish-rm", "81", "web")
	web = walkService(t, h1, "web")
	if len(web.Spec.Ports) != 1 || web.Spec.Ports[0].Published != port {
		t.Errorf("after --publish-rm 81: ports %+v", web.Spec.Ports)
	}
	walkRun(t, h1, "service", "update", "--env-add", "A=1", "web")
	if got := publishedPort(t, h1, "web", 80); got != port {
		t.Errorf("--env-add moved 80's port %d → %d", port, got)
	}
	answersEverywhere(t, c, "web", port)

	// 3. Placement: max per node with the wait, spread over zones.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	start := time.Now()
	out, stderr, err := h1.CLIContext(ctx, "service", "create", "--name", "mx", "--replicas", "4", "--replicas-max-per-node", "1", "bb:1", "sleep", "3600")
	cancel()
	t.Logf("$ shoal service create --name mx --replicas 4 --replicas-max-per-node 1 (after %v)\n%s%s(err %v)", time.Since(start), out, stderr, err)
	if !strings.Contains(out+stderr, "max replicas per node") {
		t.Errorf("the create's wait does not say why mx.4 waits")
	}
	walkRun(t, h1, "service", "ps", "mx")
	walkRun(t, h1, "service", "scale", "mx=3")
	walkRun(t, h1, "service", "scale", "mx=5")
	walkRun(t, h1, "service", "update", "--replicas-max-per-node", "2", "mx")
	walkRun(t, h1, "service", "ps", "mx")
	// A lowered limit keeps the excess running (no node has room): the
	// wait says so instead of a bare "converged".
	if out, _ := walkRun(t, h1, "service", "update", "--replicas-max-per-node", "1", "mx"); !strings.Contains(out, "2 nodes run more tasks than max replicas per node (1)") {
		t.Errorf("lowering the limit below what nodes run: the wait does not say so")
	}
	walkRun(t, h1, "service", "ps", "mx")
	if out, _ := walkRun(t, h1, "service", "scale", "mx=2"); !strings.Contains(out, "mx.5: running (scaled down)") && !strings.Contains(out, "mx.5: shutdown") {
		t.Errorf("scale 5 → 2: slot 5 not shown as scaled down")
	}
	walkRun(t, h1, "service", "create", "--name", "rk", "--replicas", "3", "--placement-pref", "spread=node.labels.rack", "bb:1", "sleep", "3600")
	walkRun(t, h1, "service", "create", "--name", "UP", "--endpoint-mode", "DNSRR", "bb:1", "sleep", "3600")
	walkRun(t, h1, "service", "create", "--name", "hostp", "--endpoint-mode", "dnsrr", "--publish", "mode=host,target=80", "bb:1", "sh", "-c", webCmd)
	walkRun(t, h1, "service", "ls")
	h1.MustCLI(t, "service", "create", "-d", "--name", "gl", "--mode", "global", "bb:1", "sleep", "3600")
	walkRefused(t, h1, "gl", []string{"replicas-max-per-node"}, "service", "update", "--replicas-max-per-node", "1", "gl")
	walkRefused(t, h1, "mx", []string{"node.labels"}, "service", "update", "--placement-pref-add", "spread=node.hostname", "mx")
	walkRefused(t, h1, "mx", []string{"spread"}, "service", "update", "--placement-pref-rm", "spread=node.labels.none", "mx")
	for i, z := range []string{"a", "a", "b"} {
		h1.MustCLI(t, "node", "update", "--label-add", "zone="+z, c.Host(i+1).NodeID(t))
	}
	for i, z := range []string{"a", "a", "b"} {
		harness.Eventually(t, 30*time.Second, labelSeen(c.Host(i+1).NodeID(t), "zone", z, c.Hosts()...), "zone label")
	}
	walkRun(t, h1, "service", "create", "--name", "sp", "--replicas", "4", "--placement-pref", "spread=node.labels.zone", "bb:1", "sleep", "3600")
	walkRun(t, h1, "service", "ps", "sp")
	walkRun(t, h1, "service", "update", "--placement-pref-rm", "spread=node.labels.zone", "sp")
	walkRun(t, h1, "service", "inspect", "sp")

	// 4. A stack using all of it.
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	compose := `services:
  cache:
    image: bb:1
    command: ["sh", "-c", "echo hello from $$(hostname) >/www/index.html; exec httpd -f -p 6379 -h /www"]
    ports: ["6379"]
    networks:
      app:
        aliases: [redis]
    deploy:
      replicas: 4
      placement:
        max_replicas_per_node: 2
        preferences:
          - spread: node.labels.zone
  db:
    image: bb:1
    command: ["sleep", "3600"]
    networks: [app]
    deploy:
      endpoint_mode: dnsrr
      replicas: 2
  client:
    image: bb:1
    command: ["sleep", "3600"]
    networks: [app]
networks:
  app: {}
`
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(compose)
	if _, err := walkRun(t, h1, "stack", "deploy", "-c", file, "team"); err != nil {
		t.Fatal(err)
	}
	waitSlots(t, h1, "team_cache", 4, "", 60*time.Second)
	waitSlots(t, h1, "team_db", 2, "", 60*time.Second)
	cache := walkService(t, h1, "team_cache")
	db := walkService(t, h1, "team_db")
	answersEverywhere(t, c, "team_cache", publishedPort(t, h1, "team_cache", 6379))
	perZone := map[string]int{}
	for _, tk := range runningTasks(t, h1, "team_cache") {
		perZone[map[string]string{hostname(h1): "a", hostname(h2): "a", hostname(h3): "b"}[tk.Node]]++
	}
	if perZone["a"] != 2 || perZone["b"] != 2 {
		t.Errorf("team_cache over zones: %v, want 2 and 2", perZone)
	}
	waitSlots(t, h1, "team_client", 1, "", 60*time.Second)
	cl := runningTasks(t, h1, "team_client")[0]
	nsC, dnsC := netnsOf(t, c, cl), dnsOf(t, h1, cl)
	var dbIPs []string
	for _, tk := range runningTasks(t, h1, "team_db") {
		dbIPs = append(dbIPs, tk.IP)
	}
	lookup(nsC, dnsC, "redis", func(o string) bool { return strings.Contains(o, cache.VIPs["team_app"]) }, "stack alias redis → cache's VIP")
	lookup(nsC, dnsC, "db", hasAll(dbIPs, 2), "stack dnsrr db → its 2 tasks")
	lookup(nsC, dnsC, "tasks.team_db", hasAll(dbIPs, 2), "tasks.team_db → its 2 tasks")
	out, _ = walkRun(t, h2, "stack", "deploy", "-c", file, "team")
	if !strings.Contains(out, "team_cache is up to date") || !strings.Contains(out, "team_db is up to date") {
		t.Errorf("redeploy unchanged: %q", out)
	}
	if s := walkService(t, h1, "team_cache"); s.Version != cache.Version {
		t.Errorf("unchanged redeploy changed team_cache")
	}
	if s := walkService(t, h1, "team_db"); s.Version != db.Version {
		t.Errorf("unchanged redeploy changed team_db")
	}
	walkRun(t, h1, "stack", "services", "team")
	write(strings.Replace(compose, "max_replicas_per_node: 2", "max_replicas_per_node: 3", 1))
	out, _ = walkRun(t, h2, "stack", "deploy", "-c", file, "team")
	if s := walkService(t, h1, "team_db"); s.Version != db.Version {
		t.Errorf("changing cache's limit changed team_db")
	}
	if s := walkService(t, h1, "team_cache"); s.Spec.MaxReplicasPerNode != 3 || s.Spec.Ports[0].Published != cache.Spec.Ports[0].Published {
		t.Errorf("after the limit change: %d, port %+v", s.Spec.MaxReplicasPerNode, s.Spec.Ports)
	}
	write(strings.Replace(compose, "endpoint_mode: dnsrr", "endpoint_mode: dnsr", 1))
	walkRefused(t, h1, "team_db", []string{"endpoint_mode"}, "stack", "deploy", "-c", file, "team")
	write(strings.Replace(compose, `["6379"]`, `["63x9"]`, 1))
	walkRefused(t, h1, "team_cache", []string{"63x9"}, "stack", "deploy", "-c", file, "team")
	write(strings.Replace(compose, "replicas: 2\n", "mode: global\n      placement:\n        max_replicas_per_node: 1\n", 1))
	walkRefused(t, h1, "team_db", []string{"max_replicas_per_node"}, "stack", "deploy", "-c", file, "team")
	// db takes cache's alias; cache's limit goes back to 2: before the
	// check at load, cache was updated and then db refused.
	write(strings.Replace(compose, "networks: [app]", "networks:\n      app:\n        aliases: [redis]", 1))
	cache = walkService(t, h1, "team_cache")
	walkRefused(t, h1, "team_db", []string{"services.db.networks.app.aliases[0]", "alias redis of service team_cache"}, "stack", "deploy", "-c", file, "team")
	if s := walkService(t, h1, "team_cache"); s.Version != cache.Version {
		t.Errorf("a refused stack file changed team_cache")
	}
	if _, err := walkRun(t, h1, "stack", "rm", "team"); err != nil {
		t.Error(err)
	}
	walkRun(t, h1, "service", "ls")
	walkRun(t, h1, "network", "ls")
}
