package runtime

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// asNobody runs argv as uid and gid 65534 with no supplementary groups: an
// unprivileged user of the host.
func asNobody(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// productionLikeDirs points cfg's dirs below a 0755 directory, as the
// agent's are (/var/lib/shoal, /run/shoal), rather than below the test's
// 0700 temp dir, which would hide everything whatever the runtime does.
func productionLikeDirs(t *testing.T, cfg *Config) {
	t.Helper()
	base, err := os.MkdirTemp("", "shoal-hostaccess-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	for _, d := range []string{base, filepath.Join(base, "run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Root = filepath.Join(base, "runtime")
	cfg.RunRoot = filepath.Join(base, "run", "containers-x")
	cfg.RuncRoot = filepath.Join(base, "run", "runc-x")
	c := *cfg
	t.Cleanup(func() { forceCleanup(t, c) })
}

// suidImage is the busybox image plus a layer holding /suid, a static
// setuid-root program that prints its effective uid.
func suidImage(t *testing.T) layeredImages {
	t.Helper()
	layer := t.TempDir()
	src := filepath.Join(t.TempDir(), "suid.c")
	prog := "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"euid=%d\\n\",(int)geteuid());return 0;}\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(layer, "suid")
	if out, err := exec.Command("gcc", "-static", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v: %s", err, out)
	}
	if err := os.Chown(bin, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(bin, 0o4755); err != nil { // os.Chmod would drop 0o4000
		t.Fatal(err)
	}
	if err := os.Chmod(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	return layeredImages{"suid": {testRootfs, layer}, "busybox": {testRootfs}}
}

// TestHostUsersCannotReachContainers: an unprivileged user of the host
// can neither run an image's setuid-root binary through a container's
// rootfs mount (CVE-2021-41091) nor read what a container wrote, through
// the rootfs or the upper dir, whose paths /proc/self/mountinfo shows to
// anyone. Dirs an older agent made 0711 are made 0700 at start. A
// container whose process runs as another user than root still starts,
// and exec works in it, as that user and as root.
func TestHostUsersCannotReachContainers(t *testing.T) {
	cfg := testConfig(t)
	productionLikeDirs(t, &cfg)
	cfg.Images = suidImage(t)
	// An upgraded node: the dirs exist, as the last version made them.
	for _, d := range []string{cfg.RunRoot, cfg.RuncRoot, filepath.Join(cfg.Root, "containers")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "suid", Command: []string{"sh", "-c", "echo secret > /data.txt; chmod 644 /data.txt; echo ready; sleep 1000"}})
	poll(t, "the container's write", 10*time.Second, func() bool { return strings.Contains(h.logs(t, c.ID), "ready") })
	p := pathsOnDisk(t, cfg, c.ID)

	for _, d := range []string{cfg.RunRoot, cfg.RuncRoot, filepath.Join(cfg.Root, "containers"), p.Run, p.Dir} {
		if got := permOf(t, d); got != 0o700 {
			t.Errorf("%s: mode %v, want %v", d, got, os.FileMode(0o700))
		}
	}
	if out, err := asNobody(filepath.Join(p.Rootfs, "suid")); err == nil || strings.Contains(out, "euid=0") {
		t.Errorf("an unprivileged host user ran the image's setuid binary through %s: %q %v", p.Rootfs, out, err)
	}
	for _, f := range []string{filepath.Join(p.Rootfs, "data.txt"), filepath.Join(p.Upper, "data.txt")} {
		if out, err := asNobody("cat", f); err == nil || strings.Contains(out, "secret") {
			t.Errorf("an unprivileged host user read %s: %q %v", f, out, err)
		}
	}

	// A container running as nobody; exec in it, as its user and as root.
	n := h.run(t, Spec{Image: "busybox", User: "nobody", Workdir: "/tmp", Command: []string{"sh", "-c", "id -u; pwd; ls /bin/sh; sleep 1000"}})
	poll(t, "the non-root container's output", 10*time.Second, func() bool { return strings.Contains(h.logs(t, n.ID), "/bin/sh") })
	if logs := h.logs(t, n.ID); !strings.Contains(logs, "65534\n/tmp\n/bin/sh\n") {
		t.Errorf("a container running as nobody printed %q", logs)
	}
	if out, errOut, code := execCollect(t, h.rt, n.ID, ExecOptions{Args: []string{"sh", "-c", "id -u; cat /etc/hostname"}}, ""); code != 0 || !strings.HasPrefix(out, "65534\n") {
		t.Errorf("exec as the container's user: %q %q exit %d", out, errOut, code)
	}
	if out, errOut, code := execCollect(t, h.rt, n.ID, ExecOptions{Args: []string{"id", "-u"}, User: "root", Workdir: "/root"}, ""); code != 0 || out != "0\n" {
		t.Errorf("exec as root: %q %q exit %d", out, errOut, code)
	}
	if out, errOut, code := execCollect(t, h.rt, c.ID, ExecOptions{Args: []string{"id", "-u"}, User: "65534:65534"}, ""); code != 0 || out != "65534\n" {
		t.Errorf("exec as nobody in a root container: %q %q exit %d", out, errOut, code)
	}
	if got, _ := h.rt.Get(n.ID); got.State != api.ContainerRunning {
		t.Errorf("the non-root container is %s", got.State)
	}
}

// TestContainerOOMScoreAdj: a container's processes, and those exec'd in
// it, have oom_score_adj 0 whatever the agent's (the Debian unit sets
// -500 for the agent, which they inherited).
func TestContainerOOMScoreAdj(t *testing.T) {
	cfg := testConfig(t)
	const self = "/proc/self/oom_score_adj"
	old, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	// Lowering needs CAP_SYS_RESOURCE, which a test may lack; raising
	// does not, and shows the inheritance as well. The supervisor, started
	// below, inherits it too and runs runc.
	want := "-500"
	if err := os.WriteFile(self, []byte(want), 0); err != nil {
		want = "345"
		if err := os.WriteFile(self, []byte(want), 0); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = os.WriteFile(self, old, 0) })
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sh", "-c", "cat /proc/self/oom_score_adj; sleep 1000"}})
	poll(t, "the container's output", 10*time.Second, func() bool { return h.logs(t, c.ID) != "" })
	if got := strings.TrimSpace(h.logs(t, c.ID)); got != "0" {
		t.Errorf("the container's oom_score_adj is %s (the agent's %s), want 0", got, want)
	}
	if out, errOut, code := execCollect(t, h.rt, c.ID, ExecOptions{Args: []string{"cat", "/proc/self/oom_score_adj"}}, ""); strings.TrimSpace(out) != "0" || code != 0 {
		t.Errorf("an exec'd process's oom_score_adj: %q %q exit %d, want 0", out, errOut, code)
	}
}

// TestImageHealthCheckBounded: an image's health check runs at most once
// a second whatever interval the image gives (1ns ran `runc exec` back to
// back); a service's own interval is taken as given.
func TestImageHealthCheckBounded(t *testing.T) {
	cfg := testConfig(t)
	cfg.Images = fakeImages{"fast-health": {
		Cmd: []string{"sleep", "1000"}, Env: []string{"PATH=/bin"},
		Healthcheck: &api.HealthConfig{Test: []string{"CMD-SHELL", "echo >> /tmp/probes"}, Interval: time.Nanosecond},
	}}
	h := startHarness(t, cfg)
	probes := func(id string) int {
		out, _, _ := execCollect(t, h.rt, id, ExecOptions{Args: []string{"sh", "-c", "cat /tmp/probes 2>/dev/null | wc -l"}}, "")
		n, _ := strconv.Atoi(strings.TrimSpace(out))
		return n
	}
	t0 := time.Now()
	c := h.run(t, Spec{Image: "fast-health"})
	poll(t, "the first probe", 10*time.Second, func() bool { return probes(c.ID) > 0 })
	time.Sleep(2 * time.Second)
	// A slow machine only makes fewer probes: at most one a second, and
	// one more for the rounding.
	if n, most := probes(c.ID), int(time.Since(t0)/time.Second)+1; n > most {
		t.Errorf("%d probes of an image's 1ns health check in %v, want at most %d", n, time.Since(t0).Round(time.Millisecond), most)
	}

	// A service's spec (its operator's choice) is not bounded.
	s := h.run(t, Spec{Image: "fast-health", Healthcheck: &api.HealthConfig{
		Test: []string{"CMD-SHELL", "echo >> /tmp/probes"}, Interval: 100 * time.Millisecond, Timeout: 5 * time.Second}})
	poll(t, "probes every 100ms", 10*time.Second, func() bool { return probes(s.ID) >= 4 })
}

// TestHealthProbeKilledAtTimeout: a probe that outlives its timeout is
// killed (its pid checked to be the container's, initproc.Signal), so
// probes do not pile up in the container.
func TestHealthProbeKilledAtTimeout(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sleep", "999"}, Healthcheck: &api.HealthConfig{
		Test: []string{"CMD", "sleep", "1000"}, Interval: 100 * time.Millisecond, Timeout: 300 * time.Millisecond, Retries: 1}})
	poll(t, "the probe to fail", 20*time.Second, func() bool {
		got, _ := h.rt.Get(c.ID)
		return got.Health == api.HealthUnhealthy
	})
	time.Sleep(1500 * time.Millisecond) // a few more rounds
	out, _, _ := execCollect(t, h.rt, c.ID, ExecOptions{Args: []string{"sh", "-c", "ps -o args | grep -c '^sleep 1000'"}}, "")
	// The round in flight, at most.
	if n, _ := strconv.Atoi(strings.TrimSpace(out)); n > 1 {
		t.Errorf("%d timed-out probes still run in the container", n)
	}
}
