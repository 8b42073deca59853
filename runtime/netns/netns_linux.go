package runtime

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// createNetns makes a persistent network namespace bind-mounted at path,
// with lo up, without changing the namespace of any other thread: the work
// happens on a locked OS thread that is restored afterwards (or, if restoring
// fails, left locked so the Go runtime discards it).
func createNetns(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns file %s: %w", path, err)
	}
	f.Close()
	errCh := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			goruntime.UnlockOSThread()
			errCh <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			goruntime.UnlockOSThread()
			errCh <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		err = unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "none", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind-mount netns at %s: %w", path, err)
		} else if lerr := loopbackUp(); lerr != nil {
			err = fmt.Errorf("bring lo up in %s: %w", path, lerr)
		}
		if serr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); serr != nil {
			// Leave the thread locked: it dies with this goroutine.
			errCh <- errors.Join(err, fmt.Errorf("restore netns: %w", serr))
			return
		}
		goruntime.UnlockOSThread()
		errCh <- err
	}()
	if err := <-errCh; err != nil {
		_ = removeNetns(path)
		return err
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// removeNetns unmounts and deletes a namespace made by createNetns. A missing
// namespace is not an error.
func removeNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

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

// nsfsMagic is the filesystem magic of a bind-mounted namespace file.
const nsfsMagic = 0x6e736673

// isNetnsMount reports whether path is a bind-mounted namespace.
func isNetnsMount(path string) bool {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return false
	}
	return fs.Type == nsfsMagic
}

// mountOverlay mounts layers (base first) plus upper/work at target.
func mountOverlay(layers []string, upper, work, target string) error {
	if len(layers) == 0 {
		return fmt.Errorf("%w: image has no layers", ErrInvalidSpec)
	}
	lower := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		if strings.ContainsAny(layers[i], ":,") {
			return fmt.Errorf("%w: layer path %q has ':' or ','", ErrInvalidSpec, layers[i])
		}
		lower = append(lower, layers[i])
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lower, ":"), upper, work)
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay options too long (%d bytes) for %d layers", len(opts), len(layers))
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", target, err)
	}
	return nil
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
