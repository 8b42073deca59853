package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// seedFixture makes an image-like rootfs and a volumes dir with empty
// volumes named in vols.
func seedFixture(t *testing.T, vols ...string) (rootfs, volumesDir string) {
	t.Helper()
	tmp := t.TempDir()
	rootfs, volumesDir = filepath.Join(tmp, "rootfs"), filepath.Join(tmp, "volumes")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(rootfs, "var/lib/db/sub"), 0o755))
	must(os.WriteFile(filepath.Join(rootfs, "var/lib/db/init.sql"), []byte("CREATE TABLE t;\n"), 0o640))
	must(os.WriteFile(filepath.Join(rootfs, "var/lib/db/sub/deep"), []byte("deep\n"), 0o600))
	must(os.Chmod(filepath.Join(rootfs, "var/lib/db"), 0o750))
	must(os.Chmod(filepath.Join(rootfs, "var/lib/db/sub"), 0o711))
	// Links are copied as links, never followed: one points out of the
	// rootfs, one at a file of the host.
	must(os.Symlink("/etc/shadow", filepath.Join(rootfs, "var/lib/db/shadow")))
	must(os.Symlink("../../../../..", filepath.Join(rootfs, "var/lib/db/up")))
	// A target that is a link resolves inside the rootfs, whatever it says.
	must(os.MkdirAll(filepath.Join(rootfs, "srv/real"), 0o755))
	must(os.WriteFile(filepath.Join(rootfs, "srv/real/app.conf"), []byte("x=1\n"), 0o644))
	must(os.Symlink("/srv/real", filepath.Join(rootfs, "srv/linked")))
	must(os.Symlink("/../../../../etc", filepath.Join(rootfs, "escape")))
	must(os.MkdirAll(filepath.Join(rootfs, "empty"), 0o755))
	v := &Store{Dir: volumesDir, Pending: map[string]int{}}
	must(os.MkdirAll(volumesDir, 0o700))
	for _, n := range vols {
		if _, err := v.EnsureLocked(n); err != nil {
			t.Fatal(err)
		}
	}
	return rootfs, volumesDir
}

func TestSeedVolumes(t *testing.T) {
	rootfs, vd := seedFixture(t, "db", "conf", "esc", "none", "keep", "opt", "emptysrc")
	data := func(n string) string { return ocispec.VolumePath(vd, n) }
	if err := os.WriteFile(filepath.Join(data("keep"), "mine"), []byte("task data"), 0o644); err != nil {
		t.Fatal(err)
	}
	ms := []api.Mount{
		{Type: api.MountVolume, Source: "db", Target: "/var/lib/db"},
		{Type: api.MountVolume, Source: "conf", Target: "/srv/linked"},
		{Type: api.MountVolume, Source: "esc", Target: "/escape"},
		{Type: api.MountVolume, Source: "none", Target: "/not/in/image"},
		{Type: api.MountVolume, Source: "keep", Target: "/var/lib/db"},
		{Type: api.MountVolume, Source: "opt", Target: "/var/lib/db", NoCopy: true},
		{Type: api.MountVolume, Source: "emptysrc", Target: "/empty"},
		{Type: api.MountTmpfs, Target: "/var/lib/db"},
	}
	if err := Seed(rootfs, vd, ms, 1<<20); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return string(b)
	}
	mode := func(p string) os.FileMode {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	// Copied with content, modes, and the volume root taking the image dir's mode.
	if got := read(filepath.Join(data("db"), "init.sql")); got != "CREATE TABLE t;\n" {
		t.Fatalf("init.sql: %q", got)
	}
	if got := read(filepath.Join(data("db"), "sub/deep")); got != "deep\n" {
		t.Fatalf("sub/deep: %q", got)
	}
	for p, want := range map[string]os.FileMode{
		data("db"):                            os.ModeDir | 0o750,
		filepath.Join(data("db"), "sub"):      os.ModeDir | 0o711,
		filepath.Join(data("db"), "init.sql"): 0o640,
		filepath.Join(data("db"), "sub/deep"): 0o600,
	} {
		if got := mode(p); got != want {
			t.Errorf("mode of %s: %v, want %v", p, got, want)
		}
	}
	for name, want := range map[string]string{"shadow": "/etc/shadow", "up": "../../../../.."} {
		got, err := os.Readlink(filepath.Join(data("db"), name))
		if err != nil || got != want {
			t.Errorf("link %s: %q %v, want %q", name, got, err, want)
		}
	}
	// A link as target resolves in the rootfs.
	if got := read(filepath.Join(data("conf"), "app.conf")); got != "x=1\n" {
		t.Fatalf("seed through a link target: %q", got)
	}
	// "/../../../../etc" inside the rootfs is the rootfs's /etc: absent, so
	// nothing of the host's /etc is copied.
	for _, n := range []string{"esc", "none", "opt", "emptysrc"} {
		if names, _ := os.ReadDir(data(n)); len(names) != 0 {
			t.Errorf("volume %s was seeded: %v", n, names)
		}
	}
	// A volume with data is left alone.
	if names, _ := os.ReadDir(data("keep")); len(names) != 1 || read(filepath.Join(data("keep"), "mine")) != "task data" {
		t.Fatalf("a volume with data was touched: %v", names)
	}
	// A second use does not copy again (the volume is not empty any more),
	// even after the task changed what was seeded.
	if err := os.WriteFile(filepath.Join(data("db"), "init.sql"), []byte("changed"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := Seed(rootfs, vd, ms[:1], 1<<20); err != nil {
		t.Fatal(err)
	}
	if got := read(filepath.Join(data("db"), "init.sql")); got != "changed" {
		t.Fatalf("a second use re-seeded: %q", got)
	}
}

func TestSeedVolumeRefusesLinkedVolume(t *testing.T) {
	rootfs, vd := seedFixture(t)
	// A volume dir that is a link (never made by the agent) is not followed.
	target := t.TempDir()
	if err := os.Symlink(target, filepath.Join(vd, "evil")); err != nil {
		t.Fatal(err)
	}
	err := Seed(rootfs, vd, []api.Mount{{Type: api.MountVolume, Source: "evil", Target: "/var/lib/db"}}, 1<<20)
	if err == nil || !strings.Contains(err.Error(), "type=volume,source=evil") {
		t.Fatalf("seed through a linked volume dir: %v", err)
	}
	if names, _ := os.ReadDir(target); len(names) != 0 {
		t.Fatalf("the link's target got files: %v", names)
	}
}

// hardLinkedImage makes a rootfs whose /var/lib/app holds one file of
// size bytes under links names (f0, f1, …), as one tar entry and links-1
// hard-link headers of an image layer unpack.
func hardLinkedImage(t *testing.T, size, links int) string {
	t.Helper()
	rootfs := t.TempDir()
	dir := filepath.Join(rootfs, "var", "lib", "app")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f0"), make([]byte, size), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "f0"), 7, 8); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < links; i++ {
		at := filepath.Join(dir, fmt.Sprintf("f%d", i))
		if i%2 == 0 {
			at = filepath.Join(dir, "sub", fmt.Sprintf("f%d", i)) // across directories too
		}
		if err := os.Link(filepath.Join(dir, "f0"), at); err != nil {
			t.Fatal(err)
		}
	}
	return rootfs
}

// TestSeedKeepsHardLinks: the names of one file in the image are names of
// one file in the volume: the copy costs the file's size once, not once
// per name (an image of a big file with many links filled the disk).
func TestSeedKeepsHardLinks(t *testing.T) {
	const size, links = 1 << 20, 50
	rootfs := hardLinkedImage(t, size, links)
	_, vd := seedFixture(t, "app")
	// A budget of twice the file: enough for one copy, far from fifty.
	if err := Seed(rootfs, vd, []api.Mount{{Type: api.MountVolume, Source: "app", Target: "/var/lib/app"}}, 2*size); err != nil {
		t.Fatal(err)
	}
	data := ocispec.VolumePath(vd, "app")
	first, err := os.Stat(filepath.Join(data, "f0"))
	if err != nil {
		t.Fatal(err)
	}
	st := first.Sys().(*syscall.Stat_t)
	if first.Size() != size || st.Nlink != links || st.Uid != 7 || st.Gid != 8 || first.Mode().Perm() != 0o640 {
		t.Errorf("f0: size %d, %d links, owner %d:%d, mode %v; want %d, %d, 7:8, 0640", first.Size(), st.Nlink, st.Uid, st.Gid, first.Mode().Perm(), size, links)
	}
	for i := 1; i < links; i++ {
		p := filepath.Join(data, fmt.Sprintf("f%d", i))
		if i%2 == 0 {
			p = filepath.Join(data, "sub", fmt.Sprintf("f%d", i))
		}
		fi, err := os.Stat(p)
		if err != nil || !os.SameFile(first, fi) {
			t.Fatalf("%s: not a link to f0 (%v)", p, err)
		}
	}
}

// TestSeedBudget: a copy that would write more file content than its
// budget into a volume stops with ErrTooLarge, having written no more.
func TestSeedBudget(t *testing.T) {
	rootfs := t.TempDir()
	dir := filepath.Join(rootfs, "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(dir, n), make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, vd := seedFixture(t, "fits", "over")
	if err := Seed(rootfs, vd, []api.Mount{{Type: api.MountVolume, Source: "fits", Target: "/data"}}, 3000); err != nil {
		t.Fatalf("a copy of exactly the budget: %v", err)
	}
	err := Seed(rootfs, vd, []api.Mount{{Type: api.MountVolume, Source: "over", Target: "/data"}}, 2500)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "source=over") {
		t.Fatalf("a copy over the budget: %v, want ErrTooLarge naming the mount", err)
	}
	var total int64
	ents, _ := os.ReadDir(ocispec.VolumePath(vd, "over"))
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			total += fi.Size()
		}
	}
	if total > 2500 {
		t.Errorf("the volume got %d bytes, over the budget of 2500", total)
	}
}

// TestSeedLinkChecksTheCopy: a later name is linked to the first copy only
// while that path is the inode the copy made; a container sharing the
// volume that put a link or another file there gets nothing linked.
func TestSeedLinkChecksTheCopy(t *testing.T) {
	_, vd := seedFixture(t, "v")
	data := ocispec.VolumePath(vd, "v")
	root, err := unix.Open(data, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(root)
	if err := os.WriteFile(filepath.Join(data, "first"), []byte("image"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(data, "first"), &st); err != nil {
		t.Fatal(err)
	}
	c := &copier{dstRoot: root}
	first := firstCopy{path: "first", id: idOf(&st)}
	if err := c.link(first, root, "ok"); err != nil {
		t.Fatalf("link to the copy: %v", err)
	}
	host := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(host, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, swap := range []func() error{
		func() error { return os.WriteFile(filepath.Join(data, "first"), []byte("other"), 0o644) },
		func() error { return os.Symlink(host, filepath.Join(data, "first")) },
	} {
		if err := os.Remove(filepath.Join(data, "first")); err != nil {
			t.Fatal(err)
		}
		if err := swap(); err != nil {
			t.Fatal(err)
		}
		if err := c.link(first, root, "bad"); err == nil {
			b, _ := os.ReadFile(filepath.Join(data, "bad"))
			t.Fatalf("linked what replaced the copy: %q", b)
		}
	}
}
