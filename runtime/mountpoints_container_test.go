package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/mountlayer"
	"github.com/shoal-org/shoal/runtime/record"
	"github.com/shoal-org/shoal/runtime/rootfs"
)

// layeredImages resolves each reference to its layer dirs (base first).
type layeredImages map[string][]string

func (m layeredImages) Resolve(ref string) (api.Image, api.ImageConfig, []string, error) {
	layers, ok := m[ref]
	if !ok {
		return api.Image{}, api.ImageConfig{}, nil, fmt.Errorf("image %s: not found", ref)
	}
	return api.Image{ID: "sha256:" + strings.Repeat("0", 64), Tags: []string{ref}},
		api.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, layers, nil
}

// mountpointImages builds, above the busybox rootfs (which has /etc with
// passwd and group, /proc, /dev and /sys, and no /etc/hosts, hostname or
// resolv.conf), an image whose /etc is a symlink and one whose /etc is 0700
// and owned by 1000.
func mountpointImages(t *testing.T) layeredImages {
	t.Helper()
	dir := t.TempDir()
	sym := filepath.Join(dir, "symlinked-etc")
	if err := os.MkdirAll(filepath.Join(sym, "real-etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/real-etc", filepath.Join(sym, "etc")); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\nmarker:x:5:5::/:/bin/sh\n",
		"group":  "root:x:0:\n",
	} {
		if err := os.WriteFile(filepath.Join(sym, "real-etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	priv := filepath.Join(dir, "private-etc")
	if err := os.MkdirAll(filepath.Join(priv, "etc"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(priv, "etc"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	// /proc, /dev and /sys whited out (0/0 character devices, as the
	// image store writes whiteouts).
	bare := filepath.Join(dir, "no-kernel-dirs")
	if err := os.Mkdir(bare, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"proc", "dev", "sys"} {
		if err := unix.Mknod(filepath.Join(bare, name), unix.S_IFCHR, 0); err != nil {
			t.Fatal(err)
		}
	}
	return layeredImages{
		"no-kernel-dirs": {testRootfs, bare},
		"busybox":        {testRootfs},
		"symlinked-etc":  {testRootfs, sym},
		"private-etc":    {testRootfs, priv},
	}
}

// mountpointsProbe prints what a container sees at the mountpoints and
// around them, without times (the /etc files are rewritten per container).
const mountpointsProbe = `for p in / /etc /etc/hosts /etc/hostname /etc/resolv.conf /etc/passwd /.shoal /.shoal/init /proc /dev /sys; do
  stat -c '%n %a %u %g %F' $p; done
echo "etc: $(ls -a /etc | tr '\n' ' ')"; echo "shoal: $(ls -a /.shoal | tr '\n' ' ')"
echo "== hosts"; cat /etc/hosts; echo "== hostname"; cat /etc/hostname; echo "== resolv"; cat /etc/resolv.conf
echo "== passwd"; cat /etc/passwd`

func upperNames(t *testing.T, cfg Config, id string) []string {
	t.Helper()
	var out []string
	root := filepath.Join(cfg.Root, "containers", id, "upper")
	filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func (h *harness) record(t *testing.T, id string) record.Record {
	t.Helper()
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	c, ok := h.rt.containers[id]
	if !ok {
		t.Fatalf("no container %s", id)
	}
	return c.rec
}

// rootfsLowerdir is the lowerdir option of container id's rootfs mount.
func rootfsLowerdir(t *testing.T, cfg Config, id string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	rootfs := pathsOnDisk(t, cfg, id).Rootfs
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != rootfs {
			continue
		}
		for _, opt := range strings.Split(f[len(f)-1], ",") {
			if v, ok := strings.CutPrefix(opt, "lowerdir="); ok {
				return v
			}
		}
	}
	t.Fatalf("no overlay mount at %s", rootfs)
	return ""
}

func mountpointsConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.Images = mountpointImages(t)
	cfg.ResolvConf = filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(cfg.ResolvConf, []byte("nameserver 10.9.8.7\nsearch shoal.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestMountpointsLayer: a container of an image without /etc/hosts,
// /etc/hostname, /etc/resolv.conf and /.shoal starts with nothing in its
// upper dir, sees its /etc files and the image's own, and the next
// container stacks the same layer.
func TestMountpointsLayer(t *testing.T) {
	cfg := mountpointsConfig(t)
	h := startHarness(t, cfg)
	c, logs := h.runToExit(t, Spec{Hostname: "box1", Command: []string{"sh", "-c", mountpointsProbe}})
	if c.ExitCode != 0 {
		t.Fatalf("exit %d: %s", c.ExitCode, logs)
	}
	for _, want := range []string{
		"== hosts\n127.0.0.1\tlocalhost\n", "127.0.1.1\tbox1\n",
		"== hostname\nbox1\n",
		"== resolv\nnameserver 10.9.8.7\nsearch shoal.test\n",
		"== passwd\nroot:x:0:0:root:/root:/bin/sh\n",
		"/etc 755 0 0 directory\n", "/.shoal/init 755 0 0 regular file\n",
		"etc: . .. group hostname hosts passwd resolv.conf \n",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if up := upperNames(t, cfg, c.ID); len(up) != 0 {
		t.Errorf("upper dir after the run holds %v, want nothing", up)
	}
	ml := h.record(t, c.ID).MountLayer
	if filepath.Dir(ml) != filepath.Join(cfg.Root, mountLayersDir) || !mountlayer.IsKey(filepath.Base(ml)) {
		t.Fatalf("record's mountpoints layer %q", ml)
	}
	if got, want := rootfsLowerdir(t, cfg, c.ID), ml+":"+testRootfs; got != want {
		t.Errorf("lowerdir %q, want %q", got, want)
	}

	// A second container, running: same layer, upper dir still empty.
	c2 := h.run(t, Spec{Image: "busybox", Command: []string{"sh", "-c", "echo up; exec sleep 1000"}})
	poll(t, "second container up", 10*time.Second, func() bool { return strings.Contains(h.logs(t, c2.ID), "up") })
	if got := h.record(t, c2.ID).MountLayer; got != ml {
		t.Errorf("second container's layer %q, want %q", got, ml)
	}
	if up := upperNames(t, cfg, c2.ID); len(up) != 0 {
		t.Errorf("upper dir of a running container holds %v, want nothing", up)
	}
	if ents, _ := os.ReadDir(filepath.Join(cfg.Root, mountLayersDir)); len(ents) != 1 {
		t.Errorf("%d mountpoints layers, want 1", len(ents))
	}
}

// TestMountpointsLayerSeesTheSame: for an image as busybox, one whose /etc
// is a symlink, one whose /etc is 0700 owned by 1000 and one without /proc,
// /dev and /sys, a container sees what a container made without the layer
// sees, and writes less.
func TestMountpointsLayerSeesTheSame(t *testing.T) {
	cfg := mountpointsConfig(t)
	h := startHarness(t, cfg)
	for _, img := range []string{"busybox", "symlinked-etc", "private-etc", "no-kernel-dirs"} {
		t.Run(img, func(t *testing.T) {
			spec := Spec{Image: img, Hostname: "box", Command: []string{"sh", "-c", mountpointsProbe}}
			h.rt.noMountLayer = true
			before, beforeLogs := h.runToExit(t, spec)
			h.rt.noMountLayer = false
			after, afterLogs := h.runToExit(t, spec)
			if before.ExitCode != 0 || after.ExitCode != 0 {
				t.Fatalf("exit %d / %d:\n%s\n%s", before.ExitCode, after.ExitCode, beforeLogs, afterLogs)
			}
			if testing.Verbose() {
				t.Logf("%s:\n%s", img, afterLogs)
			}
			if beforeLogs != afterLogs {
				t.Errorf("without the layer:\n%s\nwith it:\n%s", beforeLogs, afterLogs)
			}
			if !strings.Contains(afterLogs, "== hostname\nbox\n") || !strings.Contains(afterLogs, "nameserver 10.9.8.7") {
				t.Errorf("/etc files not seen:\n%s", afterLogs)
			}
			up := strings.Join(upperNames(t, cfg, after.ID), " ")
			ml := h.record(t, after.ID).MountLayer
			if ml == "" {
				t.Fatal("no mountpoints layer")
			}
			switch img {
			case "busybox", "no-kernel-dirs":
				if up != "" {
					t.Errorf("upper holds %q", up)
				}
			case "symlinked-etc":
				// runc creates the /etc files in /real-etc, as before; the
				// init's mountpoint comes from the layer.
				if !strings.Contains(afterLogs, "marker:x:5:5") || up != "real-etc real-etc/hostname real-etc/hosts real-etc/resolv.conf" {
					t.Errorf("upper holds %q; logs:\n%s", up, afterLogs)
				}
				if _, err := os.Lstat(filepath.Join(ml, "etc")); err == nil {
					t.Error("the layer has /etc over a symlink")
				}
			case "private-etc":
				if !strings.Contains(afterLogs, "/etc 700 1000 1000 directory\n") || up != "" {
					t.Errorf("upper holds %q; logs:\n%s", up, afterLogs)
				}
				var st os.FileInfo
				st, err := os.Lstat(filepath.Join(ml, "etc"))
				if err != nil || st.Mode().Perm() != 0o700 {
					t.Errorf("layer's /etc: %v %v", st, err)
				}
			}
		})
	}
	if ents, _ := os.ReadDir(filepath.Join(cfg.Root, mountLayersDir)); len(ents) != 4 {
		t.Errorf("%d mountpoints layers, want one per image", len(ents))
	}
}

// TestMountpointsLayerRemount: after a reboot (rootfs unmounted) and an
// agent restart, a container restarts on the layer it was made with, one
// whose record names none (made before the layer existed) restarts
// without one, and layers no record names are removed.
func TestMountpointsLayerRemount(t *testing.T) {
	cfg := mountpointsConfig(t)
	a := startHarness(t, cfg)
	probe := Spec{Hostname: "box", Command: []string{"sh", "-c", "cat /etc/hostname /etc/passwd"}}
	withLayer, _ := a.runToExit(t, probe)
	old, _ := a.runToExit(t, probe)
	ml := a.record(t, withLayer.ID).MountLayer
	a.stop()

	// old: a record from before the layer.
	recPath := filepath.Join(cfg.Root, "containers", old.ID, "container.json")
	b, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["mount_layer"] != ml {
		t.Fatalf("record has mount_layer %v, want %q", raw["mount_layer"], ml)
	}
	delete(raw, "mount_layer")
	if b, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{withLayer.ID, old.ID} {
		if err := rootfs.Unmount(pathsOnDisk(t, cfg, id).Rootfs); err != nil {
			t.Fatal(err)
		}
	}
	unused := filepath.Join(cfg.Root, mountLayersDir, strings.Repeat("ab", 16))
	leftover := filepath.Join(cfg.Root, mountLayersDir, ".tmp-42")
	for _, d := range []string{unused, leftover} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	h := startHarness(t, cfg)
	for _, d := range []string{unused, leftover} {
		if _, err := os.Lstat(d); err == nil {
			t.Errorf("%s not removed", d)
		}
	}
	if _, err := os.Lstat(ml); err != nil {
		t.Fatalf("layer in use removed: %v", err)
	}
	for _, id := range []string{withLayer.ID, old.ID} {
		ctx := t.Context()
		if _, err := h.rt.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		c := h.wait(t, id)
		if logs := h.logs(t, id); c.ExitCode != 0 || strings.Count(logs, "box\nroot:x:0:0") != 2 {
			t.Errorf("%s: exit %d, logs %q", ShortID(id), c.ExitCode, logs)
		}
	}
	if got := rootfsLowerdir(t, cfg, withLayer.ID); got != ml+":"+testRootfs {
		t.Errorf("remount with the layer: lowerdir %q", got)
	}
	if up := upperNames(t, cfg, withLayer.ID); len(up) != 0 {
		t.Errorf("upper dir after the restart holds %v", up)
	}
	if got := rootfsLowerdir(t, cfg, old.ID); got != testRootfs {
		t.Errorf("remount of an old record: lowerdir %q, want the image alone", got)
	}
	// Without the layer runc made the mountpoints in the upper dir again.
	if up := strings.Join(upperNames(t, cfg, old.ID), " "); !strings.Contains(up, "etc/hosts") || !strings.Contains(up, ".shoal/init") {
		t.Errorf("upper dir of the old container: %q", up)
	}
}
