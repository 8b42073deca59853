package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/image/unpack"
	"github.com/shoal-org/shoal/runtime/record"
	"github.com/shoal-org/shoal/runtime/volume"
)

// fakeVolRuntime is a Runtime with just enough for the volume methods.
func fakeVolRuntime(t *testing.T) *Runtime {
	t.Helper()
	vols, err := volume.New(filepath.Join(t.TempDir(), "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	return &Runtime{vols: vols, containers: map[string]*container{}, names: map[string]string{}}
}

func TestVolumeLifecycle(t *testing.T) {
	r := fakeVolRuntime(t)
	if _, err := r.Volume("data"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("missing volume: %v", err)
	}
	v, err := r.CreateVolume("data")
	if err != nil {
		t.Fatal(err)
	}
	if v.Mountpoint != filepath.Join(r.vols.Dir, "data", "_data") || v.InUse {
		t.Fatalf("created %+v", v)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("mountpoint: %v %v", fi, err)
	}
	if err := os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateVolume("data"); err != nil { // idempotent, keeps data
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(v.Mountpoint, "f")); err != nil {
		t.Fatalf("create again lost data: %v", err)
	}
	if _, err := r.CreateVolume("../x"); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("bad name: %v", err)
	}

	// A container that mounts it (running or not) keeps it.
	r.containers["c1"] = &container{rec: record.Record{ID: "c1", Spec: Spec{Mounts: []api.Mount{{Type: api.MountVolume, Source: "data", Target: "/d"}}}}}
	if err := r.RemoveVolume("data"); !errors.Is(err, ErrVolumeInUse) || !strings.Contains(err.Error(), "c1") {
		t.Fatalf("remove in use: %v", err)
	}
	if v, _ := r.Volume("data"); !v.InUse || !reflect.DeepEqual(v.Containers, []string{"c1"}) {
		t.Fatalf("in use: %+v", v)
	}
	delete(r.containers, "c1")

	// A container being created counts too.
	release, err := r.vols.Prepare([]api.Mount{{Type: api.MountVolume, Source: "data", Target: "/d"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveVolume("data"); !errors.Is(err, ErrVolumeInUse) {
		t.Fatalf("remove while pending: %v", err)
	}
	release()

	if err := r.RemoveVolume("data"); err != nil {
		t.Fatal(err)
	}
	if list, err := r.Volumes(); err != nil || len(list) != 0 {
		t.Fatalf("after rm: %+v %v", list, err)
	}
	if err := r.RemoveVolume("data"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("rm twice: %v", err)
	}
}

// TestVolumeRemoveFollowsNoLinks: what a container leaves in its volume
// (links to host paths) is unlinked, never followed.
func TestVolumeRemoveFollowsNoLinks(t *testing.T) {
	r := fakeVolRuntime(t)
	outside := t.TempDir()
	keep := filepath.Join(outside, "keep")
	if err := os.WriteFile(keep, []byte("host file"), 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := r.CreateVolume("v")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(v.Mountpoint, "dirlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(keep, filepath.Join(v.Mountpoint, "filelink")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(v.Mountpoint, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(v.Mountpoint, "a", "b", "deep")); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveVolume("v"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "host file" {
		t.Fatalf("host file after volume rm: %q %v", b, err)
	}
	if ents, _ := os.ReadDir(r.vols.Dir); len(ents) != 0 {
		t.Fatalf("volumes dir not empty: %v", ents)
	}
}

// TestVolumeNameIsNotFollowed: a link planted where a volume dir would be
// (not possible for containers, but cheap to refuse) is not used.
func TestVolumeNameIsNotFollowed(t *testing.T) {
	r := fakeVolRuntime(t)
	if err := os.Symlink(t.TempDir(), filepath.Join(r.vols.Dir, "evil")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateVolume("evil"); err == nil {
		t.Fatal("created a volume through a symlink")
	}
	if _, err := r.vols.Prepare([]api.Mount{{Type: api.MountVolume, Source: "evil", Target: "/x"}}); err == nil ||
		!strings.Contains(err.Error(), "type=volume,source=evil,target=/x") {
		t.Fatalf("Prepare through a symlink: %v", err)
	}
	if r.vols.Pending["evil"] != 0 {
		t.Fatal("pending count leaked")
	}
}

// TestSeedBudgetOfImage: a volume's copy-up may write what the image
// unpacked to; an image of unknown size, what an image store unpacks at
// most.
func TestSeedBudgetOfImage(t *testing.T) {
	if got := seedBudget(api.Image{Size: 12345}); got != 12345 {
		t.Errorf("budget of a 12345-byte image: %d", got)
	}
	if got, want := seedBudget(api.Image{}), unpack.DefaultLimits().MaxTotalSize; got != want {
		t.Errorf("budget of an image of unknown size: %d, want %d", got, want)
	}
}
