package ocispec

import (
	"errors"
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
		want    []specs.Mount // the user mounts, in the spec's order
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
	std := map[string]bool{}
	for _, m := range defaultMounts(baseInput()) {
		std[m.Destination] = true
	}
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
			var got []specs.Mount
			for _, m := range s.Mounts {
				if !std[m.Destination] {
					got = append(got, m)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("user mounts = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestBuildSpecMountsParentsFirst: a mount goes after every mount of a
// directory above it, as docker orders them (runc mounts in order). A
// volume at /etc listed after /etc/hosts hid the file, and one at /run hid
// the secrets under /run/secrets.
func TestBuildSpecMountsParentsFirst(t *testing.T) {
	in := baseInput()
	in.VolumesDir = "/vols"
	in.HostsPath, in.ResolvConfPath = "/b/hosts", "/b/resolv.conf"
	in.Mounts = []api.Mount{
		{Type: api.MountVolume, Source: "etc", Target: "/etc"},
		{Type: api.MountTmpfs, Target: "/run"},
		{Type: api.MountVolume, Source: "deep", Target: "/srv/a/b"},
		{Type: api.MountTmpfs, Target: "/srv"},
	}
	in.Files = []FileMount{{Source: "/f/pw", Target: "/run/secrets/pw"}}
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]int{}
	for i, m := range s.Mounts {
		at[m.Destination] = i
	}
	for _, pair := range [][2]string{
		{"/etc", "/etc/hosts"}, {"/etc", "/etc/resolv.conf"}, {"/run", "/run/secrets/pw"},
		{"/srv", "/srv/a/b"}, {"/dev", "/dev/pts"}, {"/sys", "/sys/fs/cgroup"},
	} {
		parent, okP := at[pair[0]]
		child, okC := at[pair[1]]
		if !okP || !okC || parent > child {
			t.Errorf("%s at %d (%v), %s at %d (%v): want the parent first", pair[0], parent, okP, pair[1], child, okC)
		}
	}
	if at["/etc"] > at["/run"] {
		t.Errorf("mounts of one depth reordered: /etc at %d, /run at %d", at["/etc"], at["/run"])
	}
}

func TestBuildSpecFileMounts(t *testing.T) {
	s, err := BuildSpec(SpecInput{RootfsPath: "rootfs", Args: []string{"sh"}, InitBinary: "/bin/tini",
		Files: []FileMount{{Source: "/run/x/f0", Target: "/run/secrets/a"}}})
	if err != nil {
		t.Fatal(err)
	}
	m := s.Mounts[len(s.Mounts)-1]
	if m.Destination != "/run/secrets/a" || m.Source != "/run/x/f0" || m.Type != "bind" || !strings.Contains(strings.Join(m.Options, ","), "ro") {
		t.Fatalf("file mount %+v", m)
	}
}

// TestMountsIsTheSpecsList: Mounts gives the list BuildSpec puts in the
// spec, from the mount fields alone.
func TestMountsIsTheSpecsList(t *testing.T) {
	in := baseInput()
	in.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "/run"}}
	in.Files = []FileMount{{Source: "/run/x/f0", Target: "/run/secrets/a"}}
	in.VolumesDir = "/vols"
	s, err := BuildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := Mounts(SpecInput{InitBinary: in.InitBinary, HostsPath: in.HostsPath, HostnamePath: in.HostnamePath,
		ResolvConfPath: in.ResolvConfPath, Mounts: in.Mounts, Files: in.Files, VolumesDir: in.VolumesDir})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ms, s.Mounts) {
		t.Fatalf("Mounts = %+v\nspec   %+v", ms, s.Mounts)
	}
}
