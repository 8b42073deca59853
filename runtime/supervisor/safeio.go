package supervisor

// Checked reads of files in a container's dir (see runtime/exitrecord's
// doc for why): opened relative to a directory handle with O_NOFOLLOW|O_NONBLOCK,
// regular files only, read with a cap.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api/atomicfile"
)

// ErrUnsafeFile: a file the agent reads from a container's dir is not a
// regular file (a symlink, FIFO, device or directory) or is larger than its
// cap.
var ErrUnsafeFile = errors.New("refusing to read container file")

// OpenInDir opens name (one path element) inside dir for reading without
// following a symlink at either the dir's or the file's last element, and
// checks that it is a regular file. A missing file gives an error wrapping
// fs.ErrNotExist.
func OpenInDir(dir, name string) (*os.File, error) {
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
// for messages) as OpenInDir does.
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

// ReadCapped reads the regular file name in dir, refusing files larger than
// limit.
func ReadCapped(dir, name string, limit int64) ([]byte, error) {
	f, err := OpenInDir(dir, name)
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

// TailCapped returns at most the last n bytes of the regular file name in
// dir, or nil.
func TailCapped(dir, name string, n int64) []byte {
	f, err := OpenInDir(dir, name)
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

// maxSmallFile caps pid files (as runtime's maxSmallFile).
const maxSmallFile = 4 << 10

// ValidName reports whether id is a valid container ID or name:
// ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$, written out so that the supervisor does not
// compile a regexp at start.
func ValidName(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// shortID is runtime.ShortID: the 12-character form of a container ID.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// writeJSON replaces p with v as JSON (mode 0600), atomically without
// fsync, as runtime writes the container records.
func writeJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(p, b, 0o600, atomicfile.NoSync())
}
