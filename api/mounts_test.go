package api

import (
	"strings"
	"testing"
)

func TestMountProblem(t *testing.T) {
	cases := []struct {
		name string
		m    Mount
		want string // substring of the problem; "" = valid
	}{
		{"volume", Mount{Type: MountVolume, Source: "data", Target: "/data"}, ""},
		{"volume readonly", Mount{Type: MountVolume, Source: "db_data.1", Target: "/var/lib/db", ReadOnly: true}, ""},
		{"bind", Mount{Type: MountBind, Source: "/srv/www", Target: "/usr/share/www"}, ""},
		{"tmpfs", Mount{Type: MountTmpfs, Target: "/run", TmpfsSize: 1 << 20, TmpfsMode: 0o700}, ""},
		{"no type", Mount{Source: "x", Target: "/x"}, "type missing"},
		{"bad type", Mount{Type: "npipe", Target: "/x"}, `type "npipe"`},
		{"no target", Mount{Type: MountVolume, Source: "x"}, "target missing"},
		{"relative target", Mount{Type: MountVolume, Source: "x", Target: "data"}, "must be an absolute path"},
		{"unclean target", Mount{Type: MountVolume, Source: "x", Target: "/data/../etc"}, "clean path (/etc)"},
		{"root target", Mount{Type: MountTmpfs, Target: "/"}, "root"},
		{"shoal target", Mount{Type: MountTmpfs, Target: "/.shoal"}, "/.shoal is reserved"},
		{"under shoal", Mount{Type: MountBind, Source: "/tmp", Target: "/.shoal/state"}, "/.shoal is reserved"},
		{"proc", Mount{Type: MountBind, Source: "/tmp", Target: "/proc"}, "/proc is reserved"},
		{"sys below", Mount{Type: MountBind, Source: "/tmp", Target: "/sys/fs/cgroup"}, "/sys is reserved"},
		{"dev below", Mount{Type: MountTmpfs, Target: "/dev/shm"}, "/dev is reserved"},
		{"devices is fine", Mount{Type: MountTmpfs, Target: "/devices"}, ""},
		{"anonymous volume", Mount{Type: MountVolume, Target: "/data"}, "anonymous volumes are not supported"},
		{"volume name slash", Mount{Type: MountVolume, Source: "a/b", Target: "/data"}, `character '/'`},
		{"volume name dotdot", Mount{Type: MountVolume, Source: "..", Target: "/data"}, "must start with a letter or digit"},
		{"bind relative", Mount{Type: MountBind, Source: "srv", Target: "/srv"}, "must be an absolute path"},
		{"bind unclean", Mount{Type: MountBind, Source: "/srv/", Target: "/srv"}, "clean path"},
		{"bind no source", Mount{Type: MountBind, Target: "/srv"}, "needs a source"},
		{"tmpfs source", Mount{Type: MountTmpfs, Source: "x", Target: "/t"}, "takes no source"},
		{"tmpfs negative", Mount{Type: MountTmpfs, Target: "/t", TmpfsSize: -1}, "must not be negative"},
		{"tmpfs mode", Mount{Type: MountTmpfs, Target: "/t", TmpfsMode: 0o17777}, "not a file mode"},
		{"size on bind", Mount{Type: MountBind, Source: "/x", Target: "/t", TmpfsSize: 5}, "tmpfs mounts only"},
		{"NUL", Mount{Type: MountBind, Source: "/x\x00", Target: "/t"}, "NUL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := MountProblem(c.m)
			if c.want == "" && got != "" {
				t.Fatalf("MountProblem(%+v) = %q, want valid", c.m, got)
			}
			if c.want != "" && !strings.Contains(got, c.want) {
				t.Fatalf("MountProblem(%+v) = %q, want it to contain %q", c.m, got, c.want)
			}
		})
	}
}

func TestMountsProblemsDuplicateTarget(t *testing.T) {
	ms := []Mount{
		{Type: MountVolume, Source: "a", Target: "/data"},
		{Type: MountTmpfs, Target: "/data"},
		{Type: MountBind, Source: "rel", Target: "/x"},
	}
	got := MountsProblems(ms)
	if len(got) != 2 || !strings.Contains(got[0], "mounts[1]: target /data already used by mounts[0]") ||
		!strings.Contains(got[1], "mounts[2]: bind source") {
		t.Fatalf("MountsProblems = %q", got)
	}
	if p := MountsProblems(ms[:1]); p != nil {
		t.Fatalf("one valid mount: %q", p)
	}
}

func TestVolumeNameProblem(t *testing.T) {
	for name, ok := range map[string]bool{
		"data": true, "shop_db-data.1": true, "9": true,
		"": false, "-x": false, ".x": false, "_x": false, "a b": false, "a/b": false,
		strings.Repeat("a", MaxVolumeNameLen+1): false,
	} {
		if got := VolumeNameProblem(name) == ""; got != ok {
			t.Errorf("VolumeNameProblem(%q) valid = %v, want %v", name, got, ok)
		}
	}
}
