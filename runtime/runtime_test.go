package runtime

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/companion"
	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/netns"
	"github.com/shoal-org/shoal/runtime/record"
	"github.com/shoal-org/shoal/runtime/rootfs"
)

// Shared fixtures, built once by TestMain when running as root.
var (
	testInit   string // shoal-init, built from init/shoal-init.c
	testRootfs string // busybox rootfs used as the single image layer
	fixtureErr error
)

func TestMain(m *testing.M) {
	// The test binary doubles as the node supervisor (Config's default
	// SupervisorBinary is the running executable).
	if IsSupervisorInvocation(os.Args[0]) {
		os.Exit(SupervisorMain(os.Args))
	}
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run()
		}
		if os.Getenv(helperEnv) != "" { // a helper agent uses its parent's fixtures
			testInit, testRootfs = os.Getenv("SHOAL_TEST_INIT"), os.Getenv("SHOAL_TEST_ROOTFS")
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "shoal-runtime-test-")
		if err != nil {
			fixtureErr = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		testInit, fixtureErr = buildShoalInit(dir)
		if fixtureErr == nil {
			testRootfs, fixtureErr = buildBusyboxRootfs(filepath.Join(dir, "busybox"))
		}
		return m.Run()
	}()
	os.Exit(code)
}

// buildShoalInit builds the container init (init/build.sh) into dir.
func buildShoalInit(dir string) (string, error) {
	out := filepath.Join(dir, companion.InitName)
	if b, err := exec.Command("sh", filepath.Join("init", "build.sh"), out).CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v: %s", companion.InitName, err, b)
	}
	return out, nil
}

// buildGoInit returns a static build (CGO_ENABLED=0) of cmd/goinit, the
// Go init Shoal ran in every container before the supervisor.
func buildGoInit(dir string) (string, error) {
	return buildBinary(dir, "goinit", "github.com/shoal-org/shoal/runtime/cmd/goinit")
}

// buildBusyboxRootfs makes a minimal image: /bin/busybox with its applets,
// /etc/passwd and /etc/group.
func buildBusyboxRootfs(root string) (string, error) {
	for _, d := range []string{"bin", "etc", "tmp", "proc", "sys", "dev", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	b, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		return "", err
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return "", err
	}
	for _, a := range strings.Fields(string(list)) {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return "", err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return "", err
		}
	}
	return root, nil
}

// fakeImages resolves every reference to the busybox rootfs, with per-ref
// image configs; an image's ID (fakeImageID) resolves too, as in the
// image store.
type fakeImages map[string]api.ImageConfig

func (f fakeImages) Resolve(ref string) (api.Image, api.ImageConfig, []string, error) {
	cfg, ok := f[ref]
	if !ok {
		for r, c := range f {
			if fakeImageID(r) == ref {
				ref, cfg, ok = r, c, true
				break
			}
		}
	}
	if !ok {
		return api.Image{}, api.ImageConfig{}, nil, fmt.Errorf("image %s: not found", ref)
	}
	return api.Image{ID: fakeImageID(ref), Tags: []string{ref}}, cfg, []string{testRootfs}, nil
}

// fakeImageID is the ID of fake image ref.
func fakeImageID(ref string) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(ref)))
}

var images = fakeImages{
	"busybox": {Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}},
	"busybox-health": {
		Cmd: []string{"sleep", "1000"},
		Env: []string{"PATH=/bin"},
		Healthcheck: &api.HealthConfig{
			Test: []string{"CMD-SHELL", "test -e /tmp/healthy"}, Interval: 150 * time.Millisecond,
			Timeout: 2 * time.Second, Retries: 2,
		},
	},
	"busybox-nobody": {Cmd: []string{"id"}, Env: []string{"PATH=/bin"}, User: "nobody"},
}

// harness is one Runtime on a test-owned Root, run until the test ends.
type harness struct {
	t      *testing.T
	cfg    Config
	rt     *Runtime
	cancel context.CancelFunc
	done   chan struct{}
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("needs runc")
	}
	if fixtureErr != nil {
		t.Fatalf("fixtures: %v", fixtureErr)
	}
}

// testConfig returns a config on fresh dirs; cleanup removes whatever
// containers are left, even if the test failed.
func testConfig(t testing.TB) Config {
	needRoot(t)
	root := t.TempDir()
	cfg := DefaultConfig()
	cfg.Root = filepath.Join(root, "runtime")
	cfg.RunRoot = filepath.Join(root, "run")
	cfg.RuncRoot = filepath.Join(root, "runc")
	cfg.CgroupParent = "/shoal-test-" + record.NewID()[:8]
	cfg.InitBinary = testInit
	cfg.Images = images
	cfg.StopGrace = 5 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	t.Cleanup(func() { forceCleanup(t, cfg) })
	return cfg
}

// forceCleanup kills and deletes every runc container of cfg and unmounts
// whatever is left under Root, without needing a Runtime.
func forceCleanup(t testing.TB, cfg Config) {
	out, _ := exec.Command("runc", "--root", cfg.RuncRoot, "list", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		exec.Command("runc", "--root", cfg.RuncRoot, "kill", "--all", id, "KILL").Run()
		time.Sleep(50 * time.Millisecond)
		exec.Command("runc", "--root", cfg.RuncRoot, "delete", "--force", id).Run()
	}
	ents, _ := os.ReadDir(filepath.Join(cfg.Root, "containers"))
	if cfg.RunRoot != "" {
		runEnts, _ := os.ReadDir(cfg.RunRoot)
		ents = append(ents, runEnts...)
	}
	for _, e := range ents {
		for _, p := range []layout.Paths{layout.For(cfg.Root, e.Name(), ""), layout.For(cfg.Root, e.Name(), filepath.Join(cfg.RunRoot, e.Name())).WithEtcTmpfs()} {
			rootfs.Unmount(p.Rootfs)
			netns.Remove(p.Netns)
			if p.Etc != "" {
				rootfs.Unmount(p.Etc)
			}
		}
		removeCgroups(filepath.Join(cfg.CgroupParent, e.Name()))
	}
	removeCgroups(cfg.CgroupParent)
}

// pathsOnDisk returns the paths of container id as its record on disk
// says (in either layout).
func pathsOnDisk(t testing.TB, cfg Config, id string) layout.Paths {
	t.Helper()
	rec, err := record.Load(layout.For(cfg.Root, id, "").Record)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Paths(cfg.Root)
}

func startHarness(t testing.TB, cfg Config) *harness {
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{cfg: cfg, rt: rt, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		if err := rt.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-rt.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("runtime not ready")
	}
	t.Cleanup(func() {
		for _, c := range rt.List() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = rt.Remove(ctx, c.ID, true)
			cancel()
		}
		h.stop()
	})
	return h
}

// stop ends Run (containers keep running) and waits for it to return.
func (h *harness) stop() {
	h.cancel()
	<-h.done
}

func (h *harness) run(t *testing.T, spec Spec) api.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := h.rt.RunContainer(ctx, spec)
	if err != nil {
		t.Fatalf("run %+v: %v", spec, err)
	}
	return c
}

func (h *harness) wait(t *testing.T, id string) api.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := h.rt.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return c
}

func (h *harness) logs(t *testing.T, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, err := h.rt.Logs(ctx, id, LogOptions{})
	if err != nil {
		t.Fatalf("logs %s: %v", id, err)
	}
	var b strings.Builder
	for l := range ch {
		b.WriteString(l.Line + "\n")
	}
	return b.String()
}

// runToExit runs cmd in busybox and returns the exited container and its log.
func (h *harness) runToExit(t *testing.T, spec Spec) (api.Container, string) {
	t.Helper()
	if spec.Image == "" {
		spec.Image = "busybox"
	}
	c := h.run(t, spec)
	c = h.wait(t, c.ID)
	return c, h.logs(t, c.ID)
}

func poll(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExitCodes(t *testing.T) {
	h := startHarness(t, testConfig(t))
	tests := []struct {
		cmd  string
		want int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"kill -9 $$", 137},
	}
	for _, tt := range tests {
		c, logs := h.runToExit(t, Spec{Command: []string{"sh", "-c", tt.cmd}})
		if c.State != api.ContainerExited || c.ExitCode != tt.want {
			t.Errorf("%q: state %s exit %d, want exited %d (logs %q)", tt.cmd, c.State, c.ExitCode, tt.want, logs)
		}
	}
	c, logs := h.runToExit(t, Spec{Command: []string{"no-such-command"}})
	// shoal-init reports it as tini (Docker's --init) does: "exec
	// no-such-command failed: No such file or directory", exit 127.
	if c.ExitCode != 127 || !strings.Contains(logs, "no-such-command") || !strings.Contains(logs, "No such file") {
		t.Errorf("missing command: exit %d logs %q", c.ExitCode, logs)
	}
}

func TestEnvCwdHostnameUser(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c, logs := h.runToExit(t, Spec{
		Command:  []string{"sh", "-c", `echo "foo=$FOO"; pwd; hostname; echo "h=$HOSTNAME"; cat /etc/hostname; id -u; grep -c localhost /etc/hosts`},
		Env:      []string{"FOO=bar"},
		Workdir:  "/tmp",
		Hostname: "box1",
	})
	for _, want := range []string{"foo=bar\n", "/tmp\n", "box1\n", "h=box1\n", "0\n"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if c.ExitCode != 0 {
		t.Errorf("exit %d", c.ExitCode)
	}
	_, logs = h.runToExit(t, Spec{Image: "busybox-nobody"})
	if !strings.Contains(logs, "uid=65534") {
		t.Errorf("image user not applied: %q", logs)
	}
}

func TestIsolation(t *testing.T) {
	h := startHarness(t, testConfig(t))
	_, logs := h.runToExit(t, Spec{Command: []string{"sh", "-c",
		`grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; grep Seccomp: /proc/self/status;
		 (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo SYSWRITE-OK || echo SYSWRITE-FAILED;
		 cat /proc/kcore 2>/dev/null | head -c 1 | wc -c; ip link 2>/dev/null | grep -c LOOPBACK`}})
	for _, want := range []string{"CapEff:\t00000000a80425fb", "NoNewPrivs:\t1", "Seccomp:\t2", "SYSWRITE-FAILED"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c, logs := h.runToExit(t, Spec{
		Command: []string{"sh", "-c", `x=$(head -c 80000000 /dev/zero | tr "\0" a); echo ${#x}`},
		Limits:  api.Resources{MemoryBytes: 32 << 20},
	})
	if c.ExitCode != 137 {
		t.Errorf("exit %d, want 137 (OOM kill); logs %q", c.ExitCode, logs)
	}
}

func TestPidsLimit(t *testing.T) {
	cfg := testConfig(t)
	h := startHarness(t, cfg)
	// busybox sh gives up at the first fork that fails: the forking loop
	// runs in a subshell so the container lives on (exec: no fork) while
	// pids.current is read.
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sh", "-c",
		`(i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); done); echo spawned; exec sleep 30`},
		Limits: api.Resources{Pids: 20}})
	cur := filepath.Join("/sys/fs/cgroup/pids", cfg.CgroupParent, c.ID, "pids.current")
	poll(t, "fork attempts", 10*time.Second, func() bool { return strings.Contains(h.logs(t, c.ID), "fork") })
	b, err := os.ReadFile(cur)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(string(b), &n)
	if n > 20 {
		t.Errorf("pids.current = %d > 20", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// It ignores SIGTERM: the stop ends in `runc kill`.
	if _, err := h.rt.Stop(ctx, c.ID, time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestStopForwardsSIGTERM(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sleep", "1000"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	c, err := h.rt.Stop(ctx, c.ID, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %s: SIGTERM not forwarded", d)
	}
	if c.State != api.ContainerExited || c.ExitCode != 143 {
		t.Errorf("state %s exit %d, want exited 143", c.State, c.ExitCode)
	}
}

// TestZombiesReaped: orphans inside a container are reaped by its init, so
// none is left a zombie while the container runs, even when the command
// itself (here exec'd sleep, which never waits) reaps nothing.
func TestZombiesReaped(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sh", "-c",
		`for i in 1 2 3 4 5; do (sleep 0.1 &) ; done; sleep 1; echo spawned; exec sleep 1000`}})
	poll(t, "orphans spawned", 20*time.Second, func() bool { return strings.Contains(h.logs(t, c.ID), "spawned") })
	// Every process of the container (its cgroup) must be alive or gone,
	// never a zombie.
	poll(t, "zombies reaped", 10*time.Second, func() bool {
		return countZombies(t, c.Pid) == 0
	})
}

// countZombies counts zombie processes in the PID namespace of pid.
func countZombies(t *testing.T, pid int) int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p)); l != ns {
			continue
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			n++
		}
	}
	return n
}

func TestStopKillsAfterGrace(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sh", "-c", `trap "" TERM; echo armed; while true; do sleep 1; done`}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	poll(t, "trap installed", 10*time.Second, func() bool { return strings.Contains(h.logs(t, c.ID), "armed") })
	c, err := h.rt.Stop(ctx, c.ID, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if c.ExitCode != 137 {
		t.Errorf("exit %d, want 137", c.ExitCode)
	}
}

// TestAdoptionAfterAgentRestart simulates an agent restart: runtime A starts
// a container and goes away without stopping it; runtime B on the same Root
// re-adopts it, sees it exit with code 7 and still serves its logs.
func TestAdoptionAfterAgentRestart(t *testing.T) {
	cfg := testConfig(t)
	a := startHarness(t, cfg)
	c := a.run(t, Spec{Image: "busybox", Name: "survivor", Command: []string{"sh", "-c",
		`echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after; exit 7`}})
	poll(t, "first output", 10*time.Second, func() bool { return strings.Contains(a.logs(t, c.ID), "before") })
	a.stop()

	b := startHarness(t, cfg)
	got, err := b.rt.Get("survivor")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != api.ContainerRunning || got.Pid != c.Pid {
		t.Fatalf("adopted state %s pid %d, want running pid %d", got.State, got.Pid, c.Pid)
	}
	events := b.rt.Subscribe()
	if err := os.WriteFile(filepath.Join(pathsOnDisk(t, cfg, c.ID).Rootfs, "tmp", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got = b.wait(t, c.ID)
	if got.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", got.ExitCode)
	}
	select {
	case ev := <-events:
		if ev.ContainerID != c.ID || ev.State != api.ContainerExited || ev.ExitCode != 7 {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no exit event")
	}
	logs := b.logs(t, c.ID)
	if !strings.Contains(logs, "before\n") || !strings.Contains(logs, "after\n") {
		t.Errorf("logs after restart: %q", logs)
	}
}

// TestAdoptionOfExitedWhileAway: the container ends while no agent runs; the
// next agent learns its code from the init's state file.
func TestAdoptionOfExitedWhileAway(t *testing.T) {
	cfg := testConfig(t)
	a := startHarness(t, cfg)
	c := a.run(t, Spec{Image: "busybox", Command: []string{"sh", "-c", `sleep 0.3; exit 5`}})
	a.stop()
	time.Sleep(600 * time.Millisecond)
	b := startHarness(t, cfg)
	got, err := b.rt.Get(c.ID[:12])
	if err != nil {
		t.Fatal(err)
	}
	if got.State != api.ContainerExited || got.ExitCode != 5 {
		t.Errorf("state %s exit %d, want exited 5", got.State, got.ExitCode)
	}
}

func TestLogsFollowAndTail(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogMaxSize = 4096
	cfg.LogMaxFiles = 3
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sh", "-c",
		`i=0; while [ $i -lt 50 ]; do echo "line $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.01; done`}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch, err := h.rt.Logs(ctx, c.ID, LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []api.LogLine
	for l := range ch {
		got = append(got, l)
	}
	if len(got) == 0 || got[len(got)-1].Line != "err 49" && got[len(got)-1].Line != "line 49" {
		t.Fatalf("follow ended without the last line: %d lines", len(got))
	}
	streams := map[string]bool{}
	for _, l := range got {
		streams[l.Stream] = true
	}
	if !streams["stdout"] || !streams["stderr"] {
		t.Errorf("streams %v", streams)
	}
	// Rotation kept at most LogMaxFiles files of about LogMaxSize each.
	files, _ := filepath.Glob(filepath.Join(cfg.Root, "containers", c.ID, "log", "container.log*"))
	if len(files) > 3 || len(files) < 2 {
		t.Errorf("log files %v", files)
	}
	ch, err = h.rt.Logs(ctx, c.ID, LogOptions{Tail: 2})
	if err != nil {
		t.Fatal(err)
	}
	var tail []string
	for l := range ch {
		tail = append(tail, l.Line)
	}
	if len(tail) != 2 {
		t.Errorf("tail = %q", tail)
	}
}

func TestHealthCheck(t *testing.T) {
	cfg := testConfig(t)
	h := startHarness(t, cfg)
	events := h.rt.Subscribe()
	c := h.run(t, Spec{Image: "busybox-health"})
	if c.Health != api.HealthStarting {
		t.Fatalf("health %q, want starting", c.Health)
	}
	flag := filepath.Join(pathsOnDisk(t, cfg, c.ID).Rootfs, "tmp", "healthy")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitHealth := func(want string) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			select {
			case ev := <-events:
				if ev.ContainerID == c.ID && ev.Health == want {
					got, _ := h.rt.Get(c.ID)
					if got.Health != want {
						t.Errorf("Get health %q after %q event", got.Health, want)
					}
					return
				}
			case <-deadline:
				t.Fatalf("no %s event", want)
			}
		}
	}
	waitHealth(api.HealthHealthy)
	os.Remove(flag)
	waitHealth(api.HealthUnhealthy)
}

func TestRemoveLeavesNothing(t *testing.T) {
	cfg := testConfig(t)
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox", Name: "gone", Command: []string{"sleep", "1000"},
		Limits: api.Resources{MemoryBytes: 64 << 20, Pids: 50, NanoCPUs: 5e8}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.rt.Remove(ctx, c.ID, false); !errors.Is(err, ErrRunning) {
		t.Fatalf("remove running without force: %v", err)
	}
	if err := h.rt.Remove(ctx, "gone", true); err != nil {
		t.Fatal(err)
	}
	if _, err := h.rt.Get(c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after remove: %v", err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), c.ID) {
		t.Error("a mount of the container is left")
	}
	for _, p := range []string{
		filepath.Join(cfg.Root, "containers", c.ID),
		filepath.Join(cfg.Root, "netns", c.ID),
		filepath.Join(cfg.RunRoot, c.ID),
		filepath.Join(cfg.RuncRoot, c.ID),
		filepath.Join("/sys/fs/cgroup/memory", cfg.CgroupParent, c.ID),
		filepath.Join("/sys/fs/cgroup/pids", cfg.CgroupParent, c.ID),
	} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	// The name is free again.
	c2 := h.run(t, Spec{Image: "busybox", Name: "gone", Command: []string{"true"}})
	if _, err := h.rt.RunContainer(ctx, Spec{Image: "busybox", Name: "gone", Command: []string{"true"}}); !errors.Is(err, ErrNameInUse) {
		t.Errorf("duplicate name: %v", err)
	}
	h.wait(t, c2.ID)
}

func TestAutoRemove(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c := h.run(t, Spec{Image: "busybox", Command: []string{"sh", "-c", "exit 4"}, Remove: true})
	got := h.wait(t, c.ID)
	if got.ExitCode != 4 {
		t.Errorf("exit %d", got.ExitCode)
	}
	poll(t, "auto-removal", 10*time.Second, func() bool {
		_, err := h.rt.Get(c.ID)
		return errors.Is(err, ErrNotFound)
	})
}

func TestConcurrentRuns(t *testing.T) {
	h := startHarness(t, testConfig(t))
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := h.rt.RunContainer(ctx, Spec{Image: "busybox", Command: []string{"sh", "-c", fmt.Sprintf("exit %d", i)}})
			if err != nil {
				t.Error(err)
				return
			}
			c, err = h.rt.Wait(ctx, c.ID)
			if err != nil || c.ExitCode != i {
				t.Errorf("container %d: exit %d err %v", i, c.ExitCode, err)
			}
		}()
	}
	wg.Wait()
}

// logRuncCalls points cfg at a wrapper of the real runc that appends a
// line per call to the file it returns: prefix (expanded by the shell in
// the wrapper's environment), then runc's arguments.
func logRuncCalls(t *testing.T, cfg *Config, prefix string) string {
	t.Helper()
	real, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("no runc")
	}
	logf := filepath.Join(t.TempDir(), "runc-calls")
	wrapper := filepath.Join(t.TempDir(), "runc")
	script := "#!/bin/sh\necho \"" + prefix + "$*\" >> " + logf + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.RuncBinary = wrapper
	return logf
}

// TestOneRuncDeletePerRun: the exit of a run deletes runc's state; removing
// the container afterwards must not start a second `runc delete` (a process
// per removed container, tens of milliseconds of CPU in a rolling update).
func TestOneRuncDeletePerRun(t *testing.T) {
	cfg := testConfig(t)
	logf := logRuncCalls(t, &cfg, "")
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox", Command: []string{"true"}})
	h.wait(t, c.ID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.rt.Remove(ctx, c.ID, false); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(logf)
	if err != nil {
		t.Fatal(err)
	}
	deletes := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.Contains(line, " delete ") && strings.HasSuffix(line, c.ID) {
			deletes++
		}
	}
	if deletes != 1 {
		t.Errorf("%d `runc delete` of the container, want 1; calls:\n%s", deletes, raw)
	}
	if _, err := os.Stat(filepath.Join(cfg.RuncRoot, c.ID)); err == nil {
		t.Errorf("runc state of the container left behind")
	}
}

// TestRuncRunsWithOneProc: every runc process of a container's life (the
// supervisor's run, a health probe's exec, the agent's kill and delete)
// runs with GOMAXPROCS=1
// whatever the agent's environment says, and the container's own process
// gets none of it.
func TestRuncRunsWithOneProc(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3") // what an agent's environment may hold
	cfg := testConfig(t)
	logf := logRuncCalls(t, &cfg, "GOMAXPROCS=${GOMAXPROCS-unset} ")
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox-health", Command: []string{"sh", "-c", `trap "" TERM; echo "g=[${GOMAXPROCS-unset}]"; sleep 60`}})
	poll(t, "the container's output", 10*time.Second, func() bool { return strings.Contains(h.logs(t, c.ID), "g=[") })
	poll(t, "a health probe", 10*time.Second, func() bool {
		raw, _ := os.ReadFile(logf)
		return strings.Contains(string(raw), " exec ")
	})
	if logs := h.logs(t, c.ID); !strings.Contains(logs, "g=[unset]") {
		t.Errorf("the container's process sees GOMAXPROCS: %q", logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// It ignores SIGTERM: the stop ends in `runc kill`.
	if _, err := h.rt.Stop(ctx, c.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := h.rt.Remove(ctx, c.ID, false); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(logf)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.Fields(line)
		for _, cmd := range []string{"run", "exec", "kill", "delete"} {
			if slices.Contains(f, cmd) {
				seen[cmd] = true
			}
		}
		if len(f) == 0 || f[0] != "GOMAXPROCS=1" {
			t.Errorf("runc ran with %q", line)
		}
	}
	for _, cmd := range []string{"run", "exec", "kill", "delete"} {
		if !seen[cmd] {
			t.Errorf("no `runc %s` seen; calls:\n%s", cmd, raw)
		}
	}
}
