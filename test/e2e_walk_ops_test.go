package test

// A new operator's day on a real cluster, driven only through the CLI as
// DESIGN.md ("Interface contract", "Security", "Flows") and docs/cli.md
// state it: status and node ls, drain and back, labels and a constraint,
// token rotation (old token refused, nothing written), ca rotate under
// traffic, events and metrics, snapshot save / restore (damaged files
// refused), kill -9 of an agent and its return, node rm (--force as
// docker's), leave and join again.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// opsProber sends requests to a published port through every host until
// stopped and keeps every failure.
type opsProber struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	n      int
	fails  []string
}

func startOpsProber(port int, hosts ...*harness.Host) *opsProber {
	ctx, cancel := context.WithCancel(context.Background())
	p := &opsProber{cancel: cancel}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for ctx.Err() == nil {
			for _, h := range hosts {
				_, err := get(fmt.Sprintf("http://%s:%d/", h.IP, port))
				p.mu.Lock()
				p.n++
				if err != nil && ctx.Err() == nil {
					p.fails = append(p.fails, fmt.Sprintf("%s via %s: %v", time.Now().UTC().Format("15:04:05.000"), h.Name, err))
				}
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return p
}

func (p *opsProber) stop() (int, []string) {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n, p.fails
}

// dirFiles lists the files under dir (relative), for "nothing written".
func dirFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		// runtime/ is the node supervisor's, written as the agent starts.
		if err == nil && !info.IsDir() && !strings.HasPrefix(p, filepath.Join(dir, "runtime")+"/") {
			r, _ := filepath.Rel(dir, p)
			out = append(out, r)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// opsNodes returns node ls as JSON through h, keyed by ID.
func opsNodes(t *testing.T, h *harness.Host) map[string]api.Node {
	t.Helper()
	nodes, err := h.Nodes()
	if err != nil {
		t.Fatalf("node ls on %s: %v", h.Name, err)
	}
	return nodesBy(nodes)
}

// tasksOn counts svc's running tasks desired running on node id.
func tasksOn(tasks []api.Task, id string) int {
	n := 0
	for _, tk := range tasks {
		if tk.NodeID == id && tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
			n++
		}
	}
	return n
}

func TestWalkS14Ops(t *testing.T) {
	c := harness.New(t, 3, harness.WithAgentArgs("--metrics-addr", fmt.Sprintf(":%d", metricsPort)))
	c.Form(t)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	h1.MustCLI(t, "image", "import", busyboxTar(t), "bb:1")
	step := func(s string) { t.Logf("===== %s (%s)", s, time.Now().UTC().Format("15:04:05.000")) }

	// 1. status and node ls.
	step("status, node ls")
	walkRun(t, h2, "status")
	walkRun(t, h2, "node", "ls")

	// 2. Tokens: rotate; the old one is refused with nothing written, the
	// new one joins a 4th host.
	step("token, token --rotate")
	old := h1.Token(t)
	out, err := walkRun(t, h2, "token", "--rotate")
	if err != nil {
		t.Fatalf("token --rotate: %v", err)
	}
	tok := h1.Token(t)
	if tok == old {
		t.Fatalf("token unchanged after --rotate")
	}
	if !strings.Contains(out, tok) {
		t.Errorf("token --rotate does not print the new token (docker prints it): %q", out)
	}
	h4 := c.AddHost()
	h4.MustStart(t)
	before := dirFiles(t, h4.DataDir)
	out, err = walkRun(t, h4, "join", "--token", old, h1.Addr())
	if err == nil {
		t.Fatalf("join with the rotated token accepted")
	}
	if !strings.Contains(strings.ToLower(out), "token") {
		t.Errorf("join with the old token: %q does not say the token is the problem", out)
	}
	if after := dirFiles(t, h4.DataDir); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("a refused join wrote files: %v → %v", before, after)
	}
	if st, err := h4.Status(); err != nil || st.Joined {
		t.Errorf("after a refused join: status %+v, %v", st, err)
	}
	if _, err := walkRun(t, h4, "join", "--token", tok, h1.Addr()); err != nil {
		t.Fatalf("join with the new token: %v", err)
	}
	c.WaitReady(t, 60*time.Second, 4)
	ids := map[*harness.Host]string{}
	for _, h := range c.Hosts() {
		ids[h] = h.NodeID(t)
	}
	harness.Eventually(t, 30*time.Second, votersCondition(4, 3, c.Hosts()...), "3 voters of 4")
	out, _ = walkRun(t, h4, "node", "ls")
	// Docker capitalises these (Leader, Drain); Shoal's tables print the
	// JSON values as they are.
	for _, w := range []string{"leader", "reachable"} {
		if !strings.Contains(strings.ToLower(out), w) {
			t.Errorf("node ls lacks MANAGER STATUS %q", w)
		}
	}
	nodes := opsNodes(t, h4)
	ms := map[string]int{}
	for _, n := range nodes {
		ms[n.ManagerStatus]++
		t.Logf("node %s %s role=%s manager_status=%q availability=%s", n.Hostname, n.Status, n.Role, n.ManagerStatus, n.Availability)
	}
	if ms["leader"] != 1 || ms["reachable"] != 2 || ms[""] != 1 {
		t.Errorf("manager_status counts %v, want 1 leader, 2 reachable, 1 empty", ms)
	}

	// 3. A web service through a published port; drain a node with tasks.
	step("drain")
	if _, err := walkRun(t, h1, "service", "create", "--name", "web", "--replicas", "4", "--publish", "80",
		"bb:1", "sh", "-c", webCmd); err != nil {
		t.Fatal(err)
	}
	waitSlots(t, h1, "web", 4, "", 60*time.Second)
	port := publishedPort(t, h1, "web", 80)
	victim := h3
	for _, h := range []*harness.Host{h3, h2, h4} {
		if tasksOn(tasksOf(t, h1, "web"), ids[h]) > 0 {
			victim = h
			break
		}
	}
	if _, err := walkRun(t, h1, "node", "update", "--availability", "drain", ids[victim]); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		tasks := tasksOf(t, h1, "web")
		if n := tasksOn(tasks, ids[victim]); n > 0 {
			return false, fmt.Sprintf("%d tasks still on %s", n, victim.Name)
		}
		_, msg := runningBySlot(tasks, 4, "")
		return msg == "", msg
	}, "web's tasks leave the drained %s", victim.Name)
	// As docker's: the table shows the old task shut down; why is the
	// task's message (docker: Status.Message in inspect).
	walkRun(t, h1, "service", "ps", "web")
	why := ""
	for _, tk := range tasksOf(t, h1, "web") {
		if tk.NodeID == ids[victim] && tk.DesiredState == api.TaskShutdown {
			why += tk.Message + ";"
		}
	}
	if !strings.Contains(why, "drain") {
		t.Errorf("service ps web: the tasks moved off %s do not say the node was drained (messages %q)", victim.Name, why)
	}
	out, _ = walkRun(t, h1, "node", "ls")
	if !strings.Contains(out, "drain") {
		t.Errorf("node ls does not show Drain")
	}
	walkRun(t, h1, "node", "update", "--availability", "active", ids[victim])
	if n := opsNodes(t, h1)[ids[victim]]; n.Availability != "active" {
		t.Errorf("%s availability %q after --availability active", victim.Name, n.Availability)
	}

	// Unlike docker, the reactivated node gets its share back (rebalancing,
	// --no-rebalance to keep them): wait for one task per node.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		per, msg := runningBySlot(tasksOf(t, h1, "web"), 4, "")
		if per == nil {
			return false, msg
		}
		return len(per) == 4, fmt.Sprintf("per node %v", per)
	}, "web rebalanced onto the reactivated %s", victim.Name)
	// pause: what runs there stays, nothing new goes there.
	walkRun(t, h1, "node", "update", "--availability", "pause", ids[h2])
	kept := tasksOn(tasksOf(t, h1, "web"), ids[h2])
	walkRun(t, h1, "service", "scale", "web=6")
	waitSlots(t, h1, "web", 6, "", 60*time.Second)
	if n := tasksOn(tasksOf(t, h1, "web"), ids[h2]); n != kept {
		t.Errorf("paused %s: %d web tasks, had %d", h2.Name, n, kept)
	}
	walkRun(t, h1, "node", "ps", ids[h2])
	walkRun(t, h1, "node", "update", "--availability", "active", ids[h2])
	walkRun(t, h1, "service", "scale", "web=4")
	waitSlots(t, h1, "web", 4, "", 60*time.Second)
	// An object for one node (DESIGN.md; docker prints an array).
	var insp map[string]any
	if err := h1.JSON(&insp, "node", "inspect", ids[h2]); err != nil {
		t.Errorf("node inspect: %v", err)
	} else {
		for _, f := range []string{"id", "hostname", "addr", "status", "availability", "role", "version", "manager_status", "labels"} {
			if _, ok := insp[f]; !ok {
				t.Errorf("node inspect lacks %q", f)
			}
		}
	}

	// Labels and a constraint.
	step("labels, constraint")
	walkRun(t, h2, "node", "update", "--label-add", "disk=ssd", ids[h3])
	harness.Eventually(t, 30*time.Second, labelSeen(ids[h3], "disk", "ssd", c.Hosts()...), "label disk=ssd")
	if _, err := walkRun(t, h2, "service", "create", "--name", "db", "--replicas", "2", "--constraint", "node.labels.disk==ssd",
		"bb:1", "sleep", "3600"); err != nil {
		t.Error(err)
	}
	waitSlots(t, h1, "db", 2, "", 60*time.Second)
	if n := tasksOn(tasksOf(t, h1, "db"), ids[h3]); n != 2 {
		t.Errorf("db: %d of 2 tasks on the ssd node", n)
	}

	// 4. ca rotate while web serves.
	step("ca rotate under traffic")
	answersEverywhere(t, c, "web", port)
	p := startOpsProber(port, c.Hosts()...)
	_, err = walkRun(t, h2, "ca", "rotate")
	n, fails := p.stop()
	if err != nil {
		t.Errorf("ca rotate: %v", err)
	}
	t.Logf("%d requests during ca rotate, %d failed", n, len(fails))
	if len(fails) > 0 {
		t.Errorf("requests failed during ca rotate: %v", fails[:min(5, len(fails))])
	}
	c.WaitReady(t, 30*time.Second, 4)
	walkRun(t, h1, "node", "ls")

	// 5. Events.
	step("events")
	out, err = walkRun(t, h3, "events", "--since", "2m", "--until", "0s", "--filter", "type=node")
	if err != nil {
		t.Errorf("events: %v", err)
	}
	for _, w := range []string{"update", victim.NS} {
		if !strings.Contains(out, w) {
			t.Errorf("events --filter type=node lacks %q", w)
		}
	}
	out, _ = walkRun(t, h3, "events", "--since", "2m", "--until", "0s", "--filter", "name=web", "--format", "json")
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("events --format json line %q: %v", line, err)
			continue
		}
		for _, f := range []string{"time", "type", "action", "id", "name", "node_id", "attributes"} {
			if _, ok := m[f]; !ok {
				t.Errorf("event %s lacks field %q", line, f)
			}
		}
		if m["name"] != "web" && !strings.HasPrefix(fmt.Sprint(m["name"]), "web.") {
			t.Errorf("--filter name=web gave %s", line)
		}
		seen++
	}
	if seen == 0 {
		t.Errorf("no events for name=web")
	}

	// 6. Metrics consistent with service ls.
	step("metrics")
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		var svcs []api.Service
		if err := h1.JSON(&svcs, "service", "ls"); err != nil {
			return false, err.Error()
		}
		running := 0
		for _, s := range svcs {
			running += int(s.Running)
		}
		leaders := 0
		for _, h := range c.Hosts() {
			mfs, err := scrape(h)
			if err != nil {
				return false, err.Error()
			}
			for name := range mfs {
				if !strings.HasPrefix(name, "shoal_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") && !strings.HasPrefix(name, "promhttp_") {
					return false, "metric without the shoal_ prefix: " + name
				}
			}
			l, _ := value(mfs, "shoal_raft_leader", nil)
			leaders += int(l)
			ready, _ := value(mfs, "shoal_nodes", map[string]string{"status": "ready"})
			ns, _ := value(mfs, "shoal_services", nil)
			tr, _ := value(mfs, "shoal_tasks", map[string]string{"state": "running"})
			if ready != 4 || int(ns) != len(svcs) || int(tr) != running {
				return false, fmt.Sprintf("%s: nodes ready %v, services %v, running tasks %v; service ls: %d services, %d running", h.Name, ready, ns, tr, len(svcs), running)
			}
		}
		return leaders == 1, fmt.Sprintf("%d leaders", leaders)
	}, "metrics agree with service ls")

	// 7. Snapshot save, service rm, restore; damaged files refused.
	step("snapshot")
	dir := t.TempDir()
	snap := filepath.Join(dir, "ops.snap")
	if _, err := walkRun(t, h1, "snapshot", "save", snap); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	walkRun(t, h1, "service", "rm", "db")
	harness.Eventually(t, 30*time.Second, func() (bool, string) { return walkService(t, h2, "db") == nil, "db still listed" }, "db removed")
	trunc := filepath.Join(dir, "trunc.snap")
	os.WriteFile(trunc, file[:len(file)/2], 0o600)
	garbage := filepath.Join(dir, "garbage.snap")
	os.WriteFile(garbage, []byte("not a snapshot\n"), 0o600)
	for _, f := range []string{trunc, garbage, filepath.Join(dir, "missing.snap")} {
		out, err := walkRun(t, h1, "snapshot", "restore", f)
		if err == nil {
			t.Errorf("snapshot restore %s accepted", f)
		}
		if !strings.Contains(out, "nothing changed") && !strings.Contains(out, "no such file") {
			t.Errorf("snapshot restore %s: error %q does not say nothing changed", f, out)
		}
		if walkService(t, h1, "db") != nil {
			t.Errorf("a refused restore of %s brought db back", f)
		}
	}
	if _, err := walkRun(t, h1, "snapshot", "restore", snap); err != nil {
		t.Fatalf("snapshot restore: %v", err)
	}
	waitSlots(t, h1, "db", 2, "", 60*time.Second)
	waitSlots(t, h1, "web", 4, "", 60*time.Second)

	// 8. kill -9 an agent that is not the leader.
	step("kill -9")
	leader := c.Leader(t, 30*time.Second)
	var dead *harness.Host
	for _, h := range []*harness.Host{h2, h3, h4} {
		if h != leader && tasksOn(tasksOf(t, h1, "web"), ids[h]) > 0 {
			dead = h
			break
		}
	}
	if dead == nil {
		t.Fatalf("no non-leader host runs a web task")
	}
	via := h1
	if via == dead {
		via = h2
	}
	var originals []string
	for _, tk := range tasksOf(t, h1, "web") {
		if tk.NodeID == ids[dead] && tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
			originals = append(originals, tk.ID)
		}
	}
	if err := dead.KillProcess(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, nodeStatusSeen(ids[dead], "down", via), "%s down", dead.Name)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		tasks := tasksOf(t, via, "web")
		per, msg := runningBySlot(tasks, 4, "")
		if per == nil {
			return false, msg
		}
		return per[dead.NS] == 0, fmt.Sprintf("per node %v", per)
	}, "web replaced off %s", dead.Name)
	walkRun(t, via, "service", "ps", "web")
	if err := dead.Restart(); err != nil {
		t.Fatal(err)
	}
	c.WaitReady(t, 60*time.Second, 4)
	// Back within --disconnect-grace (60 s): its original tasks win and the
	// replacements stop (docs/cli.md).
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		tasks := tasksOf(t, via, "web")
		if _, msg := runningBySlot(tasks, 4, ""); msg != "" {
			return false, msg
		}
		for _, id := range originals {
			ok := false
			for _, tk := range tasks {
				ok = ok || (tk.ID == id && tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning)
			}
			if !ok {
				return false, "original task " + id + " not running"
			}
		}
		return true, ""
	}, "%s's original web tasks run again, one per slot", dead.Name)
	harness.Consistently(t, 5*time.Second, func() (bool, string) {
		per, msg := runningBySlot(tasksOf(t, via, "web"), 4, "")
		return per != nil, msg
	}, "web: one running task per slot after %s returns", dead.Name)
	walkRun(t, via, "node", "ls")
	out, _ = walkRun(t, via, "events", "--since", "1m", "--until", "0s", "--filter", "type=node", "--filter", "name="+dead.NS)
	if !strings.Contains(out, "status=down") || !strings.Contains(out, "status=ready") {
		t.Errorf("events --filter name=%s does not show it going down and coming back", dead.NS)
	}

	// 9. node rm: a ready node needs --force; a down one goes, and can no
	// longer talk to the cluster.
	step("node rm")
	out, err = walkRun(t, h1, "node", "rm", ids[h4])
	if err == nil {
		t.Fatalf("node rm of a ready node without --force accepted")
	}
	if !strings.Contains(out, "--force") {
		t.Errorf("node rm of a ready node: %q does not point to --force", out)
	}
	if _, ok := opsNodes(t, h1)[ids[h4]]; !ok {
		t.Fatalf("a refused node rm removed the node")
	}
	if err := h4.Kill(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, nodeStatusSeen(ids[h4], "down", h1), "h4 down")
	if _, err := walkRun(t, h1, "node", "rm", ids[h4]); err != nil {
		t.Fatalf("node rm of a down node: %v", err)
	}
	h4.RestoreLink()
	if err := h4.Restart(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		st, err := h4.Status()
		if err != nil {
			return false, err.Error()
		}
		return !st.Joined, fmt.Sprintf("h4 still joined to %s", st.ClusterID)
	}, "the removed h4 learns it is out")
	if _, ok := opsNodes(t, h1)[ids[h4]]; ok {
		t.Errorf("h4 listed again after node rm")
	}

	// 10. leave on a worker, join again from the same host.
	step("leave, join again")
	if _, err := walkRun(t, h4, "join", "--token", h1.Token(t), h1.Addr()); err != nil {
		t.Fatalf("join of the removed host with the current token: %v", err)
	}
	c.WaitReady(t, 60*time.Second, 4)
	id4 := h4.NodeID(t)
	// docker's word for `node update --role worker`.
	if _, err := walkRun(t, h1, "node", "demote", id4); err != nil {
		t.Fatalf("node demote: %v", err)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		n := opsNodes(t, h4)[id4]
		return n.Role == "worker" && n.ManagerStatus == "", fmt.Sprintf("h4 role %q manager_status %q", n.Role, n.ManagerStatus)
	}, "h4 is a worker")
	// Bad input and a worker's read-only socket: a clear error, nothing
	// changed.
	step("refusals")
	nodesBefore := harness.Summary(mapValues(opsNodes(t, h1)))
	for _, r := range []struct {
		h     *harness.Host
		words []string
		args  []string
	}{
		{h4, []string{"worker"}, []string{"token"}},
		{h4, []string{"worker"}, []string{"token", "--rotate"}},
		{h4, []string{"worker"}, []string{"service", "scale", "web=5"}},
		{h4, []string{"worker"}, []string{"node", "update", "--availability", "drain", ids[h2]}},
		{h1, []string{"bogus", "drain"}, []string{"node", "update", "--availability", "bogus", ids[h2]}},
		{h1, []string{"nosuchnode"}, []string{"node", "rm", "nosuchnode"}},
		{h1, []string{"nosuchnode"}, []string{"node", "update", "--label-add", "a=b", "nosuchnode"}},
		{h1, []string{"bogus"}, []string{"events", "--since", "1m", "--until", "0s", "--filter", "type=bogus"}},
		{h1, []string{"/nonexistent"}, []string{"snapshot", "save", "/nonexistent/dir/x.snap"}},
	} {
		out, err := walkRun(t, r.h, r.args...)
		if err == nil {
			t.Errorf("shoal %s on %s: accepted, want refused", strings.Join(r.args, " "), r.h.Name)
		}
		for _, w := range r.words {
			if !strings.Contains(out, w) {
				t.Errorf("shoal %s on %s: %q does not say %q", strings.Join(r.args, " "), r.h.Name, out, w)
			}
		}
	}
	if s := walkService(t, h1, "web"); s == nil || s.Spec.Replicas != 4 {
		t.Errorf("a refused scale changed web: %+v", s)
	}
	if after := harness.Summary(mapValues(opsNodes(t, h1))); after != nodesBefore {
		t.Errorf("refused node commands changed the nodes: %s → %s", nodesBefore, after)
	}
	if _, err := walkRun(t, h4, "leave"); err != nil {
		t.Fatalf("leave: %v", err)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		n, ok := opsNodes(t, h1)[id4]
		return !ok || n.Status == "down", fmt.Sprintf("h4 %s", n.Status)
	}, "h4 left")
	walkRun(t, h1, "node", "ls")
	if _, err := walkRun(t, h4, "join", "--token", h1.Token(t), h1.Addr()); err != nil {
		t.Fatalf("join again after leave: %v", err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		nodes := opsNodes(t, h1)
		ready := 0
		for _, n := range nodes {
			if n.Status == "ready" {
				ready++
			}
		}
		return ready == 4, harness.Summary(mapValues(nodes))
	}, "4 ready nodes after the re-join")
	walkRun(t, h1, "node", "ls")
}

func mapValues(m map[string]api.Node) []api.Node {
	var out []api.Node
	for _, n := range m {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
