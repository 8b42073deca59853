package mountlayer

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Build creates entries (sorted, parents first) under the empty directory
// root, then sets owners and modes deepest first, so that a 0700 directory
// owned by someone else is filled before it gets its attributes.
func Build(root string, entries []Entry) error {
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(root, e.Path)
		if e.Dir {
			if err := unix.Mkdir(p, 0o700); err != nil {
				return fmt.Errorf("mkdir %s: %w", e.Path, err)
			}
			continue
		}
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", e.Path, err)
		}
		unix.Close(fd)
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		p := filepath.Join(root, e.Path)
		if err := unix.Lchown(p, int(e.UID), int(e.GID)); err != nil {
			return fmt.Errorf("chown %s: %w", e.Path, err)
		}
		// After the chown, which clears setuid and setgid.
		if err := unix.Chmod(p, e.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", e.Path, err)
		}
	}
	return nil
}
