package ocispec

// Reading a container's rootfs from the host. The rootfs is the container's
// to change (its upper dir, once it ran; the image's layers before), so a
// path in it is resolved as the container would resolve it, never leading
// the agent out of it: every symlink on the way, absolute or with "..",
// resolves inside the rootfs (openat2 RESOLVE_IN_ROOT; the volume copy-up
// opens its source with OpenInRoot too), never through a magic link
// (/proc/self/...) or onto another mount. A file read is checked to be a regular file before it is
// opened for reading (a FIFO would block the open for ever, a device's
// open reaches its driver), and read with a cap.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrNotRegular: a file read from a rootfs (ReadFileInRoot) is not a
// regular file.
var ErrNotRegular = errors.New("not a regular file")

// OpenInRoot opens p, a path inside the directory tree whose root is the
// descriptor root, as a process chrooted there would find it, and returns
// the new descriptor. flags are open(2)'s (O_RDONLY, O_DIRECTORY, O_PATH…);
// O_CLOEXEC is added, and O_NONBLOCK|O_NOCTTY unless O_PATH. Errors are
// openat2's errno, wrapped.
func OpenInRoot(root int, p string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC
	if flags&unix.O_PATH == 0 {
		flags |= unix.O_NONBLOCK | unix.O_NOCTTY
	}
	fd, err := unix.Openat2(root, p, &unix.OpenHow{
		Flags:   uint64(flags),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return -1, &os.PathError{Op: "openat2", Path: p, Err: err}
	}
	return fd, nil
}

// ReadFileInRoot reads the regular file p inside the directory rootfs
// (OpenInRoot; rootfs itself is opened without following a link), at most
// max bytes of it. A file that is not a regular file is never opened for
// reading: ErrNotRegular.
func ReadFileInRoot(rootfs, p string, max int64) ([]byte, error) {
	root, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_RDONLY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rootfs, Err: err}
	}
	defer unix.Close(root)
	// An O_PATH descriptor opens nothing: what it names is checked first,
	// then that very inode is opened for reading, through /proc.
	pfd, err := OpenInRoot(root, p, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s in %s: %w (mode %#o)", p, rootfs, ErrNotRegular, st.Mode&unix.S_IFMT)
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "reopen", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max))
}
