package runtime

// Reading files a container may have touched.
//
// Since the supervisor (supervisor.go) holds every container's stdio and
// exit status, nothing the agent reads lives where a container can write:
// logs and exit records are written by the supervisor into the container's
// bundle dir, which is not mounted into the container. The agent reads them
// as if a hostile workload could have placed anything there all the same
// (containers started by an older Shoal had their state and log dirs
// bind-mounted and writable, and a bug elsewhere must not turn into an
// unbounded read): every such file is opened relative to a directory handle
// the agent opened, with O_NOFOLLOW (a symlink to /dev/zero fails), with
// O_NONBLOCK (a FIFO cannot block the open), must be a regular file, and is
// read with a cap.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Caps on what the agent reads from a container's dir.
const (
	// maxExitRecord caps an exit record (exit.json).
	maxExitRecord = 64 << 10
	// maxLogLine caps one stored log line; a longer line is skipped.
	maxLogLine = 1 << 20
	// maxSmallFile caps pid files and other one-line files.
	maxSmallFile = 4 << 10
)

// ErrUnsafeFile: a file the agent reads from a container's dir is not a
// regular file (a symlink, FIFO, device or directory) or is larger than its
// cap.
var ErrUnsafeFile = errors.New("refusing to read container file")

// openInDir opens name (one path element) inside dir for reading without
// following a symlink at either the dir's or the file's last element, and
// checks that it is a regular file. A missing file gives an error wrapping
// fs.ErrNotExist.
func openInDir(dir, name string) (*os.File, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return nil, fmt.Errorf("%w: bad name %q", ErrUnsafeFile, name)
	}
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dfd)
	return openAt(dfd, dir, name)
}

// openAt opens name relative to the directory handle dfd (dir is its path,
// for messages) as openInDir does.
func openAt(dfd int, dir, name string) (*os.File, error) {
	p := filepath.Join(dir, name)
	fd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%w: %s is a symlink", ErrUnsafeFile, p)
		}
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: %s is not a regular file (mode %#o)", ErrUnsafeFile, p, st.Mode&unix.S_IFMT)
	}
	// Regular files ignore O_NONBLOCK for reads; clear it anyway so the
	// file is an ordinary blocking one for the Go runtime.
	_ = unix.SetNonblock(fd, false)
	return os.NewFile(uintptr(fd), p), nil
}

// readCapped reads the regular file name in dir, refusing files larger than
// limit.
func readCapped(dir, name string, limit int64) ([]byte, error) {
	f, err := openInDir(dir, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrUnsafeFile, f.Name(), limit)
	}
	return b, nil
}

// tailCapped returns at most the last n bytes of the regular file name in
// dir, or nil.
func tailCapped(dir, name string, n int64) []byte {
	f, err := openInDir(dir, name)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(fi.Size()-n, 0)
	b, _ := io.ReadAll(io.NewSectionReader(f, off, n))
	return b
}
