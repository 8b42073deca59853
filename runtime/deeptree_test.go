package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// deepChain makes depth nested directories d/d/d/... under dir, as a
// container can in its writable layer with mkdir and cd. It holds two
// descriptors at a time.
func deepChain(t *testing.T, dir string, depth int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < depth; i++ {
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
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

// withNofile runs f with the soft limit of open files at n.
func withNofile(t *testing.T, n uint64, f func()) {
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

// TestDeepTreesRemoved: a chain of directories deeper than the agent may
// open files, in the state dir a restart deletes and in the writable layer
// a remove deletes, goes whole; a link to outside in them is removed, not
// followed.
func TestDeepTreesRemoved(t *testing.T) {
	cfg := testConfig(t)
	h := startHarness(t, cfg)
	c, _ := h.runToExit(t, Spec{Command: []string{"true"}})
	p := pathsOnDisk(t, cfg, c.ID)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{p.State, p.Upper} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(d, "out")); err != nil {
			t.Fatal(err)
		}
		deepChain(t, d, 3000)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	withNofile(t, 1024, func() {
		_, err = h.rt.Start(ctx, c.ID)
	})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if _, err := os.Lstat(p.State); err == nil {
		t.Errorf("the restart left %s", p.State)
	}
	h.wait(t, c.ID)
	withNofile(t, 1024, func() {
		err = h.rt.Remove(ctx, c.ID, false)
	})
	if err != nil {
		if s := err.Error(); len(s) > 500 {
			err = fmt.Errorf("%s… (%d bytes)", s[:500], len(s))
		}
		t.Errorf("remove: %v", err)
	}
	if _, err := os.Lstat(p.Dir); err == nil {
		t.Errorf("the remove left %s", p.Dir)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("the links' target: %v", err)
	}
}
