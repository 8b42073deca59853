package volume

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if err := Seed(rootfs, vd, ms); err != nil {
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
	if err := Seed(rootfs, vd, ms[:1]); err != nil {
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
	err := Seed(rootfs, vd, []api.Mount{{Type: api.MountVolume, Source: "evil", Target: "/var/lib/db"}})
	if err == nil || !strings.Contains(err.Error(), "type=volume,source=evil") {
		t.Fatalf("seed through a linked volume dir: %v", err)
	}
	if names, _ := os.ReadDir(target); len(names) != 0 {
		t.Fatalf("the link's target got files: %v", names)
	}
}
