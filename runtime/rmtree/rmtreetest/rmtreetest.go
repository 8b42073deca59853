// Package rmtreetest builds what the tests of runtime/rmtree and of its
// users need: a tree deeper than the process may open files, as a
// container makes one with mkdir and cd, and a lowered file limit.
package rmtreetest

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// DeepChain makes depth nested directories d/d/d/... under dir, holding two
// descriptors at a time. With every > 0, each every-th level also holds a
// file f and a link root to /.
func DeepChain(t testing.TB, dir string, depth, every int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < depth; i++ {
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		if every > 0 && i%every == 0 { // a file and a link out on the way
			if err := unix.Symlinkat("/", fd, "root"); err != nil {
				t.Fatal(err)
			}
			f, err := unix.Openat(fd, "f", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(f)
		}
		next, err := unix.Openat(fd, "d", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
}

// WithNofile runs f with the soft limit of open files at n.
func WithNofile(t testing.TB, n uint64, f func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Fatal(err)
		}
	}()
	f()
}
