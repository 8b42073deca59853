package mountlayer

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/image/unpack"
)

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
		if _, _, err := unpack.Unpack(context.Background(), &buf, d, unpack.Limits{}); err != nil {
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
		look   map[string]Kind
		want   []Entry
	}{
		{
			name:   "one layer with /etc/hosts",
			layers: [][]tarEntry{baseLayer},
			look:   map[string]Kind{"/etc": KindDir, "/etc/hosts": KindFile, "/etc/hostname": KindAbsent, "/nope/x": KindAbsent},
			want: []Entry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o755}, {Path: "/etc/hostname", Mode: 0o644}, {Path: "/etc/resolv.conf", Mode: 0o644}},
		},
		{
			name:   "/etc/hosts whited out above",
			layers: [][]tarEntry{baseLayer, {tdir("etc/", 0o755), {name: "etc/.wh.hosts", typ: tar.TypeReg}}},
			look:   map[string]Kind{"/etc/hosts": KindAbsent, "/etc/passwd": KindFile},
			want:   busyboxLayer,
		},
		{
			name: "/etc/hosts whited out then created again higher up",
			layers: [][]tarEntry{baseLayer, {tdir("etc/", 0o755), {name: "etc/.wh.hosts", typ: tar.TypeReg}},
				{tdir("etc/", 0o755), tfile("etc/hosts")}},
			look: map[string]Kind{"/etc/hosts": KindFile},
		},
		{
			name:   "opaque /etc above hides the base files and its mode wins",
			layers: [][]tarEntry{baseLayer, {tdir("etc/", 0o750), {name: "etc/.wh..wh..opq", typ: tar.TypeReg}, tfile("etc/group")}},
			look:   map[string]Kind{"/etc/hosts": KindAbsent, "/etc/passwd": KindAbsent, "/etc/group": KindFile},
			want: []Entry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o750}, {Path: "/etc/hostname", Mode: 0o644}, {Path: "/etc/hosts", Mode: 0o644},
				{Path: "/etc/resolv.conf", Mode: 0o644}},
		},
		{
			name: "an opaque dir in the middle stops the walk down",
			layers: [][]tarEntry{baseLayer, {tdir("etc/", 0o755), {name: "etc/.wh..wh..opq", typ: tar.TypeReg}},
				{tdir("etc/", 0o755), tfile("etc/group")}},
			look: map[string]Kind{"/etc/hosts": KindAbsent, "/etc/passwd": KindAbsent, "/etc/group": KindFile},
		},
		{
			name:   "/etc a symlink above a dir",
			layers: [][]tarEntry{baseLayer, {{name: "etc", typ: tar.TypeSymlink, link: "/real-etc", mode: 0o777}, tdir("real-etc/", 0o755)}},
			look:   map[string]Kind{"/etc": KindOther, "/etc/hosts": KindAbsent, "/etc/passwd": KindAbsent},
			want:   []Entry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644}},
		},
		{
			name:   "/etc whited out whole: a new root-owned /etc",
			layers: [][]tarEntry{{tdir("etc/", 0o700), tfile("etc/hosts"), tdir("proc/", 0o755), tdir("dev/", 0o755), tdir("sys/", 0o755)}, {{name: ".wh.etc", typ: tar.TypeReg}}},
			look:   map[string]Kind{"/etc": KindAbsent, "/etc/hosts": KindAbsent},
			want:   busyboxLayer,
		},
		{
			name:   "/etc 0700 owned by 1000 in the top layer",
			layers: [][]tarEntry{baseLayer, {{name: "etc/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000}}},
			look:   map[string]Kind{"/etc/passwd": KindFile, "/etc/hosts": KindFile},
			want: []Entry{{Path: "/.shoal", Dir: true, Mode: 0o755}, {Path: "/.shoal/init", Mode: 0o644},
				{Path: "/etc", Dir: true, Mode: 0o700, UID: 1000, GID: 1000}, {Path: "/etc/hostname", Mode: 0o644}, {Path: "/etc/resolv.conf", Mode: 0o644}},
		},
		{
			name:   "a file replaced by a dir higher up",
			layers: [][]tarEntry{{tfile("etc")}, {tdir("etc/", 0o755), tfile("etc/hostname")}},
			look:   map[string]Kind{"/etc": KindDir, "/etc/hostname": KindFile},
		},
		{
			name: "everything there: no layer",
			layers: [][]tarEntry{append(slicesTar(baseLayer), tfile("etc/hostname"), tfile("etc/resolv.conf"),
				tdir(".shoal/", 0o755), tfile(".shoal/init"))},
			want: []Entry{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			layers := unpackLayers(t, tc.layers...)
			v := NewView(layers)
			for p, want := range tc.look {
				if got := v.Lookup(p).Kind; got != want {
					t.Errorf("lookup(%s) = %d, want %d", p, got, want)
				}
			}
			got := Plan(stdWant, NewView(layers).Lookup)
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
func checkAgainstOverlay(t *testing.T, layers []string, v *View, entries []Entry, look map[string]Kind) {
	t.Helper()
	lower := append([]string{t.TempDir()}, layers...) // overlayfs wants two lowerdirs without an upper
	without := mountLowers(t, lower)
	with := without
	if len(entries) > 0 {
		ml := t.TempDir()
		if err := Build(ml, entries); err != nil {
			t.Fatal(err)
		}
		with = mountLowers(t, append(append([]string(nil), lower...), ml))
	}
	added := map[string]Entry{}
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
		kind := KindAbsent
		if errA == nil {
			switch a.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				kind = KindDir
			case unix.S_IFREG:
				kind = KindFile
			default:
				kind = KindOther
			}
		}
		if ve := v.Lookup(p); ve.Kind != kind || (kind != KindAbsent && (ve.Mode != a.Mode&0o7777 || ve.UID != a.Uid || ve.GID != a.Gid)) {
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
func isAncestorEntry(e Entry, entries []Entry) bool {
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
func union(names []string, entries []Entry, dir string) []string {
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
