// Package secretfs writes the secret and config files of a task. The agent
// fetches a task's secrets into memory and hands them here; Prepare mounts
// a small tmpfs for the task (under the agent's run dir, never the data
// dir), checks that it really is a tmpfs before writing a byte, and writes
// each file there with its mode and owner. The container gets every file
// as a read-only bind mount at its target (the runtime's Spec.Files →
// ocispec's fileMounts), as Docker does for swarm secrets: the data lives
// in memory on the host, the container sees a tmpfs-backed file, and
// nothing of it reaches a disk. Release unmounts the tmpfs once the task's
// container is gone.
//
// It exists apart from the runtime because it needs nothing of it: the
// agent prepares a task's files before it asks the runtime for a
// container, and passes the mounts in Spec.Files.
package secretfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/rootfs"
)

// File is one secret or config to materialise for a container.
type File struct {
	// Target is the absolute path inside the container.
	Target string
	Data   []byte
	Mode   os.FileMode
	UID    int
	GID    int
}

// tmpfsMagic is TMPFS_MAGIC of statfs(2).
const tmpfsMagic = 0x01021994

// Prepare mounts a tmpfs at dir (replacing one a previous attempt
// left) and writes files into it. It refuses to write when dir is not a
// tmpfs after mounting, so data never lands on a disk. On error nothing
// stays mounted.
func Prepare(dir string, files []File) ([]ocispec.FileMount, error) {
	if err := Release(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	size := 64 << 10
	for _, f := range files {
		size += len(f.Data) + 4096
	}
	if err := rootfs.Tmpfs(dir, size, len(files)+16); err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	mounts, err := writeFiles(dir, files)
	if err != nil {
		return nil, errors.Join(err, Release(dir))
	}
	return mounts, nil
}

func writeFiles(dir string, files []File) ([]ocispec.FileMount, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Type != tmpfsMagic {
		return nil, fmt.Errorf("%s is not a tmpfs (type %#x): refusing to write secrets there", dir, st.Type)
	}
	out := make([]ocispec.FileMount, 0, len(files))
	for i, f := range files {
		if !path.IsAbs(f.Target) || path.Clean(f.Target) == "/" {
			return nil, fmt.Errorf("%w: file target %q is not an absolute file path", ocispec.ErrInvalidSpec, f.Target)
		}
		src := filepath.Join(dir, fmt.Sprintf("f%d", i))
		fd, err := os.OpenFile(src, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", f.Target, err)
		}
		_, werr := fd.Write(f.Data)
		if werr == nil {
			werr = fd.Chown(f.UID, f.GID)
		}
		if werr == nil {
			werr = fd.Chmod(f.Mode.Perm())
		}
		if cerr := fd.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("write %s: %w", f.Target, werr)
		}
		out = append(out, ocispec.FileMount{Source: src, Target: path.Clean(f.Target)})
	}
	return out, nil
}

// Release unmounts the tmpfs at dir (the data goes with it) and
// removes dir. It is idempotent.
func Release(dir string) error {
	if err := rootfs.Unmount(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
