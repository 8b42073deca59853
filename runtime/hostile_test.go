package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// peakRSS resets this process's peak RSS (clear_refs 5) and returns a func
// reporting how far the peak rose above the RSS at the reset, in MiB.
func peakRSS(t *testing.T) func() int {
	t.Helper()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS: %v", err)
	}
	base := statusKB(t, "VmRSS")
	return func() int { return (statusKB(t, "VmHWM") - base) >> 10 }
}

func statusKB(t *testing.T, key string) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == key+":" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	t.Fatalf("no %s in /proc/self/status", key)
	return 0
}

// maxGrowthMiB bounds how much the agent's (this process's) peak RSS may
// rise while it deals with hostile containers; an unbounded read of
// /dev/zero or of a huge file grows it by gigabytes within seconds.
const maxGrowthMiB = 64

// TestHostileWorkload: a container does what it can from inside to make the
// agent read without bound — huge output without newlines, links and FIFOs
// where the old init kept its state and logs, a health check that prints
// /dev/zero. Its logs stay within the rotation cap, the agent's memory
// stays bounded, and a neighbour container is unaffected.
func TestHostileWorkload(t *testing.T) {
	cfg := testConfig(t)
	cfg.LogMaxSize = 1 << 20
	cfg.LogMaxFiles = 3
	h := startHarness(t, cfg)
	growth := peakRSS(t)

	victim := h.run(t, Spec{Image: "busybox", Name: "victim", Command: []string{"sh", "-c", "echo alive; sleep 1000"}})
	hostile := h.run(t, Spec{Image: "busybox", Name: "hostile", Command: []string{"sh", "-c", `
		mkdir -p /.shoal/state /.shoal/log 2>&1
		ln -sf /dev/zero /.shoal/state/exit.json 2>&1
		ln -sf /dev/zero /.shoal/log/container.log 2>&1
		mkfifo /.shoal/log/container.log.1 2>&1
		ln -sf /dev/zero /etc/hosts 2>&1 || echo hosts-link-refused
		head -c 20000000 /dev/zero | tr '\0' a
		echo
		head -c 10000000 /dev/zero
		echo; echo flood-done; sleep 1000`},
		Healthcheck: &api.HealthConfig{Test: []string{"CMD-SHELL", "head -c 5000000 /dev/zero; echo fine"},
			Interval: 500 * time.Millisecond, Timeout: 20 * time.Second, Retries: 3},
	})
	events := h.rt.Subscribe()
	poll(t, "the hostile container's flood", 60*time.Second, func() bool {
		return strings.Contains(h.logs(t, hostile.ID), "flood-done")
	})
	deadline := time.After(60 * time.Second)
	for healthy := false; !healthy; {
		select {
		case ev := <-events:
			healthy = ev.ContainerID == hostile.ID && ev.Health == api.HealthHealthy
		case <-deadline:
			t.Fatal("the /dev/zero health check never counted as healthy")
		}
	}

	// Rotation by the supervisor kept the output within its cap.
	files, _ := filepath.Glob(filepath.Join(cfg.Root, "containers", hostile.ID, "log", "container.log*"))
	var total int64
	for _, f := range files {
		fi, err := os.Lstat(f)
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("log file %s: %v %v", f, fi, err)
			continue
		}
		total += fi.Size()
	}
	if len(files) > cfg.LogMaxFiles || total > int64(cfg.LogMaxFiles)*(cfg.LogMaxSize+64<<10) {
		t.Errorf("%d log files, %d bytes: rotation cap not kept", len(files), total)
	}
	// Lines are split at 16 KiB.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := h.rt.Logs(ctx, hostile.ID, LogOptions{Tail: 50})
	if err != nil {
		t.Fatal(err)
	}
	for l := range ch {
		if len(l.Line) > supMaxLine {
			t.Errorf("a log line of %d bytes", len(l.Line))
		}
	}
	// The neighbour runs on, and stops promptly.
	if c, err := h.rt.Get(victim.ID); err != nil || c.State != api.ContainerRunning {
		t.Fatalf("victim: %+v %v", c, err)
	}
	if !strings.Contains(h.logs(t, victim.ID), "alive") {
		t.Error("victim's log lost")
	}
	if c, err := h.rt.Stop(ctx, victim.ID, 10*time.Second); err != nil || c.ExitCode != 143 {
		t.Errorf("stop victim: exit %d, %v", c.ExitCode, err)
	}
	if g := growth(); g > maxGrowthMiB {
		t.Errorf("agent peak RSS rose by %d MiB", g)
	}
}

// TestHostileFilesInContainerDir puts symlinks to /dev/zero, FIFOs and huge
// files at every path the agent reads in a container's dir — the exit
// record (the supervisor's, and the state dir an older Shoal's init kept
// writable in the container), the current and rotated logs — while no agent
// runs. The next agent fails that container with a clear error, serves what
// it safely can, keeps its memory bounded, and its other container is
// unaffected.
func TestHostileFilesInContainerDir(t *testing.T) {
	cfg := testConfig(t)
	a := startHarness(t, cfg)
	victim := a.run(t, Spec{Image: "busybox", Name: "victim", Command: []string{"sh", "-c", "echo alive; sleep 1000"}})
	var targets []api.Container
	kinds := []string{"symlink", "fifo", "huge"}
	for _, k := range kinds {
		targets = append(targets, a.run(t, Spec{Image: "busybox", Name: "target-" + k, Command: []string{"sh", "-c", "echo hi; sleep 1000"}}))
	}
	for _, c := range targets {
		poll(t, "first output", 10*time.Second, func() bool { return strings.Contains(a.logs(t, c.ID), "hi") })
	}
	a.stop()

	// The targets end while no agent runs; the supervisor records their
	// exits, then the files are replaced.
	for _, c := range targets {
		if err := syscall.Kill(c.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range targets {
		rec := filepath.Join(cfg.Root, "containers", c.ID, exitRecordFile)
		poll(t, "exit record", 10*time.Second, func() bool { return fileExists(rec) })
	}
	plant := func(kind, p string) {
		t.Helper()
		_ = os.Remove(p)
		var err error
		switch kind {
		case "symlink":
			err = os.Symlink("/dev/zero", p)
		case "fifo":
			err = syscall.Mkfifo(p, 0o644)
		case "huge": // 1 GiB of zeros (sparse): no newline, no end in sight
			var f *os.File
			if f, err = os.Create(p); err == nil {
				err = f.Truncate(1 << 30)
				f.Close()
			}
		}
		if err != nil {
			t.Fatalf("plant %s at %s: %v", kind, p, err)
		}
	}
	for i, c := range targets {
		dir := filepath.Join(cfg.Root, "containers", c.ID)
		os.MkdirAll(filepath.Join(dir, "state"), 0o755)
		plant(kinds[i], filepath.Join(dir, exitRecordFile))
		plant(kinds[i], filepath.Join(dir, "state", exitRecordFile))
		plant(kinds[i], filepath.Join(dir, "log", "container.log"))
		plant(kinds[i], filepath.Join(dir, "log", "container.log.1"))
	}

	growth := peakRSS(t)
	done := make(chan *harness, 1)
	go func() { done <- startHarness(t, cfg) }()
	var b *harness
	select {
	case b = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the agent hung adopting hostile containers")
	}
	for i, c := range targets {
		got, err := b.rt.Get(c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != api.ContainerExited || got.ExitCode == 0 || !strings.Contains(got.Error, "exit status unreadable") {
			t.Errorf("%s: state %s exit %d error %q, want exited with an unreadable-exit-status error", kinds[i], got.State, got.ExitCode, got.Error)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ch, err := b.rt.Logs(ctx, c.ID, LogOptions{Follow: true})
		switch {
		case kinds[i] == "huge" && err != nil:
			t.Errorf("logs of a huge file: %v", err)
		case kinds[i] != "huge" && !errors.Is(err, ErrUnsafeFile):
			t.Errorf("logs of a %s: %v, want ErrUnsafeFile", kinds[i], err)
		}
		if err == nil {
			for l := range ch {
				t.Errorf("%s: unexpected log line of %d bytes", kinds[i], len(l.Line))
			}
		}
		cancel()
	}
	if g := growth(); g > maxGrowthMiB {
		t.Errorf("agent peak RSS rose by %d MiB", g)
	}
	got, err := b.rt.Get(victim.ID)
	if err != nil || got.State != api.ContainerRunning {
		t.Fatalf("victim after restart: %+v %v", got, err)
	}
	if !strings.Contains(b.logs(t, victim.ID), "alive") {
		t.Error("victim's log lost")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c, err := b.rt.Stop(ctx, victim.ID, 10*time.Second); err != nil || c.ExitCode != 143 {
		t.Errorf("stop victim: exit %d, %v", c.ExitCode, err)
	}
}
