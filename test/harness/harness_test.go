package harness

import (
	"encoding/json"
	"fmt"
	"github.com/shoal-org/shoal/api"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildFake builds internal/fakeshoal, a stand-in agent and CLI.
func buildFake(t *testing.T) string {
	t.Helper()
	Requirements(t)
	bin := filepath.Join(t.TempDir(), "fakeshoal")
	cmd := exec.Command("go", "build", "-o", bin, "./internal/fakeshoal")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fakeshoal: %v\n%s", err, out)
	}
	return bin
}

// reach reports whether from can open a TCP connection to to's port 2377.
func reach(from, to *Host) bool {
	_, _, err := from.CLI("probe", to.Addr())
	return err == nil
}

func TestHarnessPlumbing(t *testing.T) {
	bin := buildFake(t)
	var name string
	var hosts []*Host
	t.Run("cluster", func(t *testing.T) {
		c := New(t, 3, WithBinary(bin))
		name = c.Name
		c.StartAll(t)
		h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
		hosts = c.Hosts()

		ids := map[string]string{}
		for _, h := range c.Hosts() {
			st, err := h.Status()
			if err != nil {
				t.Fatal(err)
			}
			if st.Hostname != h.NS || st.Addr != h.IP {
				t.Errorf("%s: status %+v, want hostname %s addr %s", h.Name, st, h.NS, h.IP)
			}
			ids[h.Name] = st.NodeID
		}
		for _, pair := range [][2]*Host{{h1, h2}, {h2, h3}, {h3, h1}} {
			if !reach(pair[0], pair[1]) {
				t.Fatalf("%s cannot reach %s", pair[0].Name, pair[1].Name)
			}
		}

		// Partition h3 from the rest, both directions; h1-h2 unaffected.
		if err := c.Partition(h3); err != nil {
			t.Fatal(err)
		}
		if reach(h1, h3) || reach(h3, h2) {
			t.Fatal("partitioned h3 still reachable")
		}
		if !reach(h1, h2) {
			t.Fatal("h1-h2 cut by a partition of h3")
		}
		if err := c.Heal(); err != nil {
			t.Fatal(err)
		}
		if !reach(h1, h3) || !reach(h3, h2) {
			t.Fatal("h3 unreachable after heal")
		}

		// Pull h2's plug: process gone, link down; restart keeps its ID.
		pid := h2.PID()
		if err := h2.Kill(); err != nil {
			t.Fatal(err)
		}
		if h2.Running() || h2.PID() != 0 || pid == 0 {
			t.Fatal("h2 still running after Kill")
		}
		if _, _, err := h2.CLI("status"); err == nil {
			t.Fatal("CLI answered by a killed agent")
		}
		if err := h1.CutLink(); err != nil { // h2's agent is dead: test its link via h1
			t.Fatal(err)
		}
		if reach(h1, h3) {
			t.Fatal("h1 reaches h3 with its link cut")
		}
		if err := h1.RestoreLink(); err != nil {
			t.Fatal(err)
		}
		if err := h2.Restart(); err != nil {
			t.Fatal(err)
		}
		if st, err := h2.Status(); err != nil || st.NodeID != ids["h2"] {
			t.Fatalf("h2 after restart: %+v %v, want node id %s", st, err, ids["h2"])
		}
		Eventually(t, 10*time.Second, func() (bool, string) { return reach(h1, h2), "h1 cannot reach h2" })

		// KillProcess leaves the link; Stop is graceful; a later host joins.
		if err := h3.KillProcess(); err != nil {
			t.Fatal(err)
		}
		if err := h3.Start(); err != nil {
			t.Fatal(err)
		}
		if err := h1.Stop(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(h1.LogTail(5), "fakeshoal agent listening") {
			t.Errorf("h1 log tail lacks the agent's output:\n%s", h1.LogTail(5))
		}
		h4 := c.AddHost()
		h4.MustStart(t)
		if !reach(h4, h3) || !reach(h3, h4) {
			t.Fatal("h4 not connected")
		}
		if h4.IP != c.Host(1).IP[:strings.LastIndex(h1.IP, ".")]+".14" {
			t.Errorf("h4 IP %s", h4.IP)
		}
		hosts = c.Hosts()
	})

	// Cleanup removed everything the cluster made.
	if name == "" {
		return
	}
	if out, _ := run("ip", "netns", "list"); strings.Contains(out, name) {
		t.Errorf("namespaces left: %s", out)
	}
	if _, err := run("ip", "link", "show", name); err == nil {
		t.Errorf("bridge %s left", name)
	}
	for _, h := range hosts {
		if h.Running() {
			t.Errorf("%s agent still running", h.Name)
		}
	}
}

func TestWithFormatJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"status", "status --format json"},
		{"node ls", "node ls --format json"},
		{"node inspect abc", "node inspect --format json abc"},
		{"ps", "ps --format json"},
		{"service ps web", "service ps --format json web"},
	} {
		got := strings.Join(WithFormatJSON(strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("WithFormatJSON(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestHarnessCleansRuncAndMounts leaves a running runc container and a mount
// under a host's data dir, as a crashed agent would, and checks that the
// cluster's cleanup removes both.
func TestHarnessCleansRuncAndMounts(t *testing.T) {
	bin := buildFake(t)
	var root, mnt, id string
	t.Run("cluster", func(t *testing.T) {
		c := New(t, 1, WithBinary(bin))
		h := c.Host(1)
		h.MustStart(t)
		root = filepath.Join(h.DataDir, "runtime", "runc")
		bundle := filepath.Join(h.DataDir, "bundle")
		if err := os.MkdirAll(filepath.Join(bundle, "rootfs", "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := run("cp", "/bin/busybox", filepath.Join(bundle, "rootfs", "bin", "busybox")); err != nil {
			t.Skipf("no busybox: %v", err)
		}
		if _, err := run("runc", "spec", "--bundle", bundle); err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(bundle, "config.json")
		raw, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		var spec map[string]any
		if err := json.Unmarshal(raw, &spec); err != nil {
			t.Fatal(err)
		}
		proc := spec["process"].(map[string]any)
		proc["terminal"] = false
		proc["args"] = []string{"/bin/busybox", "sleep", "1000"}
		if raw, err = json.Marshal(spec); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		id = c.Name + "-ctr"
		// Detached, with no stdio: the container would hold a pipe open.
		if err := exec.Command("runc", "--root", root, "run", "-d", "--bundle", bundle, id).Run(); err != nil {
			t.Fatalf("runc run: %v", err)
		}
		mnt = filepath.Join(h.DataDir, "mnt")
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := run("mount", "-t", "tmpfs", "tmpfs", mnt); err != nil {
			t.Fatal(err)
		}
		if got := h.RuncRoots(); len(got) != 1 || got[0] != root {
			t.Fatalf("RuncRoots() = %v, want [%s]", got, root)
		}
	})
	if id == "" {
		return
	}
	// Not `runc list`: runc would create the (removed) root again.
	if _, err := os.Stat(filepath.Join(root, id)); err == nil {
		t.Errorf("container %s left under %s", id, root)
	}
	if out, _ := run("pgrep", "-f", "busybox sleep 1000"); out != "" {
		if b, _ := os.ReadFile("/proc/" + strings.Fields(out)[0] + "/cgroup"); strings.Contains(string(b), id) {
			t.Errorf("container %s still running", id)
		}
	}
	if info, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(info), mnt) {
		t.Errorf("mount %s left", mnt)
	}
}

// TestHelperLeakCluster is not a test: TestHarnessReapsStale runs it in a
// child process that makes a cluster and exits without its cleanups, as a
// test binary killed by -timeout would.
func TestHelperLeakCluster(t *testing.T) {
	bin := os.Getenv("HARNESS_LEAK_BIN")
	if bin == "" {
		t.Skip("helper for TestHarnessReapsStale")
	}
	c := New(t, 2, WithBinary(bin))
	c.StartAll(t)
	fmt.Println("LEAKED", c.Name, c.Dir)
	os.Exit(0)
}

func TestHarnessReapsStale(t *testing.T) {
	bin := buildFake(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLeakCluster$", "-test.v")
	cmd.Env = append(os.Environ(), "HARNESS_LEAK_BIN="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var name, dir string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "LEAKED" {
			name, dir = f[1], f[2]
		}
	}
	if name == "" {
		t.Fatalf("helper printed no cluster:\n%s", out)
	}
	if ns, _ := run("ip", "netns", "list"); !strings.Contains(ns, name+"-h2") {
		t.Fatalf("helper left no namespaces to reap: %s", ns)
	}
	reapOnce = sync.Once{}
	reapStale(t.Logf)
	if ns, _ := run("ip", "netns", "list"); strings.Contains(ns, name) {
		t.Errorf("namespaces left: %s", ns)
	}
	if _, err := run("ip", "link", "show", name); err == nil {
		t.Errorf("bridge %s left", name)
	}
	for _, p := range []string{dir, filepath.Join(RunRoot, name)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left", p)
		}
	}
	if out, _ := run("pgrep", "-f", "advertise-addr 10.213.*"+name); out != "" {
		t.Errorf("agents left: %s", out)
	}
}

// TestHarnessRemovesAgentCgroups: the cgroup under which an agent's
// containers live (/shoal-<short node ID> in every hierarchy) goes with the
// cluster once it is empty; runc removes each container's own cgroup but
// not that parent, and a day of test runs had left 27,080 of them. One
// still holding a cgroup stays.
func TestHarnessRemovesAgentCgroups(t *testing.T) {
	bin := buildFake(t)
	root := t.TempDir()
	old := CgroupRoot
	CgroupRoot = root
	t.Cleanup(func() { CgroupRoot = old })
	const nodeID = "3f9a6c2e1b7d4e8fa0c1d2e3f4a5b6c7"
	parent := "shoal-" + api.ShortID(nodeID)
	var dirs []string
	t.Run("cluster", func(t *testing.T) {
		c := New(t, 1, WithBinary(bin))
		h := c.Host(1)
		if err := os.MkdirAll(h.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(h.DataDir, "node.json"), []byte(`{"node_id":"`+nodeID+`","hostname":"h1"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, ctrl := range []string{"memory", "cpu,cpuacct", "pids"} {
			d := filepath.Join(root, ctrl, parent)
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, d)
		}
		if err := os.Mkdir(filepath.Join(dirs[2], "in-use"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, "memory", "shoal-other"), 0o755); err != nil {
			t.Fatal(err)
		}
	})
	for _, d := range dirs[:2] {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s left after the cluster's cleanup", d)
		}
	}
	if _, err := os.Stat(dirs[2]); err != nil {
		t.Errorf("%s, which still holds a cgroup, was removed: %v", dirs[2], err)
	}
	if _, err := os.Stat(filepath.Join(root, "memory", "shoal-other")); err != nil {
		t.Errorf("another agent's cgroup was removed: %v", err)
	}
}
