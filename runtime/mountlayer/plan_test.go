package mountlayer

import (
	"reflect"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// specMounts is the mount list of a container as prepare builds it.
func specMounts(t *testing.T, edit func(*ocispec.SpecInput)) []specs.Mount {
	t.Helper()
	in := ocispec.SpecInput{
		InitBinary:     "/usr/lib/shoal/shoal-init",
		HostsPath:      "/d/hosts",
		HostnamePath:   "/d/hostname",
		ResolvConfPath: "/d/resolv.conf",
		VolumesDir:     "/vols",
	}
	if edit != nil {
		edit(&in)
	}
	ms, err := ocispec.Mounts(in)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

var stdWant = []Mountpoint{
	{"/proc", true}, {"/dev", true}, {"/sys", true},
	{"/etc/hosts", false}, {"/etc/hostname", false}, {"/etc/resolv.conf", false}, {ocispec.InitPath, false},
}

func TestWantedMountpoints(t *testing.T) {
	tests := []struct {
		name string
		edit func(*ocispec.SpecInput)
		want []Mountpoint
	}{
		{name: "standard mounts", want: stdWant},
		{name: "no /etc files", edit: func(in *ocispec.SpecInput) { in.HostsPath, in.HostnamePath, in.ResolvConfPath = "", "", "" },
			want: []Mountpoint{{"/proc", true}, {"/dev", true}, {"/sys", true}, {ocispec.InitPath, false}}},
		{name: "a tmpfs over /etc hides the /etc files", edit: func(in *ocispec.SpecInput) {
			in.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "/etc"}}
		}, want: []Mountpoint{{"/proc", true}, {"/dev", true}, {"/sys", true}, {ocispec.InitPath, false}}},
		{name: "a volume over /etc", edit: func(in *ocispec.SpecInput) {
			in.Mounts = []api.Mount{{Type: api.MountVolume, Source: "conf", Target: "/etc"}}
		}, want: []Mountpoint{{"/proc", true}, {"/dev", true}, {"/sys", true}, {ocispec.InitPath, false}}},
		{name: "a file at /etc/hosts after the standard one", edit: func(in *ocispec.SpecInput) {
			in.Files = []ocispec.FileMount{{Source: "/run/f/0", Target: "/etc/hosts"}}
		}, want: []Mountpoint{{"/proc", true}, {"/dev", true}, {"/sys", true}, {"/etc/hostname", false}, {"/etc/resolv.conf", false}, {ocispec.InitPath, false}}},
		{name: "the init's seccomp program", edit: func(in *ocispec.SpecInput) { in.SeccompProgram = "/var/lib/shoal/runtime/seccomp/k.bpf" },
			want: append(slices.Clone(stdWant), Mountpoint{ocispec.SeccompPath, false})},
		{name: "user mounts elsewhere change nothing", edit: func(in *ocispec.SpecInput) {
			in.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "/run"}, {Type: api.MountBind, Source: "/srv", Target: "/etc/app"}}
			in.Files = []ocispec.FileMount{{Source: "/run/f/0", Target: "/run/secrets/a"}}
		}, want: stdWant},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Wanted(specMounts(t, tc.edit))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
	// Mounts under an earlier mount (/dev/pts in /dev's tmpfs) and unknown
	// types are never in the layer; neither is a known path mounted as an
	// unexpected type.
	got := Wanted([]specs.Mount{
		{Destination: "/dev", Type: "tmpfs"},
		{Destination: "/dev/pts", Type: "devpts"},
		{Destination: "/proc", Type: "bind"},
		{Destination: "/etc/hosts", Type: "tmpfs"},
		{Destination: "/data", Type: "tmpfs"},
		{Destination: "/etc/../etc/hostname", Type: "bind"},
	})
	if want := []Mountpoint{{"/dev", true}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

var (
	dir755  = ImageEntry{Kind: KindDir, Mode: 0o755}
	file644 = ImageEntry{Kind: KindFile, Mode: 0o644}
	symlink = ImageEntry{Kind: KindOther, Mode: 0o777}
)

// The layer's entries for a busybox-like image: /proc, /dev, /sys and /etc
// there, none of the /etc files.
var busyboxLayer = []Entry{
	{Path: "/.shoal", Dir: true, Mode: 0o755},
	{Path: "/.shoal/init", Mode: 0o644},
	{Path: "/etc", Dir: true, Mode: 0o755},
	{Path: "/etc/hostname", Mode: 0o644},
	{Path: "/etc/hosts", Mode: 0o644},
	{Path: "/etc/resolv.conf", Mode: 0o644},
}

func TestPlanMountLayer(t *testing.T) {
	base := map[string]ImageEntry{"/proc": dir755, "/dev": dir755, "/sys": dir755, "/etc": dir755, "/etc/passwd": file644}
	with := func(m map[string]ImageEntry) map[string]ImageEntry {
		out := map[string]ImageEntry{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range m {
			if v.Kind == KindAbsent {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	gone := ImageEntry{Kind: KindAbsent}
	tests := []struct {
		name  string
		image map[string]ImageEntry // the merged view; a missing path is absent
		want  []Entry
	}{
		{name: "busybox-like", image: base, want: busyboxLayer},
		{
			// The view of a whiteout or of a path under an opaque dir
			// that lacks it is "absent" (View; TestImageView).
			name:  "/etc/hosts whited out",
			image: with(map[string]ImageEntry{"/etc/hostname": file644, "/etc/resolv.conf": file644}),
			want: []Entry{
				{Path: "/.shoal", Dir: true, Mode: 0o755},
				{Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o755},
				{Path: "/etc/hosts", Mode: 0o644},
			},
		},
		{
			name:  "/etc a symlink: runc resolves the /etc files as before",
			image: with(map[string]ImageEntry{"/etc": symlink, "/etc/passwd": gone}),
			want:  []Entry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644}},
		},
		{
			name:  "/etc a regular file",
			image: with(map[string]ImageEntry{"/etc": file644, "/etc/passwd": gone}),
			want:  []Entry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644}},
		},
		{
			name:  "/etc absent: a new 0755 root dir",
			image: with(map[string]ImageEntry{"/etc": gone, "/etc/passwd": gone}),
			want:  busyboxLayer,
		},
		{
			name:  "/etc 0700 owned by 1000: the layer's /etc keeps it",
			image: with(map[string]ImageEntry{"/etc": {Kind: KindDir, Mode: 0o700, UID: 1000, GID: 1000}}),
			want: []Entry{
				{Path: "/.shoal", Dir: true, Mode: 0o755},
				{Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o700, UID: 1000, GID: 1000},
				{Path: "/etc/hostname", Mode: 0o644},
				{Path: "/etc/hosts", Mode: 0o644},
				{Path: "/etc/resolv.conf", Mode: 0o644},
			},
		},
		{
			name:  "setgid and sticky bits kept",
			image: with(map[string]ImageEntry{"/etc": {Kind: KindDir, Mode: 0o3775, GID: 50}}),
			want: []Entry{
				{Path: "/.shoal", Dir: true, Mode: 0o755},
				{Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o3775, GID: 50},
				{Path: "/etc/hostname", Mode: 0o644},
				{Path: "/etc/hosts", Mode: 0o644},
				{Path: "/etc/resolv.conf", Mode: 0o644},
			},
		},
		{
			name:  "init path: /.shoal in the image keeps its attributes",
			image: with(map[string]ImageEntry{"/.shoal": {Kind: KindDir, Mode: 0o711, UID: 7}, "/etc/hosts": file644, "/etc/hostname": file644, "/etc/resolv.conf": file644}),
			want:  []Entry{{Path: "/.shoal", Dir: true, Mode: 0o711, UID: 7}, {Path: "/.shoal/init", Mode: 0o644}},
		},
		{
			name:  "init path: /.shoal a symlink",
			image: with(map[string]ImageEntry{"/.shoal": symlink, "/etc/hosts": file644, "/etc/hostname": file644, "/etc/resolv.conf": file644}),
			want:  []Entry{},
		},
		{
			name:  "init path: /.shoal/init already a file",
			image: with(map[string]ImageEntry{"/.shoal": dir755, "/.shoal/init": file644, "/etc/hosts": file644, "/etc/hostname": file644, "/etc/resolv.conf": file644}),
			want:  []Entry{},
		},
		{
			name: "nothing needed: no layer",
			image: with(map[string]ImageEntry{"/etc/hosts": file644, "/etc/hostname": file644, "/etc/resolv.conf": file644,
				"/.shoal": dir755, "/.shoal/init": file644}),
			want: []Entry{},
		},
		{
			name: "a destination of another type in the image is left to runc",
			image: with(map[string]ImageEntry{"/etc/hosts": dir755, "/etc/hostname": symlink, "/etc/resolv.conf": symlink,
				"/proc": file644, "/.shoal": dir755, "/.shoal/init": {Kind: KindOther}}),
			want: []Entry{},
		},
		{
			name:  "/proc, /dev, /sys absent",
			image: with(map[string]ImageEntry{"/proc": gone, "/dev": gone, "/sys": gone}),
			want: []Entry{
				{Path: "/.shoal", Dir: true, Mode: 0o755},
				{Path: "/.shoal/init", Mode: 0o644},
				{Path: "/dev", Dir: true, Mode: 0o755},
				{Path: "/etc", Dir: true, Mode: 0o755},
				{Path: "/etc/hostname", Mode: 0o644},
				{Path: "/etc/hosts", Mode: 0o644},
				{Path: "/etc/resolv.conf", Mode: 0o644},
				{Path: "/proc", Dir: true, Mode: 0o755},
				{Path: "/sys", Dir: true, Mode: 0o755},
			},
		},
		{
			name:  "unreadable /etc (KindOther) is left out",
			image: with(map[string]ImageEntry{"/etc": {Kind: KindOther}, "/etc/passwd": gone}),
			want:  []Entry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan(stdWant, func(p string) ImageEntry { return tc.image[p] })
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func slicesClone(s []Entry) []Entry { return append([]Entry(nil), s...) }

func TestMountLayerKey(t *testing.T) {
	k := Key(busyboxLayer)
	if !IsKey(k) || k != Key(slicesClone(busyboxLayer)) {
		t.Fatalf("key %q not stable", k)
	}
	other := slicesClone(busyboxLayer)
	other[2].Mode = 0o700
	if Key(other) == k {
		t.Fatal("a different mode gives the same key")
	}
	other = slicesClone(busyboxLayer)
	other[2].UID = 1
	if Key(other) == k {
		t.Fatal("a different owner gives the same key")
	}
	if Key(busyboxLayer[:5]) == k {
		t.Fatal("fewer entries give the same key")
	}
	for _, bad := range []string{"", ".tmp-1", "ABCDEF0123456789abcdef0123456789", k + "0"} {
		if IsKey(bad) {
			t.Errorf("IsKey(%q)", bad)
		}
	}
}
