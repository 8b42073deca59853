package runtime

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/rootfs"
)

// TestEtcFilesBounded: a container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf stay writable, but what the container writes there is
// bounded by a small tmpfs of its own, not by the run dir's file system
// (/run, shared with the host). A restart still rewrites the hosts file
// with the container's new address, even after the container filled that
// tmpfs, and a remove leaves no mount behind.
func TestEtcFilesBounded(t *testing.T) {
	cfg := testConfig(t)
	net := &FakeNetwork{IP: "10.42.7.9"}
	cfg.Network = net
	h := startHarness(t, cfg)
	c := h.run(t, Spec{Image: "busybox", Hostname: "box3", Command: []string{"sh", "-c", `
if [ -e /ran ]; then cat /etc/hosts /etc/hostname; exit 0; fi
touch /ran
echo '10.9.9.9 extra' >> /etc/hosts && echo appended
head -c 50000000 /dev/zero > /etc/resolv.conf
echo "filled $?"
exit 0`}})
	c = h.wait(t, c.ID)
	logs := h.logs(t, c.ID)
	if !strings.Contains(logs, "appended") {
		t.Errorf("the container could not edit its /etc/hosts: %q", logs)
	}
	if strings.Contains(logs, "filled 0") {
		t.Errorf("the container wrote 50 MB into its /etc/resolv.conf: %q", logs)
	}
	p := pathsOnDisk(t, cfg, c.ID)
	st, err := os.Stat(p.Resolv)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 2<<20 {
		t.Errorf("%s holds %d bytes the container wrote", p.Resolv, st.Size())
	}
	var run, etc unix.Stat_t
	if err := unix.Stat(p.Run, &run); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.Hosts, p.Hostname, p.Resolv} {
		var fs unix.Statfs_t
		if err := unix.Stat(f, &etc); err != nil {
			t.Fatal(err)
		}
		if err := unix.Statfs(f, &fs); err != nil {
			t.Fatal(err)
		}
		if etc.Dev == run.Dev || fs.Type != unix.TMPFS_MAGIC {
			t.Errorf("%s is on the run dir's file system (or not on a tmpfs: %#x)", f, fs.Type)
		}
	}

	// A restart with a new address rewrites the hosts file on the full tmpfs.
	net.mu.Lock()
	net.IP = "10.42.7.11"
	net.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.rt.Start(ctx, c.ID); err != nil {
		t.Fatalf("restart: %v", err)
	}
	h.wait(t, c.ID)
	logs = h.logs(t, c.ID)
	if !strings.Contains(logs, "10.42.7.11\tbox3") || strings.Contains(logs, "10.42.7.9\t") || !strings.Contains(logs, "box3\n") {
		t.Errorf("/etc/hosts and /etc/hostname after the restart: %q", logs)
	}
	if err := h.rt.Remove(ctx, c.ID, false); err != nil {
		t.Fatal(err)
	}
	if m := mountsWith(t, c.ID); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
	if fileExists(p.Run) {
		t.Errorf("%s left after remove", p.Run)
	}
}

// TestEtcFilesBesideBundle: a container made with a run dir before the
// /etc files had their tmpfs (no etc_tmpfs in its record, the files beside
// its bundle, where its config binds them from) is restarted by the next
// agent from there: the hosts file it binds is the one rewritten.
func TestEtcFilesBesideBundle(t *testing.T) {
	cfg := testConfig(t)
	net := &FakeNetwork{IP: "10.42.7.9"}
	cfg.Network = net
	a := startHarness(t, cfg)
	c := a.run(t, Spec{Image: "busybox", Hostname: "box4", Command: []string{"cat", "/etc/hosts", "/etc/hostname"}})
	a.wait(t, c.ID)
	a.stop()

	// Make it what the previous version made.
	p := pathsOnDisk(t, cfg, c.ID)
	old := layout.For(cfg.Root, c.ID, p.Run)
	for from, to := range map[string]string{p.Hosts: old.Hosts, p.Hostname: old.Hostname, p.Resolv: old.Resolv} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := rootfs.Unmount(p.Etc); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.Etc); err != nil {
		t.Fatal(err)
	}
	for f, edit := range map[string][2]string{p.Config: {p.Etc + "/", p.Run + "/"}, p.Record: {`"etc_tmpfs": true`, `"etc_tmpfs": false`}} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), edit[0]) {
			t.Fatalf("%s has no %q: %s", f, edit[0], b)
		}
		if err := os.WriteFile(f, []byte(strings.ReplaceAll(string(b), edit[0], edit[1])), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	net.mu.Lock()
	net.IP = "10.42.7.11"
	net.mu.Unlock()
	b := startHarness(t, cfg)
	if got := pathsOnDisk(t, cfg, c.ID); got != old {
		t.Fatalf("paths of the older container:\n%+v\nwant\n%+v", got, old)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.rt.Start(ctx, c.ID); err != nil {
		t.Fatalf("restart: %v", err)
	}
	b.wait(t, c.ID)
	if logs := b.logs(t, c.ID); strings.Count(logs, "\nbox4\n") != 2 || !strings.Contains(logs, "10.42.7.11\tbox4") {
		t.Errorf("logs: %q", logs)
	}
	if fileExists(p.Etc) {
		t.Errorf("%s made for an older container", p.Etc)
	}
	if err := b.rt.Remove(ctx, c.ID, false); err != nil {
		t.Fatal(err)
	}
	if fileExists(p.Run) || len(mountsWith(t, c.ID)) > 0 {
		t.Errorf("%s or mounts left after remove", p.Run)
	}
}
