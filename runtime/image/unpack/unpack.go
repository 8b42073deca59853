// Package unpack writes one image layer to disk. A layer is untrusted bytes
// written as root, so the defences (below) live apart from the image store:
// they are reviewed and fuzzed on their own, and the store, which only
// decides what to fetch and where, cannot weaken them by accident. Other
// packages' tests use it to build real layer directories without a store.
package unpack

// Why this file is careful.
//
// A layer tarball is untrusted input that we write to disk as root. The
// classic escapes are: `../` path components, absolute paths, an entry that
// first creates a symlink `a -> /etc` and then writes `a/passwd`, a hardlink to
// a file outside the layer, and device nodes that give a container raw disk
// access. The defences:
//
//   - Every entry name is cleaned lexically: a leading `/` is dropped, `.` and
//     empty components vanish and any `..` component refuses the archive.
//   - Parent directories are opened through an os.Root, which follows symlinks
//     only while they stay inside the layer and refuses absolute symlinks. The
//     final component is then created with *at syscalls on that directory fd
//     and never followed (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, O_EXCL after an
//     unlink of whatever was there).
//   - Hardlinks must name a non-directory that already exists in this layer.
//   - Character and block devices are refused; the only device nodes we make
//     are the 0/0 whiteouts overlayfs understands.
//   - Everything happens in a temporary directory beside the destination that
//     is renamed into place only when the whole stream was read, so an error
//     leaves nothing behind.
//
// Each layer is unpacked into its own directory and stacked by overlayfs, so
// OCI/AUFS whiteouts are converted to overlayfs form: `.wh.NAME` becomes a 0/0
// character device NAME, and `.wh..wh..opq` sets trusted.overlay.opaque=y on
// its directory.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// Limits bound what one layer may expand to, so a small hostile archive
// cannot fill the disk or the inode table. A zero field takes its default.
type Limits struct {
	// MaxFileSize is the largest regular file accepted (default 8 GiB).
	MaxFileSize int64
	// MaxTotalSize bounds the sum of regular file sizes, plus whatever
	// follows the end of the archive beyond a MiB (default 32 GiB).
	MaxTotalSize int64
	// MaxEntries bounds the number of tar headers (default 1e6).
	MaxEntries int
}

// DefaultLimits returns the limits used when a field is left zero.
func DefaultLimits() Limits {
	return Limits{MaxFileSize: 8 << 30, MaxTotalSize: 32 << 30, MaxEntries: 1_000_000}
}

// WithDefaults fills each zero field from DefaultLimits. It is exported
// because the image store bounds what it spools (a blob from a peer, a
// loaded archive) by the same MaxTotalSize a layer is held to.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = d.MaxFileSize
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = d.MaxTotalSize
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	return l
}

// Unpack extracts one layer tarball (plain, gzip or zstd, detected by magic)
// into dir, which must not exist yet; its parent must. It returns the diffID
// (sha256 of the uncompressed tar stream, "sha256:<hex>") and the total size
// of the regular files written. The whole input is consumed on success.
//
// Unpack is atomic: it works in a temporary directory beside dir and renames it
// into place at the end; on any error (hostile or corrupt archive, limit,
// cancelled ctx) nothing is left behind. Hostile archives yield errors
// wrapping ErrInvalidArchive or ErrTooLarge. Creating whiteouts and owners
// needs root; without root owners are not changed.
func Unpack(ctx context.Context, r io.Reader, dir string, limits Limits) (diffID string, size int64, err error) {
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return "", 0, fmt.Errorf("unpack into %s: %w", dir, fs.ErrExist)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".unpack-")
	if err != nil {
		return "", 0, fmt.Errorf("unpack into %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", 0, fmt.Errorf("unpack into %s: %w", dir, err)
	}
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return "", 0, fmt.Errorf("unpack into %s: %w", dir, err)
	}
	u := &unpacker{root: root, limits: limits.WithDefaults(), dirs: map[string]dirMeta{}, asRoot: os.Geteuid() == 0}
	diffID, size, err = u.run(ctx, r)
	if cerr := root.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("unpack into %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", 0, fmt.Errorf("unpack into %s: %w", dir, err)
	}
	return diffID, size, nil
}

// Decompress returns a reader of the uncompressed stream of r, detecting gzip
// and zstd by their magic numbers; anything else is passed through. The
// returned close function releases decoder resources (not r).
func Decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: gzip: %v", ErrInvalidArchive, err)
		}
		return zr, func() { _ = zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: zstd: %v", ErrInvalidArchive, err)
		}
		return zr, zr.Close, nil
	default:
		return br, func() {}, nil
	}
}

type dirMeta struct {
	mode       uint32
	uid, gid   int
	atime, mod time.Time
	implicit   bool // created for a child entry: no times of its own
}

type unpacker struct {
	root    *os.Root
	limits  Limits
	asRoot  bool
	entries int
	total   int64
	dirs    map[string]dirMeta // metadata applied at the end, deepest first
}

// CtxReader stops a long copy when its context ends: io.Copy itself never
// looks at a context. The image store spools a loaded archive through it.
type CtxReader struct {
	Ctx context.Context
	R   io.Reader
}

func (c CtxReader) Read(p []byte) (int, error) {
	if err := c.Ctx.Err(); err != nil {
		return 0, err
	}
	return c.R.Read(p)
}

func (u *unpacker) run(ctx context.Context, r io.Reader) (string, int64, error) {
	dr, closeFn, err := Decompress(CtxReader{Ctx: ctx, R: r})
	if err != nil {
		return "", 0, err
	}
	defer closeFn()
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(dr, h)}
	tr := tar.NewReader(cr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", 0, ArchiveErr(ctx, "read tar header", err)
		}
		u.entries++
		if u.entries > u.limits.MaxEntries {
			return "", 0, fmt.Errorf("%w: more than %d entries", ErrTooLarge, u.limits.MaxEntries)
		}
		if err := u.entry(hdr, tr); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return "", 0, cerr
			}
			return "", 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
	}
	if cr.n == 0 {
		return "", 0, fmt.Errorf("%w: empty stream", ErrInvalidArchive)
	}
	// The diffID covers the whole uncompressed stream, padding included.
	// What follows the end of the archive counts against MaxTotalSize
	// (beyond a MiB of slack for the padding tar writers add): otherwise a
	// compressed run of zeros there would be read, hashed and (by the
	// caller) stored for as long as it goes on.
	budget := u.limits.MaxTotalSize - u.total + 1<<20
	n, err := io.Copy(io.Discard, io.LimitReader(cr, budget+1))
	if err != nil {
		return "", 0, ArchiveErr(ctx, "read tar trailer", err)
	}
	if n > budget {
		return "", 0, fmt.Errorf("%w: layer exceeds %d bytes", ErrTooLarge, u.limits.MaxTotalSize)
	}
	if err := u.finishDirs(); err != nil {
		return "", 0, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), u.total, nil
}

// ArchiveErr reports a failed read of an archive: the context's error if it
// ended (a cancelled pull is not a bad archive), otherwise an error wrapping
// ErrInvalidArchive. The image store reports its own archive reads the same
// way.
func ArchiveErr(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, ErrInvalidArchive) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrInvalidArchive, what, err)
}

// countingReader counts what passes through it (n), so the layer's
// trailer can be checked against the limits once the tar is read.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// CleanPath turns a tar entry name into a relative slash path inside the
// layer ("" is the layer root). Absolute names become relative; `..`
// components and NUL bytes are refused. The image store names the entries
// of a loaded archive by the same rules, so an archive is read as the
// unpacker would write it.
func CleanPath(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in path %q", ErrInvalidArchive, name)
	}
	parts := strings.Split(name, "/")
	out := parts[:0]
	for _, p := range parts {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("%w: path %q has a .. component", ErrInvalidArchive, name)
		}
		out = append(out, p)
	}
	for _, p := range out[:max(len(out)-1, 0)] {
		if strings.HasPrefix(p, whiteoutPrefix) {
			return "", fmt.Errorf("%w: whiteout %q used as a directory in %q", ErrInvalidArchive, p, name)
		}
	}
	return strings.Join(out, "/"), nil
}

func splitRel(rel string) (parent, base string) {
	parent, base = path.Split(rel)
	return strings.TrimSuffix(parent, "/"), base
}

// openCleared opens the parent directory of an entry that is not a
// directory and removes whatever stands at its name (as a later layer entry
// replaces an earlier one). The caller closes the directory.
func (u *unpacker) openCleared(parent, rel, base string) (*os.File, error) {
	dir, err := u.openDir(parent, true)
	if err != nil {
		return nil, err
	}
	if _, err := u.clear(int(dir.Fd()), rel, base, false); err != nil {
		dir.Close()
		return nil, err
	}
	return dir, nil
}

// openDir opens (creating if needed) the directory rel inside the layer,
// following symlinks only while they stay inside the layer.
func (u *unpacker) openDir(rel string, create bool) (*os.File, error) {
	name := rel
	if name == "" {
		name = "."
	}
	if create && name != "." {
		if _, err := u.root.Stat(name); err != nil {
			if err := u.mkdirParents(rel); err != nil {
				return nil, fmt.Errorf("%w: directory %q: %v", ErrInvalidArchive, rel, err)
			}
		}
	}
	// O_DIRECTORY: never open (and block on) a fifo the archive put there.
	f, err := u.root.OpenFile(name, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: directory %q: %v", ErrInvalidArchive, rel, err)
	}
	st, err := f.Stat()
	if err != nil || !st.IsDir() {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %q is not a directory", ErrInvalidArchive, rel)
	}
	return f, nil
}

// mkdirParents creates the missing directories of rel one by one and
// records them as implicit (0755 root:root whatever the umask).
func (u *unpacker) mkdirParents(rel string) error {
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		err := u.root.Mkdir(p, 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		u.dirs[p] = dirMeta{mode: 0o755, implicit: true}
	}
	return nil
}

// clear removes whatever sits at base in dirfd unless it is a directory and
// keepDir is set. It reports whether a directory remains.
func (u *unpacker) clear(dirfd int, rel, base string, keepDir bool) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %q: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if keepDir {
			return true, nil
		}
		if err := u.root.RemoveAll(rel); err != nil {
			return false, fmt.Errorf("replace directory %q: %w", rel, err)
		}
		delete(u.dirs, rel)
		return false, nil
	}
	if err := unix.Unlinkat(dirfd, base, 0); err != nil {
		return false, fmt.Errorf("replace %q: %w", rel, err)
	}
	return false, nil
}

func (u *unpacker) entry(hdr *tar.Header, tr io.Reader) error {
	rel, err := CleanPath(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Size < 0 || hdr.Uid < 0 || hdr.Gid < 0 {
		return fmt.Errorf("%w: negative size or owner", ErrInvalidArchive)
	}
	parent, base := splitRel(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		// A whiteout's data is skipped, not written, but it is read and
		// hashed all the same: it counts against the limits like a file's.
		if hdr.Size > u.limits.MaxFileSize || u.total+hdr.Size > u.limits.MaxTotalSize {
			return fmt.Errorf("%w: whiteout %q of %d bytes exceeds the limits", ErrTooLarge, rel, hdr.Size)
		}
		u.total += hdr.Size
		return u.whiteout(parent, base)
	}
	if rel == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: layer root is not a directory", ErrInvalidArchive)
		}
		u.dirs[""] = metaOf(hdr)
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		return u.regular(hdr, tr, rel, parent, base)
	case tar.TypeDir:
		dir, err := u.openDir(parent, true)
		if err != nil {
			return err
		}
		defer dir.Close()
		exists, err := u.clear(int(dir.Fd()), rel, base, true)
		if err != nil {
			return err
		}
		if !exists {
			if err := unix.Mkdirat(int(dir.Fd()), base, 0o755); err != nil {
				return fmt.Errorf("mkdir %q: %w", rel, err)
			}
		}
		u.dirs[rel] = metaOf(hdr)
		return nil
	case tar.TypeSymlink:
		if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
			return fmt.Errorf("%w: bad symlink target %q", ErrInvalidArchive, hdr.Linkname)
		}
		dir, err := u.openCleared(parent, rel, base)
		if err != nil {
			return err
		}
		defer dir.Close()
		dfd := int(dir.Fd())
		if err := unix.Symlinkat(hdr.Linkname, dfd, base); err != nil {
			return fmt.Errorf("symlink %q: %w", rel, err)
		}
		return u.setMeta(dfd, base, hdr, false)
	case tar.TypeLink:
		return u.hardlink(hdr, rel, parent, base)
	case tar.TypeFifo:
		dir, err := u.openCleared(parent, rel, base)
		if err != nil {
			return err
		}
		defer dir.Close()
		dfd := int(dir.Fd())
		if err := unix.Mknodat(dfd, base, unix.S_IFIFO|0o600, 0); err != nil {
			return fmt.Errorf("mkfifo %q: %w", rel, err)
		}
		return u.setMeta(dfd, base, hdr, true)
	case tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("%w: device node %q refused", ErrInvalidArchive, rel)
	default:
		return fmt.Errorf("%w: unsupported entry type %q", ErrInvalidArchive, hdr.Typeflag)
	}
}

func metaOf(hdr *tar.Header) dirMeta {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	return dirMeta{mode: uint32(hdr.Mode & 0o7777), uid: hdr.Uid, gid: hdr.Gid, atime: at, mod: hdr.ModTime}
}

func (u *unpacker) regular(hdr *tar.Header, tr io.Reader, rel, parent, base string) error {
	if hdr.Size > u.limits.MaxFileSize {
		return fmt.Errorf("%w: file of %d bytes exceeds %d", ErrTooLarge, hdr.Size, u.limits.MaxFileSize)
	}
	if u.total+hdr.Size > u.limits.MaxTotalSize {
		return fmt.Errorf("%w: layer exceeds %d bytes", ErrTooLarge, u.limits.MaxTotalSize)
	}
	u.total += hdr.Size
	dir, err := u.openCleared(parent, rel, base)
	if err != nil {
		return err
	}
	defer dir.Close()
	dfd := int(dir.Fd())
	fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %q: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	if _, err := io.Copy(f, tr); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader) {
			return fmt.Errorf("%w: truncated file data: %v", ErrInvalidArchive, err)
		}
		return fmt.Errorf("write %q: %w", rel, err)
	}
	if u.asRoot {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown %q: %w", rel, err)
		}
	}
	// chmod after chown: chown clears setuid/setgid.
	if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
		return fmt.Errorf("chmod %q: %w", rel, err)
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || !(strings.HasPrefix(name, "user.") || name == "security.capability") {
			continue // never trusted.* from an archive: overlayfs reads those
		}
		if err := unix.Fsetxattr(fd, name, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("xattr %s on %q: %w", name, rel, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %q: %w", rel, err)
	}
	return setTimes(dfd, base, hdr.AccessTime, hdr.ModTime)
}

// setMeta sets owner, mode (unless a symlink) and times of base without
// following a symlink.
func (u *unpacker) setMeta(dfd int, base string, hdr *tar.Header, chmod bool) error {
	if u.asRoot {
		if err := unix.Fchownat(dfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %q: %w", base, err)
		}
	}
	if chmod {
		// Only reached for a fifo we just made ourselves in dfd.
		if err := unix.Fchmodat(dfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod %q: %w", base, err)
		}
	}
	return setTimes(dfd, base, hdr.AccessTime, hdr.ModTime)
}

func setTimes(dfd int, base string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(dfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %q: %w", base, err)
	}
	return nil
}

func (u *unpacker) hardlink(hdr *tar.Header, rel, parent, base string) error {
	target, err := CleanPath(hdr.Linkname)
	if err != nil {
		return err
	}
	if target == "" || target == rel {
		return fmt.Errorf("%w: bad hardlink target %q", ErrInvalidArchive, hdr.Linkname)
	}
	tparent, tbase := splitRel(target)
	tdir, err := u.openDir(tparent, false)
	if err != nil {
		return fmt.Errorf("%w: hardlink target %q not in layer", ErrInvalidArchive, hdr.Linkname)
	}
	defer tdir.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(tdir.Fd()), tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("%w: hardlink target %q not a file in this layer", ErrInvalidArchive, hdr.Linkname)
	}
	dir, err := u.openCleared(parent, rel, base)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := unix.Linkat(int(tdir.Fd()), tbase, int(dir.Fd()), base, 0); err != nil {
		return fmt.Errorf("hardlink %q: %w", rel, err)
	}
	return nil
}

func (u *unpacker) whiteout(parent, base string) error {
	if base == whiteoutOpaque {
		dir, err := u.openDir(parent, true)
		if err != nil {
			return err
		}
		defer dir.Close()
		if err := unix.Fsetxattr(int(dir.Fd()), opaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %q opaque: %w", parent, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other AUFS bookkeeping (.wh..wh.plnk, ...): not content
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: bad whiteout %q", ErrInvalidArchive, base)
	}
	dir, err := u.openDir(parent, true)
	if err != nil {
		return err
	}
	defer dir.Close()
	rel := path.Join(parent, name)
	if _, err := u.clear(int(dir.Fd()), rel, name, false); err != nil {
		return err
	}
	if err := unix.Mknodat(int(dir.Fd()), name, unix.S_IFCHR, int(unix.Mkdev(0, 0))); err != nil {
		return fmt.Errorf("whiteout %q: %w", rel, err)
	}
	return nil
}

// finishDirs applies directory owners, modes and times once nothing more is
// created inside them, deepest first. A path that is no longer a directory
// (replaced by a later entry) is skipped.
func (u *unpacker) finishDirs() error {
	rels := make([]string, 0, len(u.dirs))
	for rel := range u.dirs {
		rels = append(rels, rel)
	}
	sort.Slice(rels, func(i, j int) bool {
		di, dj := strings.Count(rels[i], "/"), strings.Count(rels[j], "/")
		if rels[i] == "" || rels[j] == "" {
			return rels[j] == ""
		}
		if di != dj {
			return di > dj
		}
		return rels[i] < rels[j]
	})
	for _, rel := range rels {
		m := u.dirs[rel]
		if err := u.finishDir(rel, m); err != nil {
			return err
		}
	}
	return nil
}

func (u *unpacker) finishDir(rel string, m dirMeta) error {
	var fd int
	if rel == "" {
		f, err := u.root.Open(".")
		if err != nil {
			return err
		}
		defer f.Close()
		fd = int(f.Fd())
	} else {
		parent, base := splitRel(rel)
		pdir, err := u.openDir(parent, false)
		if err != nil {
			return nil // replaced by a later entry
		}
		defer pdir.Close()
		dfd, err := unix.Openat(int(pdir.Fd()), base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil // replaced by a later entry
		}
		defer unix.Close(dfd)
		fd = dfd
	}
	if u.asRoot {
		if err := unix.Fchown(fd, m.uid, m.gid); err != nil {
			return fmt.Errorf("chown directory %q: %w", rel, err)
		}
	}
	if err := unix.Fchmod(fd, m.mode); err != nil {
		return fmt.Errorf("chmod directory %q: %w", rel, err)
	}
	if m.implicit {
		return nil
	}
	tv := []unix.Timeval{unix.NsecToTimeval(m.atime.UnixNano()), unix.NsecToTimeval(m.mod.UnixNano())}
	if err := unix.Futimes(fd, tv); err != nil {
		return fmt.Errorf("set times of directory %q: %w", rel, err)
	}
	return nil
}
