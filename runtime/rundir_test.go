package runtime

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/netns"
	"github.com/shoal-org/shoal/runtime/record"
	"github.com/shoal-org/shoal/runtime/rootfs"
)

// mountsWith returns the mount points in mountinfo that contain s.
func mountsWith(t *testing.T, s string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.Contains(f[4], s) {
			out = append(out, f[4])
		}
	}
	return out
}

// dirNames lists the names in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	slices.Sort(out)
	return out
}

func permOf(t *testing.T, p string) os.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestRunDirLayout: a container's bundle, /etc files, runc's files and
// netns are in its run dir, root-only; its dir under Root holds only what
// outlives a reboot. A restarted agent still execs in it, stops and
// removes it, and nothing is left in either place.
func TestRunDirLayout(t *testing.T) {
	cfg := testConfig(t)
	a := startHarness(t, cfg)
	c := a.run(t, Spec{Image: "busybox", Hostname: "box1", Command: []string{"sleep", "1000"}})
	p := pathsOnDisk(t, cfg, c.ID)
	if want := filepath.Join(cfg.RunRoot, c.ID); p.Run != want {
		t.Fatalf("run dir %q, want %q", p.Run, want)
	}
	for _, f := range []string{p.Config, p.PidFile, p.InitLog, p.Hosts, p.Hostname, p.Resolv, p.Netns, p.Rootfs} {
		if !strings.HasPrefix(f, p.Run+"/") || !fileExists(f) {
			t.Errorf("%s: missing, or not in the run dir", f)
		}
	}
	if !rootfs.IsMountpoint(p.Rootfs) || !netns.IsMount(p.Netns) {
		t.Errorf("rootfs mounted %v, netns mounted %v", rootfs.IsMountpoint(p.Rootfs), netns.IsMount(p.Netns))
	}
	if got, want := dirNames(t, p.Dir), []string{"container.json", "log", "upper", "work"}; !slices.Equal(got, want) {
		t.Errorf("container dir holds %q, want %q", got, want)
	}
	if fileExists(filepath.Join(cfg.Root, "netns", c.ID)) {
		t.Error("a netns file in Root/netns")
	}
	for f, want := range map[string]os.FileMode{cfg.RunRoot: 0o700, p.Run: 0o700, p.Config: 0o600, p.Hosts: 0o644, p.Hostname: 0o644, p.Resolv: 0o644} {
		if got := permOf(t, f); got != want {
			t.Errorf("%s: mode %v, want %v", f, got, want)
		}
	}

	// Another agent on the same dirs (a restart).
	a.stop()
	b := startHarness(t, cfg)
	if got, err := b.rt.Get(c.ID); err != nil || got.State != api.ContainerRunning || got.Pid != c.Pid {
		t.Fatalf("after restart: %+v %v", got, err)
	}
	if out, _, code := execCollect(t, b.rt, c.ID, ExecOptions{Args: []string{"cat", "/etc/hostname"}}, ""); out != "box1\n" || code != 0 {
		t.Errorf("exec after restart: %q %d", out, code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got, err := b.rt.Stop(ctx, c.ID, 10*time.Second); err != nil || got.ExitCode != 143 {
		t.Fatalf("stop after restart: %+v %v", got, err)
	}
	if !fileExists(filepath.Join(p.Dir, exitRecordFile)) || fileExists(filepath.Join(p.Run, exitRecordFile)) {
		t.Error("the exit record is not (only) in the container's dir")
	}
	if err := b.rt.Remove(ctx, c.ID, false); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{p.Dir, p.Run} {
		if fileExists(d) {
			t.Errorf("%s left after remove", d)
		}
	}
	if m := mountsWith(t, c.ID); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
}

// TestOldLayoutAfterUpgrade: a container made by a Shoal without run dirs
// (all its files in its dir under Root, its netns in Root/netns) is run by
// the next agent, which has a RunRoot, from where its record says: exec,
// logs, stop, start again, remove; new containers beside it get run dirs.
func TestOldLayoutAfterUpgrade(t *testing.T) {
	cfg := testConfig(t)
	before := cfg
	before.RunRoot = "" // the layout of the previous version
	a := startHarness(t, before)
	c := a.run(t, Spec{Image: "busybox", Command: []string{"sh", "-c", "echo hello; exec sleep 1000"}})
	raw, err := os.ReadFile(layout.For(cfg.Root, c.ID, "").Record)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "run_dir") {
		t.Fatalf("an old-layout record has a run dir: %s", raw)
	}
	p := pathsOnDisk(t, cfg, c.ID)
	if p.Run != "" || !fileExists(filepath.Join(cfg.Root, "containers", c.ID, "config.json")) || !netns.IsMount(filepath.Join(cfg.Root, "netns", c.ID)) {
		t.Fatalf("old layout: %+v", p)
	}
	poll(t, "output", 10*time.Second, func() bool { return strings.Contains(a.logs(t, c.ID), "hello") })
	a.stop()

	b := startHarness(t, cfg) // the upgraded agent
	if got, err := b.rt.Get(c.ID); err != nil || got.State != api.ContainerRunning || got.Pid != c.Pid {
		t.Fatalf("after upgrade: %+v %v", got, err)
	}
	if out, _, code := execCollect(t, b.rt, c.ID, ExecOptions{Args: []string{"cat", "/etc/hostname"}}, ""); out != c.ID[:12]+"\n" || code != 0 {
		t.Errorf("exec in an old-layout container: %q %d", out, code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if got, err := b.rt.Stop(ctx, c.ID, 10*time.Second); err != nil || got.ExitCode != 143 {
		t.Fatalf("stop: %+v %v", got, err)
	}
	if got, err := b.rt.Start(ctx, c.ID); err != nil || got.State != api.ContainerRunning {
		t.Fatalf("start again: %+v %v", got, err)
	}
	poll(t, "second run's output", 10*time.Second, func() bool { return strings.Count(b.logs(t, c.ID), "hello") == 2 })
	if fileExists(filepath.Join(cfg.RunRoot, c.ID)) {
		t.Error("an old-layout container got a run dir")
	}

	n := b.run(t, Spec{Image: "busybox", Command: []string{"sleep", "1000"}})
	if pn := pathsOnDisk(t, cfg, n.ID); pn.Run != filepath.Join(cfg.RunRoot, n.ID) {
		t.Errorf("new container's run dir %q", pn.Run)
	}
	if err := b.rt.Remove(ctx, c.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{p.Dir, p.Netns} {
		if fileExists(d) {
			t.Errorf("%s left after remove", d)
		}
	}
	if m := mountsWith(t, c.ID); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
}

// simulateReboot does to cfg's dirs what a reboot does: every container
// process and the supervisor gone, every mount gone, tmpfs (RunRoot, the
// runc root) empty; Root is kept.
func simulateReboot(t *testing.T, cfg Config) {
	t.Helper()
	if pid, err := readPid(filepath.Join(cfg.Root, supervisorPidFile)); err == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	forceCleanup(t, cfg) // kills and deletes runc's containers, unmounts rootfs and netns
	for _, d := range []string{cfg.RunRoot, cfg.RuncRoot} {
		if d == "" {
			continue
		}
		if m := mountsWith(t, d+"/"); len(m) > 0 {
			t.Fatalf("mounts left under %s: %q", d, m)
		}
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRebootEmptiesRunDir: after a reboot, records are left for containers
// that no longer run and their run dirs are gone. As before run dirs, the
// next agent reports them exited (137, "not recorded", for one that was
// running; its recorded code for one that had ended), serves their logs,
// starts one again (its bundle rebuilt, the config as it was) and removes
// them, leaving nothing.
// The old layout goes through the same steps.
func TestRebootEmptiesRunDir(t *testing.T) {
	for _, lay := range []string{"run dir", "old"} {
		t.Run(lay, func(t *testing.T) {
			cfg := testConfig(t)
			if lay == "old" {
				cfg.RunRoot = ""
			}
			a := startHarness(t, cfg)
			ended := a.run(t, Spec{Image: "busybox", Name: "ended", Hostname: "box2", Command: []string{"sh", "-c",
				"echo run; cat /etc/hostname; grep -c box2 /etc/hosts; exit 3"}})
			if got := a.wait(t, ended.ID); got.ExitCode != 3 {
				t.Fatalf("exit %d", got.ExitCode)
			}
			running := a.run(t, Spec{Image: "busybox", Name: "running", Command: []string{"sleep", "1000"}})
			pe, pr := pathsOnDisk(t, cfg, ended.ID), pathsOnDisk(t, cfg, running.ID)
			config, err := os.ReadFile(pe.Config)
			if err != nil {
				t.Fatal(err)
			}
			a.stop()
			simulateReboot(t, cfg)

			b := startHarness(t, cfg)
			if got, err := b.rt.Get("ended"); err != nil || got.State != api.ContainerExited || got.ExitCode != 3 {
				t.Errorf("ended after reboot: %+v %v", got, err)
			}
			got, err := b.rt.Get("running")
			if err != nil || got.State != api.ContainerExited || got.ExitCode != 137 || !strings.Contains(got.Error, "not recorded") {
				t.Errorf("running at the reboot: %+v %v", got, err)
			}
			if logs := b.logs(t, ended.ID); !strings.Contains(logs, "run\nbox2\n1\n") {
				t.Errorf("logs after reboot: %q", logs)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := b.rt.Start(ctx, "ended"); err != nil {
				t.Fatalf("start after reboot: %v", err)
			}
			if got := b.wait(t, ended.ID); got.ExitCode != 3 {
				t.Errorf("second run: exit %d", got.ExitCode)
			}
			// The rebuilt bundle config is the one prepare wrote.
			if again, err := os.ReadFile(pe.Config); err != nil || string(again) != string(config) {
				t.Errorf("bundle config after the reboot differs (%v):\n%s\nwas\n%s", err, again, config)
			}
			if logs := b.logs(t, ended.ID); strings.Count(logs, "run\nbox2\n1\n") != 2 {
				t.Errorf("second run's logs: %q", logs)
			}
			for _, id := range []string{ended.ID, running.ID} {
				if err := b.rt.Remove(ctx, id, false); err != nil {
					t.Fatal(err)
				}
				if m := mountsWith(t, id); len(m) > 0 {
					t.Errorf("mounts left: %q", m)
				}
			}
			for _, p := range []layout.Paths{pe, pr} {
				for _, d := range []string{p.Dir, p.Run, p.Netns} {
					if d != "" && fileExists(d) {
						t.Errorf("%s left after remove", d)
					}
				}
			}
		})
	}
}

// TestLeftoverRunDirRemoved: a run dir without a record is removed when the
// agent starts, alone (a crash between making it and the container's dir)
// or with a container dir without a record (a crash before the first save).
func TestLeftoverRunDirRemoved(t *testing.T) {
	cfg := testConfig(t)
	var left []layout.Paths
	for i, withDir := range []bool{false, true} {
		id := record.NewID()
		p := layout.For(cfg.Root, id, filepath.Join(cfg.RunRoot, id))
		dirs := []string{p.Rootfs}
		if withDir {
			dirs = append(dirs, p.Upper)
		}
		for _, d := range dirs {
			if err := os.MkdirAll(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(p.Hosts, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if err := netns.Create(p.Netns); err != nil {
				t.Fatal(err)
			}
		}
		left = append(left, p)
	}
	// Not a container's: left alone.
	other := filepath.Join(cfg.RunRoot, ".keep")
	if err := os.MkdirAll(other, 0o700); err != nil {
		t.Fatal(err)
	}
	startHarness(t, cfg)
	for _, p := range left {
		if fileExists(p.Run) || fileExists(p.Dir) {
			t.Errorf("leftover %s or %s not removed", p.Run, p.Dir)
		}
	}
	if m := mountsWith(t, cfg.RunRoot+"/"); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
	if !fileExists(other) {
		t.Error("a dir that is no container's was removed")
	}
}
