package rmtree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/rmtree/rmtreetest"
)

func gone(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s is still there (%v)", p, err)
	}
}

// TestRemoveAllDeeperThanTheFileLimit: a chain of 3000 directories goes
// with eleven descriptors to spare (window + 3), and its links are removed,
// not followed.
func TestRemoveAllDeeperThanTheFileLimit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rmtreetest.DeepChain(t, dir, 3000, 500)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// The listing counted its own descriptor, closed since.
	rmtreetest.WithNofile(t, uint64(len(fds)-1+window+3), func() { err = RemoveAll(dir) })
	if err != nil {
		t.Fatal(err)
	}
	gone(t, dir)
}

// TestRemoveAllLinks: links to outside, at the path and below it, are
// removed, their targets kept.
func TestRemoveAllLinks(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(filepath.Join(outside, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(outside, "sub", "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(base, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"dirlink", "a/dirlink", "a/b/dirlink"} {
		if err := os.Symlink(outside, filepath.Join(tree, l)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(keep, filepath.Join(tree, "a", "filelink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside/sub", filepath.Join(tree, "a", "rel")); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(base, "toplink")
	if err := os.Symlink(outside, top); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{top, tree} {
		if err := RemoveAll(p); err != nil {
			t.Fatal(err)
		}
		gone(t, p)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "x" {
		t.Errorf("the links' target: %q %v", b, err)
	}
}

// TestRemoveAllWide: many subdirectories and files side by side, a tree
// deeper than the window with many on every level, and directories
// without any permission, on the test's file system and on a tmpfs (whose
// read positions may move as entries go).
func TestRemoveAllWide(t *testing.T) {
	dirs := map[string]string{"tempdir": t.TempDir()}
	if os.Geteuid() == 0 {
		d := t.TempDir()
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size=64m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
		dirs["tmpfs"] = d
	}
	for what, base := range dirs {
		t.Run(what, func(t *testing.T) {
			tree := filepath.Join(base, "tree")
			for i := 0; i < 1500; i++ {
				d := filepath.Join(tree, fmt.Sprintf("d%04d", i))
				if err := os.MkdirAll(filepath.Join(d, "x"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(tree, fmt.Sprintf("f%04d", i)), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, "x", "f"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if i%100 == 0 && os.Geteuid() == 0 {
					if err := os.Chmod(d, 0); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := unix.Mkfifo(filepath.Join(tree, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
			// Deeper than the window, with files and dirs on every level
			// beside the way down: levels are closed and opened again, and
			// read on from where they were.
			d := filepath.Join(tree, "branchy")
			for depth := 0; depth < 3*window; depth++ {
				for i := 0; i < 40; i++ {
					if err := os.MkdirAll(filepath.Join(d, fmt.Sprintf("l%02d", i)), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%02d", i)), nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				d = filepath.Join(d, "n")
			}
			if err := RemoveAll(tree); err != nil {
				t.Fatal(err)
			}
			gone(t, tree)
		})
	}
}

// TestRemoveAllStopsAtMountPoints: a file system mounted below the path
// is not entered; its files stay.
func TestRemoveAllStopsAtMountPoints(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	tree := filepath.Join(t.TempDir(), "tree")
	mnt := filepath.Join(tree, "a", "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	keep := filepath.Join(mnt, "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(tree); !errors.Is(err, ErrMountPoint) {
		t.Errorf("removing a tree with a mount point in it: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a file of the mounted file system: %v", err)
	}
}

func TestRemoveAllOther(t *testing.T) {
	base := t.TempDir()
	if err := RemoveAll(filepath.Join(base, "missing")); err != nil {
		t.Errorf("missing: %v", err)
	}
	if err := RemoveAll(filepath.Join(base, "missing", "below")); err != nil {
		t.Errorf("below a missing dir: %v", err)
	}
	f := filepath.Join(base, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(f); err != nil {
		t.Fatal(err)
	}
	gone(t, f)
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(empty + "/"); err != nil {
		t.Fatal(err)
	}
	gone(t, empty)
	if err := RemoveAll(base + "/."); err == nil {
		t.Error("removing . was not refused")
	}
}
