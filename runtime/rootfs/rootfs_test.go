package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTmpfs: the tmpfs holds at most its size and its inodes, is
// root-only, and Unmount takes it down.
func TestTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := Tmpfs(dir, 64<<10, 4); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Unmount(dir) })
	if !IsMountpoint(dir) {
		t.Fatal("not mounted")
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 1<<20), 0o644)
	if !errors.Is(err, unix.ENOSPC) {
		t.Errorf("1 MiB on a 64 KiB tmpfs: %v", err)
	}
	var created int
	for i := 0; i < 8; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint(i)), nil, 0o644); err != nil {
			break
		}
		created++
	}
	if created > 2 { // the root and "big" take two of the four
		t.Errorf("%d files made on a tmpfs of 4 inodes", created)
	}
	if err := Unmount(dir); err != nil {
		t.Fatal(err)
	}
	if IsMountpoint(dir) {
		t.Error("still mounted")
	}
}
