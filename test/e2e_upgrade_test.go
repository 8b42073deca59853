package test

// Rolling upgrade (docs/upgrades.md): every agent of a running cluster is
// replaced, one node at a time, by a newer binary — SIGTERM, new binary,
// start on the same data dir — while the workloads keep running and the
// cluster keeps accepting writes.
//
// Which binaries. By default both are built from this tree and differ only
// in their -ldflags version: the "new" one is the binary under test
// ($SHOAL_BIN or the harness's build) and the "old" one is this tree again
// stamped v0.0.0-upgrade-old. That proves the mechanics (live restore,
// re-adoption, writes and scaling across restarts, versions in node ls)
// every run without depending on history. A true cross-release run builds
// the old binary from another commit with `git worktree`:
//
//	make upgrade-test UPGRADE_FROM=<commit>   # SHOAL_UPGRADE_FROM=<commit>
//
// (a commit before the version metadata existed shows an empty version in
// node ls for its nodes; the test allows that only in this mode).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// upgradeOldVersion stamps the old binary built from this tree.
const upgradeOldVersion = "v0.0.0-upgrade-old"

// upgradeBinaries returns the old and the new binary and their versions;
// fromCommit reports whether the old one comes from another commit.
func upgradeBinaries(t *testing.T, dir string) (oldBin, oldVersion, newBin, newVersion string, fromCommit bool) {
	t.Helper()
	newBin, err := harness.Binary()
	if err != nil {
		t.Fatalf("shoal binary: %v", err)
	}
	out, err := exec.Command(newBin, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", newBin, err)
	}
	newVersion = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "shoal version"))

	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	src, oldVersion := root, upgradeOldVersion
	if from := os.Getenv("SHOAL_UPGRADE_FROM"); from != "" {
		fromCommit = true
		src = filepath.Join(dir, "old-src")
		if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", src, from).CombinedOutput(); err != nil {
			t.Fatalf("git worktree add %s: %v\n%s", from, err, out)
		}
		t.Cleanup(func() { _ = exec.Command("git", "-C", root, "worktree", "remove", "--force", src).Run() })
		d, err := exec.Command("git", "-C", src, "describe", "--tags", "--always").Output()
		if err != nil {
			t.Fatalf("git describe %s: %v", from, err)
		}
		oldVersion = strings.TrimSpace(string(d))
	}
	if oldVersion == newVersion {
		t.Fatalf("old and new binary would both report %q", newVersion)
	}
	oldBin = filepath.Join(dir, "shoal-old")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-X github.com/shoal-org/shoal/node.Version="+oldVersion, "-o", oldBin, "./cmd/shoal")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the old binary in %s: %v\n%s", src, err, out)
	}
	return oldBin, oldVersion, newBin, newVersion, fromCommit
}

// installBinary puts src at dst the way a package manager does: a new file
// renamed over the old one, so running agents keep their executable.
func installBinary(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// containerKey is what must not change across an agent restart.
type containerKey struct {
	ID  string
	PID int
}

// liveTaskContainers maps task ID → running container of every task container
// on h.
func liveTaskContainers(t *testing.T, h *harness.Host) map[string]containerKey {
	t.Helper()
	out := map[string]containerKey{}
	for _, c := range containersOn(t, h, false) {
		if c.TaskID != "" && c.State == "running" {
			out[c.TaskID] = containerKey{ID: c.ID, PID: c.Pid}
		}
	}
	return out
}

// sameContainers is a condition: every task of want runs on h in the very
// container (ID) and process (PID) it ran in before. Other containers may
// come and go.
func sameContainers(t *testing.T, h *harness.Host, want map[string]containerKey) harness.Condition {
	return func() (bool, string) {
		now := liveTaskContainers(t, h)
		for task, k := range want {
			if got, ok := now[task]; !ok || got != k {
				return false, fmt.Sprintf("%s: task %s had container %.12s pid %d, now %.12s pid %d (listed %v)", h.Name, task, k.ID, k.PID, got.ID, got.PID, ok)
			}
		}
		return true, ""
	}
}

// taskTable renders `service ps web` for a failure message.
func taskTable(t *testing.T, h *harness.Host) string {
	var b strings.Builder
	for _, tk := range tasksOf(t, h, "web") {
		fmt.Fprintf(&b, "  %s %s node=%s desired=%s state=%s container=%.12s err=%q msg=%q\n", tk.ID, tk.Name, tk.Node, tk.DesiredState, tk.State, tk.ContainerID, tk.Error, tk.Message)
	}
	return b.String()
}

// versionsSeen is a condition: `node ls` through via shows want[hostname]
// as every node's agent_version ("" in want accepts anything).
func versionsSeen(via *harness.Host, want map[string]string) harness.Condition {
	return func() (bool, string) {
		nodes, err := via.Nodes()
		if err != nil {
			return false, err.Error()
		}
		got := map[string]string{}
		for _, n := range nodes {
			got[n.Hostname] = n.AgentVersion
		}
		for h, v := range want {
			if v != "" && got[h] != v {
				return false, fmt.Sprintf("node ls through %s: versions %v, want %v", via.Name, got, want)
			}
		}
		return true, ""
	}
}

// labelWriter keeps writing through a host that is not being restarted.
type labelWriter struct {
	mu       sync.Mutex // held by a write in flight; setVia waits for it
	via      *harness.Host
	target   string
	n, fails int
	errs     []string
	stop     chan struct{}
	done     chan struct{}
}

func startLabelWriter(via *harness.Host, target string) *labelWriter {
	w := &labelWriter{via: via, target: target, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 1; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			w.mu.Lock()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, stderr, err := w.via.CLIContext(ctx, "node", "update", "--label-add", fmt.Sprintf("upgrade=%d", i), w.target)
			cancel()
			w.n++
			if err != nil {
				w.fails++
				w.errs = append(w.errs, fmt.Sprintf("write %d through %s: %v %s", i, w.via.Name, err, strings.TrimSpace(stderr)))
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond): // pace, not synchronisation
			}
		}
	}()
	return w
}

// setVia moves the writer to h once the write in flight (if any) is done.
func (w *labelWriter) setVia(h *harness.Host) {
	w.mu.Lock()
	w.via = h
	w.mu.Unlock()
}

func (w *labelWriter) finish() (n, fails int, errs []string) {
	close(w.stop)
	<-w.done
	return w.n, w.fails, w.errs
}

func TestRollingUpgrade(t *testing.T) {
	harness.Requirements(t)
	dir := t.TempDir()
	oldBin, oldVersion, newBin, newVersion, fromCommit := upgradeBinaries(t, dir)
	t.Logf("upgrading %s → %s", oldVersion, newVersion)
	live := filepath.Join(dir, "shoal") // what every agent and CLI call executes
	installBinary(t, oldBin, live)

	c := harness.New(t, 3, harness.WithBinary(live))
	c.Form(t)
	hosts := c.Hosts()
	h1 := hosts[0]
	h1.MustCLI(t, "image", "import", busyboxTar(t), "bb:1")
	h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "6", "-d", "bb:1", "httpd", "-f", "-p", "80")
	waitSlots(t, h1, "web", 6, "bb:1", 2*time.Minute)

	want := map[string]string{}
	for _, h := range hosts {
		want[hostname(h)] = oldVersion
		if fromCommit {
			want[hostname(h)] = "" // an old release may not advertise one
		}
	}
	harness.Eventually(t, time.Minute, versionsSeen(h1, want), "old versions in node ls")

	before := map[*harness.Host]map[string]containerKey{}
	total := 0
	for _, h := range hosts {
		before[h] = liveTaskContainers(t, h)
		total += len(before[h])
	}
	if total != 6 {
		t.Fatalf("%d task containers running before the upgrade, want 6", total)
	}

	target := h1.NodeID(t)
	w := startLabelWriter(hosts[1], target)
	defer func() {
		if w != nil {
			w.finish()
		}
	}()

	installBinary(t, newBin, live) // the package manager's step; nothing restarts yet
	for i, h := range hosts {
		w.setVia(hosts[(i+1)%len(hosts)])
		if err := h.Stop(); err != nil {
			t.Fatal(err)
		}
		h.MustStart(t)
		c.WaitReady(t, 2*time.Minute, len(hosts))
		want[hostname(h)] = newVersion
		harness.Eventually(t, time.Minute, versionsSeen(hosts[(i+1)%len(hosts)], want), "versions after upgrading %s", h.Name)

		// Live restore: the restarted agent re-adopted every container it
		// had, untouched (same container, same process).
		pctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := harness.Poll(pctx, sameContainers(t, h, before[h]))
		cancel()
		if err != nil {
			_, msg := sameContainers(t, h, before[h])()
			t.Fatalf("%s did not keep its containers across the restart: %s\ntasks:\n%s", h.Name, msg, taskTable(t, hosts[(i+1)%len(hosts)]))
		}

		if i == 0 {
			// Mixed versions: the cluster still schedules.
			h.MustCLI(t, "service", "scale", "web=8")
			waitSlots(t, hosts[2], "web", 8, "bb:1", 2*time.Minute)
			for _, hh := range hosts {
				before[hh] = liveTaskContainers(t, hh) // the new replicas must survive the next restarts too
			}
		}
	}
	n, fails, errs := w.finish()
	w = nil
	if fails > 0 || n < 3 {
		t.Fatalf("%d of %d writes failed during the upgrade: %v", fails, n, errs)
	}
	t.Logf("%d writes during the upgrade, none failed", n)

	// Every task still runs on its original container; the writes landed.
	waitSlots(t, h1, "web", 8, "bb:1", time.Minute)
	for _, h := range hosts {
		if ok, msg := sameContainers(t, h, before[h])(); !ok {
			t.Fatal(msg)
		}
	}
	node, err := h1.Node(target)
	if err != nil || node.Labels["upgrade"] != fmt.Sprint(n) {
		t.Fatalf("label after %d writes: %v (labels %v)", n, err, node.Labels)
	}
	var nodes []api.Node
	if err := hosts[2].JSON(&nodes, "node", "ls"); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		if nd.AgentVersion != newVersion {
			t.Fatalf("node %s runs %q after the upgrade, want %q", nd.Hostname, nd.AgentVersion, newVersion)
		}
	}
}
