package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// treeOf lists the tree at dir: each path below it with its type and, for
// a file, its content, for a link its target.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.IsDir():
			out[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			out[rel] = "link " + l
			return err
		default:
			b, err := os.ReadFile(p)
			out[rel] = "file " + string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("the volume holds %d entries, the image %d:\n%v\nwant\n%v", len(got), len(want), got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: volume has %q, image %q", k, got[k], v)
		}
	}
}

func markerOf(vd, name string) string { return filepath.Join(vd, name, seedingMarker) }

// TestSeedRedoesInterruptedCopy: a copy-up that stops midway (here the
// byte budget; on a node a full disk, an I/O error, the agent killed) is
// emptied and done again by the next start, which gets the whole image's
// content; before, the next start found the volume non-empty, skipped the
// copy and ran the container on the partial copy. (Fault audit s12.)
func TestSeedRedoesInterruptedCopy(t *testing.T) {
	rootfs, vd := seedFixture(t, "db")
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(rootfs, "var/lib/db", fmt.Sprintf("f%02d", i)), []byte("0123456789"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ms := []api.Mount{{Type: api.MountVolume, Source: "db", Target: "/var/lib/db"}}
	if err := Seed(rootfs, vd, ms, 200); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("the first copy-up: %v, want ErrTooLarge", err)
	}
	if got := treeOf(t, ocispec.VolumePath(vd, "db")); len(got) == 0 {
		t.Fatal("the interrupted copy left nothing: the test proves nothing")
	}
	if err := Seed(rootfs, vd, ms, 1<<20); err != nil {
		t.Fatal(err)
	}
	sameTree(t, treeOf(t, ocispec.VolumePath(vd, "db")), treeOf(t, filepath.Join(rootfs, "var/lib/db")))
	if _, err := os.Lstat(markerOf(vd, "db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the marker outlived a complete copy: %v", err)
	}
}

// TestSeedInterruptedLeftovers: what a volume holds when a start finds the
// marker of a copy that never completed (the agent killed midway, say) is
// removed whatever it is (deep dirs, a link out, which is not followed)
// and the copy is done again, or the volume left empty if the image has
// nothing there now; without the marker, a volume with content is never
// touched, and a complete copy that a container then wrote to is kept.
func TestSeedInterruptedLeftovers(t *testing.T) {
	rootfs, vd := seedFixture(t, "killed", "gone", "old", "done")
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.WriteFile(outside, []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	leave := func(name string) {
		t.Helper()
		d := ocispec.VolumePath(vd, name)
		deep := filepath.Join(d, strings.Repeat("d/", 40))
		if err := os.MkdirAll(deep, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "init.sql"), []byte("CREATE"), 0o644); err != nil { // torn
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(deep, "out")); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"killed", "gone", "old"} {
		leave(n)
	}
	for _, n := range []string{"killed", "gone"} {
		if err := os.WriteFile(markerOf(vd, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ms := []api.Mount{
		{Type: api.MountVolume, Source: "killed", Target: "/var/lib/db"},
		{Type: api.MountVolume, Source: "gone", Target: "/not/in/image"},
		{Type: api.MountVolume, Source: "old", Target: "/var/lib/db"}, // no marker: as it is
		{Type: api.MountVolume, Source: "done", Target: "/var/lib/db"},
	}
	if err := Seed(rootfs, vd, ms, 1<<20); err != nil {
		t.Fatal(err)
	}
	image := treeOf(t, filepath.Join(rootfs, "var/lib/db"))
	sameTree(t, treeOf(t, ocispec.VolumePath(vd, "killed")), image)
	sameTree(t, treeOf(t, ocispec.VolumePath(vd, "gone")), map[string]string{})
	if got := treeOf(t, ocispec.VolumePath(vd, "old")); got["init.sql"] != "file CREATE" || len(got) != 42 {
		t.Fatalf("a volume without the marker was touched: %v", got)
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "host file" {
		t.Fatalf("the link out was followed: %q %v", b, err)
	}
	for _, n := range []string{"killed", "gone", "old", "done"} {
		if _, err := os.Lstat(markerOf(vd, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: marker left: %v", n, err)
		}
	}
	// A container wrote to the volume whose copy completed: the next
	// start keeps what it wrote.
	mine := filepath.Join(ocispec.VolumePath(vd, "done"), "mine")
	if err := os.WriteFile(mine, []byte("task data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(ocispec.VolumePath(vd, "done"), "init.sql")); err != nil {
		t.Fatal(err)
	}
	if err := Seed(rootfs, vd, ms[3:], 1<<20); err != nil {
		t.Fatal(err)
	}
	got := treeOf(t, ocispec.VolumePath(vd, "done"))
	if got["mine"] != "file task data" || got["init.sql"] != "" {
		t.Fatalf("a complete copy a container wrote to was touched: %v", got)
	}
}
