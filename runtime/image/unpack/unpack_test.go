package unpack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// ent is one tar entry of a generated test archive.
type ent struct {
	name     string
	typ      byte
	body     string
	link     string
	mode     int64
	uid, gid int
	size     int64 // overrides len(body) in the header when set
	mtime    time.Time
}

var testTime = time.Date(2020, 2, 3, 4, 5, 6, 0, time.UTC)

func reg(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func dir(name string) ent       { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func sym(name, link string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: link, mode: 0o777}
}
func hard(name, link string) ent { return ent{name: name, typ: tar.TypeLink, link: link, mode: 0o644} }

func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		mt := e.mtime
		if mt.IsZero() {
			mt = testTime
		}
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mt, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if e.typ == tar.TypeXGlobalHeader {
			h = &tar.Header{Typeflag: e.typ, Name: e.name, PAXRecords: map[string]string{"comment": "global"}, Format: tar.FormatPAX}
		}
		if e.typ == tar.TypeChar || e.typ == tar.TypeBlock {
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if e.body != "" {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatalf("body %q: %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func needRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mknod, trusted xattrs, chown)")
	}
}

// hostileCase is one archive the unpacker must refuse.
type hostileCase struct {
	name   string
	data   func(t testing.TB, outside string) []byte
	limits Limits
	want   error
}

func hostileCases() []hostileCase {
	tarOf := func(ents ...ent) func(testing.TB, string) []byte {
		return func(t testing.TB, _ string) []byte { return mkTar(t, ents...) }
	}
	return []hostileCase{
		{name: "dotdot", data: tarOf(reg("../escape", "x")), want: ErrInvalidArchive},
		{name: "nested dotdot", data: tarOf(dir("a/"), reg("a/../../escape", "x")), want: ErrInvalidArchive},
		{name: "abs symlink parent to /etc", data: tarOf(sym("a", "/etc"), reg("a/shoal-escape-test", "x")), want: ErrInvalidArchive},
		{name: "abs symlink parent outside", data: func(t testing.TB, outside string) []byte {
			return mkTar(t, sym("a", outside), reg("a/escape", "x"))
		}, want: ErrInvalidArchive},
		{name: "relative symlink parent outside", data: tarOf(dir("d/"), sym("d/up", "../../../../../../../../tmp"), reg("d/up/escape", "x")), want: ErrInvalidArchive},
		{name: "symlink dir then mkdir through it", data: tarOf(sym("a", "/"), dir("a/etc/")), want: ErrInvalidArchive},
		{name: "hardlink outside abs", data: tarOf(hard("h", "/etc/passwd")), want: ErrInvalidArchive},
		{name: "hardlink dotdot", data: tarOf(hard("h", "../x")), want: ErrInvalidArchive},
		{name: "hardlink through symlink", data: func(t testing.TB, outside string) []byte {
			return mkTar(t, sym("s", outside), hard("h", "s/secret"))
		}, want: ErrInvalidArchive},
		{name: "hardlink to directory", data: tarOf(dir("d/"), hard("h", "d")), want: ErrInvalidArchive},
		{name: "char device", data: tarOf(ent{name: "dev/mem", typ: tar.TypeChar, mode: 0o600}), want: ErrInvalidArchive},
		{name: "block device", data: tarOf(ent{name: "dev/sda", typ: tar.TypeBlock, mode: 0o600}), want: ErrInvalidArchive},
		{name: "truncated data", data: func(t testing.TB, _ string) []byte {
			b := mkTar(t, reg("big", strings.Repeat("x", 5000)))
			return b[:1500]
		}, want: ErrInvalidArchive},
		{name: "truncated header", data: func(t testing.TB, _ string) []byte { return mkTar(t, reg("a", "x"))[:100] }, want: ErrInvalidArchive},
		{name: "garbage", data: func(testing.TB, string) []byte { return bytes.Repeat([]byte("not a tar "), 100) }, want: ErrInvalidArchive},
		{name: "corrupt gzip", data: func(t testing.TB, _ string) []byte {
			b := gz(t, mkTar(t, reg("a", strings.Repeat("hello", 1000))))
			b[len(b)/2] ^= 0xff
			b[len(b)/2+1] ^= 0xff
			return b
		}, want: ErrInvalidArchive},
		{name: "truncated gzip", data: func(t testing.TB, _ string) []byte {
			b := gz(t, mkTar(t, reg("a", strings.Repeat("hello", 1000))))
			return b[:len(b)-20]
		}, want: ErrInvalidArchive},
		{name: "empty stream", data: func(testing.TB, string) []byte { return nil }, want: ErrInvalidArchive},
		{name: "bad whiteout", data: tarOf(reg(".wh..", "")), want: ErrInvalidArchive},
		{name: "whiteout as dir", data: tarOf(reg(".wh.a/b", "x")), want: ErrInvalidArchive},
		{name: "root not a dir", data: tarOf(reg(".", "x")), want: ErrInvalidArchive},
		{name: "empty symlink target", data: tarOf(sym("s", "")), want: ErrInvalidArchive},
		{name: "file too big", data: tarOf(reg("a", strings.Repeat("x", 2000))), limits: Limits{MaxFileSize: 1000}, want: ErrTooLarge},
		{name: "total too big", data: tarOf(reg("a", strings.Repeat("x", 600)), reg("b", strings.Repeat("x", 600))), limits: Limits{MaxTotalSize: 1000}, want: ErrTooLarge},
		{name: "too many entries", data: tarOf(reg("a", ""), reg("b", ""), reg("c", "")), limits: Limits{MaxEntries: 2}, want: ErrTooLarge},
		{name: "fifo as hardlink parent", data: tarOf(ent{name: "p", typ: tar.TypeFifo, mode: 0o644}, hard("h", "p/x")), want: ErrInvalidArchive},
		{name: "file under symlink to fifo", data: tarOf(ent{name: "p", typ: tar.TypeFifo, mode: 0o644}, sym("l", "p"), reg("l/x", "y")), want: ErrInvalidArchive},
		{name: "file under a file", data: tarOf(reg("f", "x"), reg("f/g", "y")), want: ErrInvalidArchive},
	}
}

func TestUnpackHostile(t *testing.T) {
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			work := filepath.Join(base, "work")
			if err := os.Mkdir(work, 0o755); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(work, "layer")
			_, _, err := Unpack(context.Background(), bytes.NewReader(tc.data(t, outside)), dst, tc.limits)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			assertEmptyDir(t, work)
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 {
				t.Fatalf("outside dir changed: %v", ents)
			}
			if _, err := os.Lstat("/etc/shoal-escape-test"); err == nil {
				t.Fatal("escaped to /etc")
			}
			if _, err := os.Lstat("/tmp/escape"); err == nil {
				t.Fatal("escaped to /tmp")
			}
		})
	}
}

func assertEmptyDir(t testing.TB, d string) {
	t.Helper()
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("left behind in %s: %v", d, names)
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"a/b", "a/b", false},
		{"./a/b/", "a/b", false},
		{"/abs/path", "abs/path", false},
		{"//a//b", "a/b", false},
		{".", "", false},
		{"./", "", false},
		{"a/../b", "", true},
		{"..", "", true},
		{"a/b/..", "", true},
		{"a\x00b", "", true},
		{"a/.wh.b/c", "", true},
		{"a/.wh.b", "a/.wh.b", false},
	}
	for _, tc := range tests {
		got, err := CleanPath(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q, err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func unpackOK(t *testing.T, data []byte) (string, string) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "layer")
	diffID, _, err := Unpack(context.Background(), bytes.NewReader(data), dst, Limits{})
	if err != nil {
		t.Fatalf("unpack: %v", err)
	}
	return dst, diffID
}

func TestUnpackMetadata(t *testing.T) {
	needRoot(t)
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	raw := mkTar(t,
		ent{name: "./", typ: tar.TypeDir, mode: 0o755, mtime: mtime},
		ent{name: "bin/", typ: tar.TypeDir, mode: 0o711, uid: 7, gid: 8, mtime: mtime},
		ent{name: "bin/su", typ: tar.TypeReg, body: "suid", mode: 0o4755, uid: 0, gid: 0, mtime: mtime},
		ent{name: "/abs/file", typ: tar.TypeReg, body: "abs", mode: 0o600, uid: 1000, gid: 1001, mtime: mtime},
		ent{name: "bin/link", typ: tar.TypeSymlink, link: "/does/not/exist/anywhere", mtime: mtime},
		ent{name: "bin/rel", typ: tar.TypeSymlink, link: "../abs/file", mtime: mtime},
		ent{name: "bin/hard", typ: tar.TypeLink, link: "/bin/su"},
		ent{name: "fifo", typ: tar.TypeFifo, mode: 0o640, mtime: mtime},
		reg("replaced", "first"),
		ent{name: "replaced", typ: tar.TypeSymlink, link: "target"},
		dir("d/"),
		sym("via", "d"),
		reg("via/inside", "through an internal symlink"),
		ent{name: "pax", typ: tar.TypeXGlobalHeader},
	)
	dst, diffID := unpackOK(t, raw)
	if want := sha(raw); diffID != want {
		t.Fatalf("diffID %s, want %s", diffID, want)
	}
	st := lstat(t, filepath.Join(dst, "bin/su"))
	if st.Mode&0o7777 != 0o4755 || st.Uid != 0 {
		t.Errorf("bin/su mode %o uid %d", st.Mode&0o7777, st.Uid)
	}
	if got := time.Unix(st.Mtim.Unix()); !got.Equal(mtime.Truncate(time.Microsecond)) && !got.Equal(mtime) {
		t.Errorf("bin/su mtime %v want %v", got, mtime)
	}
	st = lstat(t, filepath.Join(dst, "abs/file"))
	if st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o777 != 0o600 {
		t.Errorf("abs/file uid %d gid %d mode %o", st.Uid, st.Gid, st.Mode&0o777)
	}
	st = lstat(t, filepath.Join(dst, "bin"))
	if st.Mode&0o7777 != 0o711 || st.Uid != 7 || st.Gid != 8 || st.Mtim.Sec != mtime.Unix() {
		t.Errorf("bin dir mode %o uid %d gid %d mtime %d", st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "bin/link")); l != "/does/not/exist/anywhere" {
		t.Errorf("symlink target %q", l)
	}
	if st := lstat(t, filepath.Join(dst, "bin/link")); st.Mtim.Sec != mtime.Unix() {
		t.Errorf("symlink mtime %d", st.Mtim.Sec)
	}
	if a, b := lstat(t, filepath.Join(dst, "bin/su")), lstat(t, filepath.Join(dst, "bin/hard")); a.Ino != b.Ino {
		t.Error("hardlink is not the same inode")
	}
	if st := lstat(t, filepath.Join(dst, "fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o640 {
		t.Errorf("fifo mode %o", st.Mode)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "replaced")); l != "target" {
		t.Errorf("replaced = %q", l)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "d/inside")); string(b) == "" {
		t.Error("file through internal symlink missing")
	}
	if st := lstat(t, dst); st.Mtim.Sec != mtime.Unix() {
		t.Errorf("root mtime %d", st.Mtim.Sec)
	}
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return st
}

func TestUnpackWhiteouts(t *testing.T) {
	needRoot(t)
	raw := mkTar(t,
		dir("a/"),
		reg("a/.wh.gone", ""),
		reg("a/kept", "k"),
		reg("a/.wh.replaced", ""),
		dir("c/"),
		reg("c/.wh..wh..opq", ""),
		reg("c/new", "n"),
		reg("e/.wh..wh..opq", ""), // parent created implicitly
		reg(".wh..wh.plnk", ""),   // AUFS bookkeeping, ignored
	)
	dst, _ := unpackOK(t, raw)
	for _, wo := range []string{"a/gone", "a/replaced"} {
		st := lstat(t, filepath.Join(dst, wo))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s: mode %o rdev %d, want 0/0 char device", wo, st.Mode, st.Rdev)
		}
	}
	for _, d := range []string{"c", "e"} {
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(filepath.Join(dst, d), opaqueXattr, buf)
		if err != nil || string(buf[:n]) != "y" {
			t.Errorf("%s opaque xattr = %q, %v", d, buf[:n], err)
		}
	}
	if _, err := unix.Lgetxattr(filepath.Join(dst, "a"), opaqueXattr, make([]byte, 8)); err == nil {
		t.Error("a must not be opaque")
	}
	err := filepath.Walk(dst, func(p string, _ os.FileInfo, _ error) error {
		if strings.HasPrefix(filepath.Base(p), ".wh.") {
			t.Errorf("whiteout file left: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUnpackCompressed(t *testing.T) {
	raw := mkTar(t, dir("x/"), reg("x/y", strings.Repeat("data", 4096)))
	var zbuf bytes.Buffer
	zw, err := zstd.NewWriter(&zbuf)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = zw.Write(raw)
	_ = zw.Close()
	for name, data := range map[string][]byte{"plain": raw, "gzip": gz(t, raw), "zstd": zbuf.Bytes()} {
		t.Run(name, func(t *testing.T) {
			dst, diffID := unpackOK(t, data)
			if diffID != sha(raw) {
				t.Fatalf("diffID %s, want %s", diffID, sha(raw))
			}
			if b, _ := os.ReadFile(filepath.Join(dst, "x/y")); len(b) != 4*4096 {
				t.Fatalf("x/y has %d bytes", len(b))
			}
		})
	}
}

// TestUnpackTrailerCounts: bytes after the end of the archive count
// against MaxTotalSize, so an endless compressed run of zeros there is
// refused instead of read and hashed for as long as it goes on.
func TestUnpackTrailerCounts(t *testing.T) {
	raw := mkTar(t, reg("a", strings.Repeat("b", 1000)))
	limits := Limits{MaxTotalSize: 64 << 10}
	for _, tc := range []struct {
		name    string
		trailer int
		want    error
	}{
		{"usual padding", 10240, nil},
		{"past the limit and the slack", 64<<10 + 1<<20, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := gz(t, append(bytes.Clone(raw), make([]byte, tc.trailer)...))
			dst := filepath.Join(t.TempDir(), "layer")
			_, _, err := Unpack(context.Background(), bytes.NewReader(data), dst, limits)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestUnpackWhiteoutDataCounts: the data of a whiteout entry is skipped
// but still read: it counts against the limits, or a whiteout declaring
// terabytes of (compressed) zeros would be read past every limit.
func TestUnpackWhiteoutDataCounts(t *testing.T) {
	needRoot(t) // whiteouts are 0/0 character devices
	wh := func(size int) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Name: ".wh.gone", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size)}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(make([]byte, size))
		_ = tw.Close()
		return gz(t, buf.Bytes())
	}
	limits := Limits{MaxFileSize: 64 << 10, MaxTotalSize: 64 << 10}
	for _, tc := range []struct {
		name string
		size int
		want error
	}{
		{"empty", 0, nil},
		{"within the limits", 4096, nil},
		{"past the limits", 128 << 10, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "layer")
			_, _, err := Unpack(context.Background(), bytes.NewReader(wh(tc.size)), dst, limits)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestUnpackExistingAndCancel(t *testing.T) {
	raw := mkTar(t, reg("a", "b"))
	base := t.TempDir()
	dst := filepath.Join(base, "layer")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Unpack(context.Background(), bytes.NewReader(raw), dst, Limits{}); !errors.Is(err, os.ErrExist) {
		t.Fatalf("existing dir: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst2 := filepath.Join(base, "other")
	if _, _, err := Unpack(ctx, bytes.NewReader(raw), dst2, Limits{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v", err)
	}
	ents, _ := os.ReadDir(base)
	if len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// FuzzUnpack feeds arbitrary bytes to the unpacker: it must never panic,
// never write outside its directory, leave nothing behind on error, and only
// ever produce 0/0 character devices.
func FuzzUnpack(f *testing.F) {
	outside := f.TempDir()
	for _, tc := range hostileCases() {
		f.Add(tc.data(f, outside))
	}
	f.Add(mkTar(f, dir("a/"), reg("a/b", "c"), sym("l", "a"), hard("h", "a/b"), reg("a/.wh.x", ""), reg("a/.wh..wh..opq", "")))
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dst := filepath.Join(base, "layer")
		limits := Limits{MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, MaxEntries: 1000}
		_, _, err := Unpack(context.Background(), bytes.NewReader(data), dst, limits)
		if err != nil {
			assertEmptyDir(t, base)
			return
		}
		ents, _ := os.ReadDir(base)
		if len(ents) != 1 {
			t.Fatalf("extra entries beside the layer: %v", ents)
		}
		_ = filepath.Walk(dst, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return nil
			}
			var st unix.Stat_t
			if unix.Lstat(p, &st) == nil {
				switch st.Mode & unix.S_IFMT {
				case unix.S_IFBLK:
					t.Fatalf("block device %s", p)
				case unix.S_IFCHR:
					if st.Rdev != 0 {
						t.Fatalf("char device %s rdev %d", p, st.Rdev)
					}
				}
			}
			return nil
		})
		if ents, _ := os.ReadDir(outside); len(ents) != 0 {
			t.Fatalf("wrote outside: %v", ents)
		}
	})
}

// TestUnpackImplicitDirsIgnoreUmask: parents that the archive does not list
// are 0755 even under a strict umask, so non-root container users can
// traverse them.
func TestUnpackImplicitDirsIgnoreUmask(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	dst, _ := unpackOK(t, mkTar(t, reg("x/y/z", "data"), dir("x/listed/"), ent{name: "x/listed/f", typ: tar.TypeReg, body: "f", mode: 0o644}))
	for _, d := range []string{"x", "x/y", "x/listed"} {
		st := lstat(t, filepath.Join(dst, d))
		if st.Mode&0o7777 != 0o755 {
			t.Errorf("%s mode %o, want 755", d, st.Mode&0o7777)
		}
	}
	if st := lstat(t, filepath.Join(dst, "x/y/z")); st.Mode&0o777 != 0o644 {
		t.Errorf("x/y/z mode %o", st.Mode&0o777)
	}
}
