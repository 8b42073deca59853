package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/api"
)

func TestBuildSpecMounts(t *testing.T) {
	tests := []struct {
		name    string
		mounts  []api.Mount
		want    []specs.Mount // the user mounts, after the standard ones
		wantErr string
	}{
		{
			name:   "volume is an rbind of the node's volume dir",
			mounts: []api.Mount{{Type: api.MountVolume, Source: "data", Target: "/data"}},
			want: []specs.Mount{{Destination: "/data", Type: "bind", Source: "/vols/data/_data",
				Options: []string{"rbind", "rprivate"}}},
		},
		{
			name:   "bind readonly",
			mounts: []api.Mount{{Type: api.MountBind, Source: "/srv/www", Target: "/www", ReadOnly: true}},
			want: []specs.Mount{{Destination: "/www", Type: "bind", Source: "/srv/www",
				Options: []string{"rbind", "rprivate", "ro"}}},
		},
		{
			name:   "tmpfs default mode, no size",
			mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/scratch"}},
			want: []specs.Mount{{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs",
				Options: []string{"noexec", "nosuid", "nodev", "rprivate", "mode=1777"}}},
		},
		{
			name:   "tmpfs size and mode, readonly",
			mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/t", TmpfsSize: 1 << 20, TmpfsMode: 0o700, ReadOnly: true}},
			want: []specs.Mount{{Destination: "/t", Type: "tmpfs", Source: "tmpfs",
				Options: []string{"noexec", "nosuid", "nodev", "rprivate", "mode=700", "size=1048576", "ro"}}},
		},
		{
			name: "order is kept",
			mounts: []api.Mount{
				{Type: api.MountTmpfs, Target: "/b"},
				{Type: api.MountVolume, Source: "v", Target: "/a"},
			},
			want: []specs.Mount{
				{Destination: "/b", Type: "tmpfs", Source: "tmpfs", Options: []string{"noexec", "nosuid", "nodev", "rprivate", "mode=1777"}},
				{Destination: "/a", Type: "bind", Source: "/vols/v/_data", Options: []string{"rbind", "rprivate"}},
			},
		},
		{name: "relative bind source", mounts: []api.Mount{{Type: api.MountBind, Source: "www", Target: "/www"}}, wantErr: "must be an absolute path"},
		{name: "target on the init", mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/.shoal/init"}}, wantErr: "/.shoal is reserved"},
		{name: "target in /proc", mounts: []api.Mount{{Type: api.MountBind, Source: "/x", Target: "/proc/1"}}, wantErr: "/proc is reserved"},
		{name: "volume name escaping", mounts: []api.Mount{{Type: api.MountVolume, Source: "../../etc", Target: "/x"}}, wantErr: "volume name"},
		{name: "two on one target", mounts: []api.Mount{{Type: api.MountTmpfs, Target: "/x"}, {Type: api.MountTmpfs, Target: "/x"}}, wantErr: "already used"},
	}
	nStd := len(defaultMounts(baseInput()))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput()
			in.Mounts = tc.mounts
			in.VolumesDir = "/vols"
			s, err := BuildSpec(in)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidSpec with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Mounts[nStd:]; !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("user mounts = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// fakeVolRuntime is a Runtime with just enough for the volume methods.
func fakeVolRuntime(t *testing.T) *Runtime {
	t.Helper()
	vols, err := newVolumeStore(filepath.Join(t.TempDir(), "volumes"))
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
	if v.Mountpoint != filepath.Join(r.vols.dir, "data", "_data") || v.InUse {
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
	r.containers["c1"] = &container{rec: record{ID: "c1", Spec: Spec{Mounts: []api.Mount{{Type: api.MountVolume, Source: "data", Target: "/d"}}}}}
	if err := r.RemoveVolume("data"); !errors.Is(err, ErrVolumeInUse) || !strings.Contains(err.Error(), "c1") {
		t.Fatalf("remove in use: %v", err)
	}
	if v, _ := r.Volume("data"); !v.InUse || !reflect.DeepEqual(v.Containers, []string{"c1"}) {
		t.Fatalf("in use: %+v", v)
	}
	delete(r.containers, "c1")

	// A container being created counts too.
	release, err := r.prepareMounts([]api.Mount{{Type: api.MountVolume, Source: "data", Target: "/d"}})
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
	if ents, _ := os.ReadDir(r.vols.dir); len(ents) != 0 {
		t.Fatalf("volumes dir not empty: %v", ents)
	}
}

// TestVolumeNameIsNotFollowed: a link planted where a volume dir would be
// (not possible for containers, but cheap to refuse) is not used.
func TestVolumeNameIsNotFollowed(t *testing.T) {
	r := fakeVolRuntime(t)
	if err := os.Symlink(t.TempDir(), filepath.Join(r.vols.dir, "evil")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateVolume("evil"); err == nil {
		t.Fatal("created a volume through a symlink")
	}
	if _, err := r.prepareMounts([]api.Mount{{Type: api.MountVolume, Source: "evil", Target: "/x"}}); err == nil ||
		!strings.Contains(err.Error(), "type=volume,source=evil,target=/x") {
		t.Fatalf("prepareMounts through a symlink: %v", err)
	}
	if r.vols.pending["evil"] != 0 {
		t.Fatal("pending count leaked")
	}
}

func TestPrepareMountsBindSource(t *testing.T) {
	r := fakeVolRuntime(t)
	_, err := r.prepareMounts([]api.Mount{{Type: api.MountBind, Source: "/nonexistent/shoal-src", Target: "/x"}})
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "bind source /nonexistent/shoal-src does not exist") ||
		!strings.Contains(err.Error(), "target=/x") {
		t.Fatalf("missing bind source: %v", err)
	}
	release, err := r.prepareMounts([]api.Mount{{Type: api.MountBind, Source: t.TempDir(), Target: "/x"}, {Type: api.MountTmpfs, Target: "/t"}})
	if err != nil {
		t.Fatal(err)
	}
	release()
}
