package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/image"
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

var stdWant = []mountpoint{
	{"/proc", true}, {"/dev", true}, {"/sys", true},
	{"/etc/hosts", false}, {"/etc/hostname", false}, {"/etc/resolv.conf", false}, {ocispec.InitPath, false},
}

func TestWantedMountpoints(t *testing.T) {
	tests := []struct {
		name string
		edit func(*ocispec.SpecInput)
		want []mountpoint
	}{
		{name: "standard mounts", want: stdWant},
		{name: "no /etc files", edit: func(in *ocispec.SpecInput) { in.HostsPath, in.HostnamePath, in.ResolvConfPath = "", "", "" },
			want: []mountpoint{{"/proc", true}, {"/dev", true}, {"/sys", true}, {ocispec.InitPath, false}}},
		{name: "a tmpfs over /etc hides the /etc files", edit: func(in *ocispec.SpecInput) {
			in.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "/etc"}}
		}, want: []mountpoint{{"/proc", true}, {"/dev", true}, {"/sys", true}, {ocispec.InitPath, false}}},
		{name: "a volume over /etc", edit: func(in *ocispec.SpecInput) {
			in.Mounts = []api.Mount{{Type: api.MountVolume, Source: "conf", Target: "/etc"}}
		}, want: []mountpoint{{"/proc", true}, {"/dev", true}, {"/sys", true}, {ocispec.InitPath, false}}},
		{name: "a file at /etc/hosts after the standard one", edit: func(in *ocispec.SpecInput) {
			in.Files = []ocispec.FileMount{{Source: "/run/f/0", Target: "/etc/hosts"}}
		}, want: []mountpoint{{"/proc", true}, {"/dev", true}, {"/sys", true}, {"/etc/hostname", false}, {"/etc/resolv.conf", false}, {ocispec.InitPath, false}}},
		{name: "user mounts elsewhere change nothing", edit: func(in *ocispec.SpecInput) {
			in.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "/run"}, {Type: api.MountBind, Source: "/srv", Target: "/etc/app"}}
			in.Files = []ocispec.FileMount{{Source: "/run/f/0", Target: "/run/secrets/a"}}
		}, want: stdWant},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := wantedMountpoints(specMounts(t, tc.edit))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
	// Mounts under an earlier mount (/dev/pts in /dev's tmpfs) and unknown
	// types are never in the layer; neither is a known path mounted as an
	// unexpected type.
	got := wantedMountpoints([]specs.Mount{
		{Destination: "/dev", Type: "tmpfs"},
		{Destination: "/dev/pts", Type: "devpts"},
		{Destination: "/proc", Type: "bind"},
		{Destination: "/etc/hosts", Type: "tmpfs"},
		{Destination: "/data", Type: "tmpfs"},
		{Destination: "/etc/../etc/hostname", Type: "bind"},
	})
	if want := []mountpoint{{"/dev", true}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

var (
	dir755  = imageEntry{Kind: kindDir, Mode: 0o755}
	file644 = imageEntry{Kind: kindFile, Mode: 0o644}
	symlink = imageEntry{Kind: kindOther, Mode: 0o777}
)

// The layer's entries for a busybox-like image: /proc, /dev, /sys and /etc
// there, none of the /etc files.
var busyboxLayer = []layerEntry{
	{Path: "/.shoal", Dir: true, Mode: 0o755},
	{Path: "/.shoal/init", Mode: 0o644},
	{Path: "/etc", Dir: true, Mode: 0o755},
	{Path: "/etc/hostname", Mode: 0o644},
	{Path: "/etc/hosts", Mode: 0o644},
	{Path: "/etc/resolv.conf", Mode: 0o644},
}

func TestPlanMountLayer(t *testing.T) {
	base := map[string]imageEntry{"/proc": dir755, "/dev": dir755, "/sys": dir755, "/etc": dir755, "/etc/passwd": file644}
	with := func(m map[string]imageEntry) map[string]imageEntry {
		out := map[string]imageEntry{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range m {
			if v.Kind == kindAbsent {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	gone := imageEntry{Kind: kindAbsent}
	tests := []struct {
		name  string
		image map[string]imageEntry // the merged view; a missing path is absent
		want  []layerEntry
	}{
		{name: "busybox-like", image: base, want: busyboxLayer},
		{
			// The view of a whiteout or of a path under an opaque dir
			// that lacks it is "absent" (imageView; TestImageView).
			name:  "/etc/hosts whited out",
			image: with(map[string]imageEntry{"/etc/hostname": file644, "/etc/resolv.conf": file644}),
			want: []layerEntry{
				{Path: "/.shoal", Dir: true, Mode: 0o755},
				{Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o755},
				{Path: "/etc/hosts", Mode: 0o644},
			},
		},
		{
			name:  "/etc a symlink: runc resolves the /etc files as before",
			image: with(map[string]imageEntry{"/etc": symlink, "/etc/passwd": gone}),
			want:  []layerEntry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644}},
		},
		{
			name:  "/etc a regular file",
			image: with(map[string]imageEntry{"/etc": file644, "/etc/passwd": gone}),
			want:  []layerEntry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644}},
		},
		{
			name:  "/etc absent: a new 0755 root dir",
			image: with(map[string]imageEntry{"/etc": gone, "/etc/passwd": gone}),
			want:  busyboxLayer,
		},
		{
			name:  "/etc 0700 owned by 1000: the layer's /etc keeps it",
			image: with(map[string]imageEntry{"/etc": {Kind: kindDir, Mode: 0o700, UID: 1000, GID: 1000}}),
			want: []layerEntry{
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
			image: with(map[string]imageEntry{"/etc": {Kind: kindDir, Mode: 0o3775, GID: 50}}),
			want: []layerEntry{
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
			image: with(map[string]imageEntry{"/.shoal": {Kind: kindDir, Mode: 0o711, UID: 7}, "/etc/hosts": file644, "/etc/hostname": file644, "/etc/resolv.conf": file644}),
			want:  []layerEntry{{Path: "/.shoal", Dir: true, Mode: 0o711, UID: 7}, {Path: "/.shoal/init", Mode: 0o644}},
		},
		{
			name:  "init path: /.shoal a symlink",
			image: with(map[string]imageEntry{"/.shoal": symlink, "/etc/hosts": file644, "/etc/hostname": file644, "/etc/resolv.conf": file644}),
			want:  []layerEntry{},
		},
		{
			name:  "init path: /.shoal/init already a file",
			image: with(map[string]imageEntry{"/.shoal": dir755, "/.shoal/init": file644, "/etc/hosts": file644, "/etc/hostname": file644, "/etc/resolv.conf": file644}),
			want:  []layerEntry{},
		},
		{
			name: "nothing needed: no layer",
			image: with(map[string]imageEntry{"/etc/hosts": file644, "/etc/hostname": file644, "/etc/resolv.conf": file644,
				"/.shoal": dir755, "/.shoal/init": file644}),
			want: []layerEntry{},
		},
		{
			name: "a destination of another type in the image is left to runc",
			image: with(map[string]imageEntry{"/etc/hosts": dir755, "/etc/hostname": symlink, "/etc/resolv.conf": symlink,
				"/proc": file644, "/.shoal": dir755, "/.shoal/init": {Kind: kindOther}}),
			want: []layerEntry{},
		},
		{
			name:  "/proc, /dev, /sys absent",
			image: with(map[string]imageEntry{"/proc": gone, "/dev": gone, "/sys": gone}),
			want: []layerEntry{
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
			name:  "unreadable /etc (kindOther) is left out",
			image: with(map[string]imageEntry{"/etc": {Kind: kindOther}, "/etc/passwd": gone}),
			want:  []layerEntry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := planMountLayer(stdWant, func(p string) imageEntry { return tc.image[p] })
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func slicesClone(s []layerEntry) []layerEntry { return append([]layerEntry(nil), s...) }

func TestMountLayerKey(t *testing.T) {
	k := mountLayerKey(busyboxLayer)
	if !isMountLayerKey(k) || k != mountLayerKey(slicesClone(busyboxLayer)) {
		t.Fatalf("key %q not stable", k)
	}
	other := slicesClone(busyboxLayer)
	other[2].Mode = 0o700
	if mountLayerKey(other) == k {
		t.Fatal("a different mode gives the same key")
	}
	other = slicesClone(busyboxLayer)
	other[2].UID = 1
	if mountLayerKey(other) == k {
		t.Fatal("a different owner gives the same key")
	}
	if mountLayerKey(busyboxLayer[:5]) == k {
		t.Fatal("fewer entries give the same key")
	}
	for _, bad := range []string{"", ".tmp-1", "ABCDEF0123456789abcdef0123456789", k + "0"} {
		if isMountLayerKey(bad) {
			t.Errorf("isMountLayerKey(%q)", bad)
		}
	}
}

// tarEntry is one entry of a test layer archive; names follow the tar
// conventions the image store unpacks (".wh.NAME", ".wh..wh..opq").
type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	link     string
}

// unpackLayers unpacks each list of entries as one layer with the image
// store's unpacker and returns the layer dirs, base first.
func unpackLayers(t *testing.T, layers ...[]tarEntry) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for i, ents := range layers {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range ents {
			h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Linkname: e.link}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		d := filepath.Join(dir, "l"+string(rune('0'+i)))
		if _, _, err := image.Unpack(context.Background(), &buf, d, image.Limits{}); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func needRootOnly(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (whiteouts, opaque marks and owners)")
	}
}

func tdir(name string, mode int64) tarEntry {
	return tarEntry{name: name, typ: tar.TypeDir, mode: mode}
}
func tfile(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeReg, mode: 0o644} }

// TestImageView: the merged view of layers as the image store unpacks them
// (whiteouts, opaque dirs, a symlink or file over a dir), and what the
// layer then holds.
func TestImageView(t *testing.T) {
	needRootOnly(t)
	baseLayer := []tarEntry{tdir("etc/", 0o755), tfile("etc/passwd"), tfile("etc/hosts"), tdir("proc/", 0o755), tdir("dev/", 0o755), tdir("sys/", 0o755)}
	tests := []struct {
		name   string
		layers [][]tarEntry
		look   map[string]fsKind
		want   []layerEntry
	}{
		{
			name:   "one layer with /etc/hosts",
			layers: [][]tarEntry{baseLayer},
			look:   map[string]fsKind{"/etc": kindDir, "/etc/hosts": kindFile, "/etc/hostname": kindAbsent, "/nope/x": kindAbsent},
			want: []layerEntry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o755}, {Path: "/etc/hostname", Mode: 0o644}, {Path: "/etc/resolv.conf", Mode: 0o644}},
		},
		{
			name:   "/etc/hosts whited out above",
			layers: [][]tarEntry{baseLayer, {tdir("etc/", 0o755), {name: "etc/.wh.hosts", typ: tar.TypeReg}}},
			look:   map[string]fsKind{"/etc/hosts": kindAbsent, "/etc/passwd": kindFile},
			want:   busyboxLayer,
		},
		{
			name: "/etc/hosts whited out then created again higher up",
			layers: [][]tarEntry{baseLayer, {tdir("etc/", 0o755), {name: "etc/.wh.hosts", typ: tar.TypeReg}},
				{tdir("etc/", 0o755), tfile("etc/hosts")}},
			look: map[string]fsKind{"/etc/hosts": kindFile},
		},
		{
			name:   "opaque /etc above hides the base files and its mode wins",
			layers: [][]tarEntry{baseLayer, {tdir("etc/", 0o750), {name: "etc/.wh..wh..opq", typ: tar.TypeReg}, tfile("etc/group")}},
			look:   map[string]fsKind{"/etc/hosts": kindAbsent, "/etc/passwd": kindAbsent, "/etc/group": kindFile},
			want: []layerEntry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o750}, {Path: "/etc/hostname", Mode: 0o644}, {Path: "/etc/hosts", Mode: 0o644},
				{Path: "/etc/resolv.conf", Mode: 0o644}},
		},
		{
			name: "an opaque dir in the middle stops the walk down",
			layers: [][]tarEntry{baseLayer, {tdir("etc/", 0o755), {name: "etc/.wh..wh..opq", typ: tar.TypeReg}},
				{tdir("etc/", 0o755), tfile("etc/group")}},
			look: map[string]fsKind{"/etc/hosts": kindAbsent, "/etc/passwd": kindAbsent, "/etc/group": kindFile},
		},
		{
			name:   "/etc a symlink above a dir",
			layers: [][]tarEntry{baseLayer, {{name: "etc", typ: tar.TypeSymlink, link: "/real-etc", mode: 0o777}, tdir("real-etc/", 0o755)}},
			look:   map[string]fsKind{"/etc": kindOther, "/etc/hosts": kindAbsent, "/etc/passwd": kindAbsent},
			want:   []layerEntry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644}},
		},
		{
			name:   "/etc whited out whole: a new root-owned /etc",
			layers: [][]tarEntry{{tdir("etc/", 0o700), tfile("etc/hosts"), tdir("proc/", 0o755), tdir("dev/", 0o755), tdir("sys/", 0o755)}, {{name: ".wh.etc", typ: tar.TypeReg}}},
			look:   map[string]fsKind{"/etc": kindAbsent, "/etc/hosts": kindAbsent},
			want:   busyboxLayer,
		},
		{
			name:   "/etc 0700 owned by 1000 in the top layer",
			layers: [][]tarEntry{baseLayer, {{name: "etc/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000}}},
			look:   map[string]fsKind{"/etc/passwd": kindFile, "/etc/hosts": kindFile},
			want: []layerEntry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o700, UID: 1000, GID: 1000}, {Path: "/etc/hostname", Mode: 0o644}, {Path: "/etc/resolv.conf", Mode: 0o644}},
		},
		{
			name:   "a file replaced by a dir higher up",
			layers: [][]tarEntry{{tfile("etc")}, {tdir("etc/", 0o755), tfile("etc/hostname")}},
			look:   map[string]fsKind{"/etc": kindDir, "/etc/hostname": kindFile},
		},
		{
			name: "everything there: no layer",
			layers: [][]tarEntry{append(slicesTar(baseLayer), tfile("etc/hostname"), tfile("etc/resolv.conf"),
				tdir(".shoal/", 0o755), tfile(".shoal/init"))},
			want: []layerEntry{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			layers := unpackLayers(t, tc.layers...)
			v := newImageView(layers)
			for p, want := range tc.look {
				if got := v.lookup(p).Kind; got != want {
					t.Errorf("lookup(%s) = %d, want %d", p, got, want)
				}
			}
			got := planMountLayer(stdWant, newImageView(layers).lookup)
			if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("layer\ngot  %+v\nwant %+v", got, tc.want)
			}
			checkAgainstOverlay(t, layers, v, got, tc.look)
		})
	}
}

// checkAgainstOverlay mounts the layers with overlayfs, without and with the
// planned mountpoints layer on top, and checks what the kernel shows: the
// view's answers are the kernel's, and the layer changes nothing the image
// has (type, mode, owner of every path looked at, of every entry and its
// ancestors, and the names in those directories) but adds its new entries.
func checkAgainstOverlay(t *testing.T, layers []string, v *imageView, entries []layerEntry, look map[string]fsKind) {
	t.Helper()
	lower := append([]string{t.TempDir()}, layers...) // overlayfs wants two lowerdirs without an upper
	without := mountLowers(t, lower)
	with := without
	if len(entries) > 0 {
		r := &Runtime{cfg: Config{Root: t.TempDir()}}
		ml, err := r.ensureMountLayer(entries)
		if err != nil {
			t.Fatal(err)
		}
		with = mountLowers(t, append(append([]string(nil), lower...), ml))
	}
	added := map[string]layerEntry{}
	for _, e := range entries {
		added[e.Path] = e
	}
	paths := map[string]bool{}
	for p := range look {
		paths[p] = true
	}
	for _, e := range entries {
		paths[e.Path] = true
		for _, a := range ancestors(e.Path) {
			paths[a] = true
		}
	}
	for p := range paths {
		var a, b unix.Stat_t
		errA := unix.Lstat(filepath.Join(without, p), &a)
		errB := unix.Lstat(filepath.Join(with, p), &b)
		kind := kindAbsent
		if errA == nil {
			switch a.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				kind = kindDir
			case unix.S_IFREG:
				kind = kindFile
			default:
				kind = kindOther
			}
		}
		if ve := v.lookup(p); ve.Kind != kind || (kind != kindAbsent && (ve.Mode != a.Mode&0o7777 || ve.UID != a.Uid || ve.GID != a.Gid)) {
			t.Errorf("%s: view %+v, overlayfs kind %d mode %o uid %d gid %d", p, ve, kind, a.Mode, a.Uid, a.Gid)
		}
		_, isEntry := added[p]
		if errB != nil {
			if errA == nil || isEntry {
				t.Errorf("%s: not in the rootfs with the layer: %v", p, errB)
			}
			continue
		}
		if errA != nil && !isEntry {
			t.Errorf("%s: in the rootfs only with the layer", p)
		}
		if errA == nil {
			if a.Mode != b.Mode || a.Uid != b.Uid || a.Gid != b.Gid {
				t.Errorf("%s: the layer changed it: mode %o uid %d gid %d, was mode %o uid %d gid %d", p, b.Mode, b.Uid, b.Gid, a.Mode, a.Uid, a.Gid)
			}
			if a.Mode&unix.S_IFMT == unix.S_IFDIR && !reflect.DeepEqual(names(t, filepath.Join(with, p)), union(names(t, filepath.Join(without, p)), entries, p)) {
				t.Errorf("%s lists %v with the layer, %v without", p, names(t, filepath.Join(with, p)), names(t, filepath.Join(without, p)))
			}
		}
	}
	for _, e := range entries {
		var a unix.Stat_t
		if unix.Lstat(filepath.Join(without, e.Path), &a) == nil && !isAncestorEntry(e, entries) {
			t.Errorf("%s: in the layer but already in the image", e.Path)
		}
	}
}

// isAncestorEntry reports whether e is in the layer as the parent of another entry.
func isAncestorEntry(e layerEntry, entries []layerEntry) bool {
	for _, o := range entries {
		if len(o.Path) > len(e.Path) && o.Path[:len(e.Path)+1] == e.Path+"/" {
			return true
		}
	}
	return false
}

func mountLowers(t *testing.T, lower []string) string {
	t.Helper()
	target := t.TempDir()
	rev := make([]string, len(lower))
	for i, l := range lower {
		rev[len(lower)-1-i] = l
	}
	if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(rev, ":")); err != nil {
		t.Fatalf("mount overlay %v: %v", rev, err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	return target
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// union adds to names those of entries directly in dir, sorted.
func union(names []string, entries []layerEntry, dir string) []string {
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	for _, e := range entries {
		if path.Dir(e.Path) == dir {
			set[path.Base(e.Path)] = true
		}
	}
	out := []string{}
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func slicesTar(s []tarEntry) []tarEntry { return append([]tarEntry(nil), s...) }

// TestEnsureMountLayer: the layer is built once with the planned owners and
// modes, concurrent callers share it, and another plan gets another dir.
func TestEnsureMountLayer(t *testing.T) {
	needRootOnly(t)
	r := &Runtime{cfg: Config{Root: t.TempDir()}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	entries := []layerEntry{
		{Path: "/.shoal", Dir: true, Mode: 0o755},
		{Path: "/.shoal/init", Mode: 0o644},
		{Path: "/etc", Dir: true, Mode: 0o2700, UID: 1000, GID: 1001},
		{Path: "/etc/hosts", Mode: 0o644},
	}
	var wg sync.WaitGroup
	dirs := make([]string, 8)
	errs := make([]error, 8)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = r.ensureMountLayer(entries)
		}()
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Fatalf("call %d: %q %v, want %q", i, dirs[i], errs[i], dirs[0])
		}
	}
	ents, _ := os.ReadDir(filepath.Join(r.cfg.Root, mountLayersDir))
	if len(ents) != 1 || ents[0].Name() != filepath.Base(dirs[0]) {
		t.Fatalf("layers dir holds %v", ents)
	}
	for _, e := range entries {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dirs[0], e.Path), &st); err != nil {
			t.Fatal(err)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if isDir != e.Dir || st.Mode&0o7777 != e.Mode || st.Uid != e.UID || st.Gid != e.GID || (!isDir && st.Size != 0) {
			t.Errorf("%s: mode %o uid %d gid %d size %d, want %+v", e.Path, st.Mode, st.Uid, st.Gid, st.Size, e)
		}
	}
	// Nothing else in it.
	n := 0
	filepath.Walk(dirs[0], func(string, os.FileInfo, error) error { n++; return nil })
	if n != len(entries)+1 {
		t.Errorf("layer holds %d entries, want %d", n-1, len(entries))
	}
	other, err := r.ensureMountLayer(entries[:2])
	if err != nil || other == dirs[0] {
		t.Fatalf("another plan: %q %v", other, err)
	}

	// pruneMountLayers keeps what a record names and removes the rest,
	// temp leftovers included, but nothing it did not make.
	os.Mkdir(filepath.Join(r.cfg.Root, mountLayersDir, ".tmp-123"), 0o700)
	os.Mkdir(filepath.Join(r.cfg.Root, mountLayersDir, "README"), 0o700)
	r.containers = map[string]*container{"a": {rec: record{ID: "a", MountLayer: dirs[0]}}, "b": {rec: record{ID: "b"}}}
	r.pruneMountLayers()
	var left []string
	ents, _ = os.ReadDir(filepath.Join(r.cfg.Root, mountLayersDir))
	for _, e := range ents {
		left = append(left, e.Name())
	}
	want := []string{"README", filepath.Base(dirs[0])}
	sort.Strings(want)
	if !reflect.DeepEqual(left, want) {
		t.Errorf("after prune: %v, want %v", left, want)
	}
}

// TestWithMountLayerFallsBack: a layer that would push the overlay's options
// past a page is left out (the image's layers alone still mount), and so is
// everything when there is nothing to create.
func TestWithMountLayerFallsBack(t *testing.T) {
	needRootOnly(t)
	r := &Runtime{cfg: Config{Root: t.TempDir()}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p := containerPaths(r.cfg.Root, newID(), "")
	ms := specMounts(t, nil)
	base := []string{filepath.Join(t.TempDir(), "missing-layer")} // an empty image: every mountpoint is new
	ml, err := r.mountLayerFor(base, ms)
	if err != nil || ml == "" {
		t.Fatalf("layer %q %v", ml, err)
	}
	got, gotML := r.withMountLayer("x", base, ms, p)
	if gotML != ml || !reflect.DeepEqual(got, append(cloneStrings(base), ml)) {
		t.Fatalf("short stack: %v %q", got, gotML)
	}
	// Pad the image's layers until they fit a page alone but not with ml.
	long := cloneStrings(base)
	for {
		opts, err := overlayOptions(long, p.upper, p.work)
		if err != nil {
			t.Fatal(err)
		}
		room := os.Getpagesize() - 1 - len(opts) // bytes left
		if room <= len(ml) {
			break
		}
		n := min(room-1, 200) // ":" + the name
		long = append([]string{"/" + strings.Repeat("l", n-1)}, long...)
	}
	if _, err := overlayOptions(long, p.upper, p.work); err != nil {
		t.Fatalf("padded stack does not fit alone: %v", err)
	}
	got, gotML = r.withMountLayer("x", long, ms, p)
	if gotML != "" || !reflect.DeepEqual(got, long) {
		t.Fatalf("long stack: %d layers, layer %q", len(got), gotML)
	}
	// Nothing to create: no layer.
	if got, gotML := r.withMountLayer("x", base, nil, p); gotML != "" || !reflect.DeepEqual(got, base) {
		t.Fatalf("no mounts: %v %q", got, gotML)
	}
}

func cloneStrings(s []string) []string { return append([]string(nil), s...) }
