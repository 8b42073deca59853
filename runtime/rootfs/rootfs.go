// Package rootfs mounts and unmounts a container's root filesystem: an
// overlayfs of the image's layers (base first, the mountpoints layer on
// top when there is one) under the container's upper and work dirs. It
// also mounts the small tmpfs that hold a task's secret files
// (runtime/secretfs) and a container's /etc files (runtime/bundle), and
// its Unmount takes them down.
//
// It exists apart from the runtime because these are plain system calls
// on paths, with one rule worth testing alone: the kernel copies at most a
// page of mount options, so a layer stack whose options would not fit is
// refused (Options) rather than silently truncated, and the runtime then
// mounts without the mountpoints layer.
package rootfs

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/ocispec"
)

// IsMountpoint reports whether path is a mount point, by comparing its device
// with its parent's (enough for overlay and nsfs mounts).
func IsMountpoint(path string) bool {
	var st, pst unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	if err := unix.Lstat(path+"/..", &pst); err != nil {
		return false
	}
	return st.Dev != pst.Dev || st.Ino == pst.Ino
}

// Overlay mounts layers (base first) plus upper/work at target.
func Overlay(layers []string, upper, work, target string) error {
	opts, err := Options(layers, upper, work)
	if err != nil {
		return err
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", target, err)
	}
	return nil
}

// Options is Overlay's option string. The kernel copies at most
// one page of mount data, so a longer string (many layers, long paths) is
// refused here rather than truncated there.
func Options(layers []string, upper, work string) (string, error) {
	if len(layers) == 0 {
		return "", fmt.Errorf("%w: image has no layers", ocispec.ErrInvalidSpec)
	}
	lower := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		if strings.ContainsAny(layers[i], ":,") {
			return "", fmt.Errorf("%w: layer path %q has ':' or ','", ocispec.ErrInvalidSpec, layers[i])
		}
		lower = append(lower, layers[i])
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	if len(opts) >= os.Getpagesize() {
		return "", fmt.Errorf("overlay options too long (%d bytes) for %d layers", len(opts), len(layers))
	}
	return opts, nil
}

// Tmpfs mounts a tmpfs of at most size bytes and inodes inodes (its root
// included) at dir, which must exist: root-only (mode 0700), nosuid, nodev,
// noexec. It checks with statfs that dir then is a tmpfs, and on any error
// leaves nothing mounted there. The pages the tmpfs holds are charged to the
// memory cgroup of whoever writes them. runtime/secretfs mounts a task's
// secret files on one, runtime/bundle a container's /etc files.
func Tmpfs(dir string, size, inodes int) error {
	opts := fmt.Sprintf("mode=0700,size=%d,nr_inodes=%d", size, inodes)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount a tmpfs at %s: %w", dir, err)
	}
	var st unix.Statfs_t
	err := unix.Statfs(dir, &st)
	if err == nil && st.Type != unix.TMPFS_MAGIC {
		err = fmt.Errorf("not a tmpfs (type %#x) after mounting one", st.Type)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("statfs %s: %w", dir, err), Unmount(dir))
	}
	return nil
}

// Unmount detaches the mounts stacked at path (lazily); a path that is not mounted is fine.
func Unmount(path string) error {
	for i := 0; i < 8; i++ { // stacked mounts
		err := unix.Unmount(path, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return nil
}
