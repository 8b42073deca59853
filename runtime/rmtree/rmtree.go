// Package rmtree removes directory trees that a container wrote (its
// writable layer, a volume's data, an older init's state dir) without
// letting their shape decide what the agent spends or touches.
//
// Why not os.RemoveAll. Go's RemoveAll recurses and keeps one open
// descriptor (and one 8 KiB buffer) per level of the tree: a container
// that runs `mkdir d; cd d` a few thousand times makes a removal hold as
// many descriptors at once, so the agent's other work (accepting API
// connections, opening logs, starting containers) fails meanwhile, and a
// tree deeper than the limit of open files cannot be removed at all and
// stays on disk.
//
// RemoveAll here walks depth first with a bounded number of descriptors
// whatever the depth: the path's parent, the tree's root, the deepest
// eight directories on the way down (window, with the entries read from
// them: trees of common depth are walked as os.RemoveAll walks them), and
// one being opened; eleven at most. It goes down with openat(O_NOFOLLOW|
// O_DIRECTORY) and, above the window, back up with openat(".."), checks
// that the directory it comes back to is the one it left (device and
// inode), and reads on from the position after the child it removed
// there. What it keeps per level is about a hundred bytes (the name, the
// inode, the position), not a descriptor and a buffer. It never follows a
// symbolic link below the path, never leaves the path's file system (a
// mount point below it is an error, ErrMountPoint, and what is mounted
// there is left alone), and a tree that changes under it is walked again
// from its root, a few times at most (ErrChanged).
package rmtree

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Errors of RemoveAll, besides those of the system calls (wrapped, with
// the path and how deep below it).
var (
	// ErrMountPoint: a directory below the path is on another file
	// system (a mount point); RemoveAll does not go there.
	ErrMountPoint = errors.New("a mount point is below the path")
	// ErrChanged: the tree kept changing while it was being removed.
	ErrChanged = errors.New("the tree changed while it was being removed")
)

// maxRewalks bounds how often RemoveAll walks the tree again after
// finding it changed under it.
const maxRewalks = 16

const openDir = unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_RDONLY | unix.O_CLOEXEC

// RemoveAll removes path and, when it is a directory, everything below it.
// A path that does not exist is no error. A symbolic link, at path or
// below it, is removed itself, never followed; the path's parent
// directories are the caller's and are followed as given. It stops at the
// first error and returns it, leaving what it did not get to.
//
// It holds at most eleven descriptors at any depth, and memory in
// proportion to the depth (about a hundred bytes a level) plus eight 8 KiB
// buffers, not to the size of the tree. It may be called concurrently on
// different trees.
func RemoveAll(path string) error {
	if path == "" {
		return nil
	}
	if path == "." || strings.HasSuffix(path, "/.") { // as os.RemoveAll
		return fmt.Errorf("remove %s: %w", path, unix.EINVAL)
	}
	path = filepath.Clean(path)
	dir, base := filepath.Split(path)
	if base == "." || base == ".." || base == "" {
		return fmt.Errorf("remove %s: %w", path, unix.EINVAL)
	}
	if dir == "" {
		dir = "."
	}
	parent, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(parent)
	return removeAt(parent, base, path)
}

// removeAt removes name in the directory parent; path names it in errors.
func removeAt(parent int, name, path string) error {
	err := unix.Unlinkat(parent, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("unlinkat %s: %w", path, err)
	}
	unlinkErr := err
	root, err := unix.Openat(parent, name, openDir, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) { // not a directory: the unlink's error
		return fmt.Errorf("unlinkat %s: %w", path, unlinkErr)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(root)
	for tries := 0; ; tries++ {
		if err := removeBelow(root, path); err != nil {
			return err
		}
		err := unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
		switch {
		case err == nil || errors.Is(err, unix.ENOENT):
			return nil
		case (errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST)) && tries < maxRewalks:
			// A file system that skipped entries while others were
			// removed, or a writer: again, reading from the start.
		default:
			return fmt.Errorf("rmdir %s: %w", path, err)
		}
	}
}

// window is how many directories on the way down keep their descriptor
// (and the entries read from it): the deepest ones. Above them a
// directory is opened again from its child ("..") when the walk comes back
// to it, and read on from the position after that child. Trees of common
// depth are walked without reopening anything.
const window = 8

// direntBuf is the size of a level's buffer of directory entries.
const direntBuf = 8 << 10

// level is a directory on the way down from the tree's root to the one
// being emptied.
type level struct {
	fd     int    // -1 when closed to keep the window
	ino    uint64 // to check that a reopened directory is this one
	name   string // in its parent ("" for the root)
	cookie int64  // the position in its parent right after it
	tries  int    // times its rmdir found it not empty
	// buf[pos:end] are entries read from fd and not handled yet; buf
	// is nil while the level is closed or read through.
	buf      []byte
	pos, end int
}

// walker empties the tree below one root directory.
type walker struct {
	path   string // the root's, for errors
	root   int    // the root's descriptor, the caller's
	dev    uint64
	levels []level
	open   int      // levels with a descriptor: always the deepest ones
	free   [][]byte // buffers of levels closed or read through
}

// removeBelow removes everything below the directory root (path), and
// leaves root itself, read through, to the caller.
func removeBelow(root int, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(root, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	w := &walker{path: path, root: root, dev: st.Dev}
	defer w.closeAll()
	for rewalks := 0; ; rewalks++ {
		err := w.walk(st.Ino)
		if !errors.Is(err, errMoved) {
			return err
		}
		// A directory above the one being emptied was moved meanwhile:
		// again from the root, whose descriptor the caller holds.
		if rewalks == maxRewalks {
			return fmt.Errorf("remove %s: %w", path, ErrChanged)
		}
		w.closeAll()
	}
}

// errMoved: a directory opened again from its child is not the one left.
var errMoved = errors.New("moved")

// walk empties the tree from its root (inode rootIno), depth first.
func (w *walker) walk(rootIno uint64) error {
	fd, err := unix.Openat(w.root, ".", openDir, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", w.path, err)
	}
	w.push(level{fd: fd, ino: rootIno})
	for {
		l := &w.levels[len(w.levels)-1]
		name, cookie, dir, err := w.next(l)
		switch {
		case err != nil:
			return err
		case name == "" && len(w.levels) == 1: // the root is read through
			return nil
		case name == "":
			err = w.up()
		case dir:
			err = w.down(name, cookie, 0)
		default:
			switch err = unix.Unlinkat(l.fd, name, 0); {
			case err == nil || errors.Is(err, unix.ENOENT):
				err = nil
			case errors.Is(err, unix.EISDIR): // a directory now
				err = w.down(name, cookie, 0)
			default:
				err = w.fail("unlinkat", name, err)
			}
		}
		if err != nil {
			return err
		}
	}
}

// next returns l's next entry but . and ..: its name ("" at the end of
// the directory), the position after it, and whether it is a directory
// (never true for a symbolic link).
func (w *walker) next(l *level) (name string, cookie int64, dir bool, err error) {
	for {
		if l.end-l.pos < 19 {
			if l.buf == nil {
				l.buf = w.buffer()
			}
			n, err := unix.Getdents(l.fd, l.buf)
			if err != nil {
				return "", 0, false, w.fail("getdents", ".", err)
			}
			if n == 0 {
				w.release(l)
				return "", 0, false, nil
			}
			l.pos, l.end = 0, n
		}
		// struct linux_dirent64: ino, off, reclen, type, name.
		e := l.buf[l.pos:l.end]
		cookie := int64(binary.NativeEndian.Uint64(e[8:]))
		reclen := int(binary.NativeEndian.Uint16(e[16:]))
		typ := e[18]
		if reclen < 19 || reclen > len(e) {
			return "", 0, false, w.fail("getdents", ".", unix.EIO)
		}
		l.pos += reclen
		b := e[19:reclen]
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		name := string(b)
		if name == "." || name == ".." {
			continue
		}
		if typ == unix.DT_UNKNOWN {
			var st unix.Stat_t
			err := unix.Fstatat(l.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return "", 0, false, w.fail("stat", name, err)
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				typ = unix.DT_DIR
			}
		}
		return name, cookie, typ == unix.DT_DIR, nil
	}
}

// down opens name, a directory in the deepest level, and makes it the
// deepest level.
func (w *walker) down(name string, cookie int64, tries int) error {
	parent := w.levels[len(w.levels)-1].fd
	fd, err := unix.Openat(parent, name, openDir, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		// Gone or replaced since it was read: the rmdir of the parent
		// finds it if it is still there, and the parent is read again.
		return nil
	}
	if err != nil {
		return w.fail("open", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return w.fail("stat", name, err)
	}
	if st.Dev != w.dev {
		unix.Close(fd)
		return w.fail("open", name, ErrMountPoint)
	}
	w.push(level{fd: fd, ino: st.Ino, name: name, cookie: cookie, tries: tries})
	return nil
}

// up leaves the deepest level, read through, for its parent (opened again
// from it when the window had closed it) and removes it there. When the
// rmdir finds it not empty (a file system that skipped entries while
// others were removed, or a writer), it goes down into it again.
func (w *walker) up() error {
	l := w.levels[len(w.levels)-1]
	p := &w.levels[len(w.levels)-2]
	if p.fd < 0 {
		fd, err := unix.Openat(l.fd, "..", openDir, 0)
		if err != nil {
			return w.fail("open", "..", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Dev != w.dev || st.Ino != p.ino {
			unix.Close(fd)
			return errMoved
		}
		// On from right after l, where p was read to when it was closed.
		if _, err := unix.Seek(fd, l.cookie, io.SeekStart); err != nil {
			unix.Close(fd)
			return w.fail("seek", "..", err)
		}
		p.fd = fd
		w.open++
	}
	w.closeLevel(&w.levels[len(w.levels)-1])
	w.levels = w.levels[:len(w.levels)-1]
	err := unix.Unlinkat(p.fd, l.name, unix.AT_REMOVEDIR)
	switch {
	case err == nil || errors.Is(err, unix.ENOENT):
		return nil
	case (errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST)) && l.tries < maxRewalks:
		return w.down(l.name, l.cookie, l.tries+1)
	default:
		return w.fail("rmdir", l.name, err)
	}
}

// push adds a level with a descriptor, closing the shallowest open one
// when there are more than window.
func (w *walker) push(l level) {
	w.levels = append(w.levels, l)
	if w.open++; w.open > window {
		w.closeLevel(&w.levels[len(w.levels)-w.open])
	}
}

func (w *walker) closeLevel(l *level) {
	if l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
		w.open--
	}
	w.release(l)
}

// release gives l's buffer back.
func (w *walker) release(l *level) {
	if l.buf != nil {
		w.free = append(w.free, l.buf)
		l.buf, l.pos, l.end = nil, 0, 0
	}
}

func (w *walker) closeAll() {
	for i := range w.levels {
		w.closeLevel(&w.levels[i])
	}
	w.levels = w.levels[:0]
}

// buffer returns a buffer for a level's entries.
func (w *walker) buffer() []byte {
	if n := len(w.free); n > 0 {
		b := w.free[n-1]
		w.free = w.free[:n-1]
		return b
	}
	return make([]byte, direntBuf)
}

// fail wraps err of op on name in the deepest level, saying how deep
// below the root that is.
func (w *walker) fail(op, name string, err error) error {
	return fmt.Errorf("%s %q %d levels below %s: %w", op, name, len(w.levels)-1, w.path, err)
}
