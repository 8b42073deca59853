package runtime

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// isMountpoint reports whether path is a mount point, by comparing its device
// with its parent's (enough for overlay and nsfs mounts).
func isMountpoint(path string) bool {
	var st, pst unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	if err := unix.Lstat(path+"/..", &pst); err != nil {
		return false
	}
	return st.Dev != pst.Dev || st.Ino == pst.Ino
}

// mountOverlay mounts layers (base first) plus upper/work at target.
func mountOverlay(layers []string, upper, work, target string) error {
	opts, err := overlayOptions(layers, upper, work)
	if err != nil {
		return err
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", target, err)
	}
	return nil
}

// overlayOptions is mountOverlay's option string. The kernel copies at most
// one page of mount data, so a longer string (many layers, long paths) is
// refused here rather than truncated there.
func overlayOptions(layers []string, upper, work string) (string, error) {
	if len(layers) == 0 {
		return "", fmt.Errorf("%w: image has no layers", ErrInvalidSpec)
	}
	lower := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		if strings.ContainsAny(layers[i], ":,") {
			return "", fmt.Errorf("%w: layer path %q has ':' or ','", ErrInvalidSpec, layers[i])
		}
		lower = append(lower, layers[i])
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	if len(opts) >= os.Getpagesize() {
		return "", fmt.Errorf("overlay options too long (%d bytes) for %d layers", len(opts), len(layers))
	}
	return opts, nil
}

// unmount detaches the mount at path; a path that is not mounted is fine.
func unmount(path string) error {
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

// checkStatic refuses a dynamically linked init binary: it would not start in
// an image without the host's libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%w: init binary %s: %v", ErrInvalidConfig, path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: init binary %s is dynamically linked; build it with CGO_ENABLED=0", ErrInvalidConfig, path)
		}
	}
	return nil
}
