// Package netns makes, checks and removes the persistent network namespace
// of a container: a bind mount of the namespace at a path
// (RunRoot/<id>/netns, or Root/netns/<id> for a container made without a
// run dir), with lo up, that runc joins and that outlives the container's
// processes and agent restarts.
package netns

import (
	"errors"
	"fmt"
	"os"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// Create makes a persistent network namespace bind-mounted at path,
// with lo up, without changing the namespace of any other thread: the work
// happens on a locked OS thread that is restored afterwards (or, if restoring
// fails, left locked so the Go runtime discards it).
func Create(path string) error {
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
		_ = Remove(path)
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

// Remove unmounts and deletes a namespace made by Create. A missing
// namespace is not an error.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// nsfsMagic is the filesystem magic of a bind-mounted namespace file.
const nsfsMagic = 0x6e736673

// IsMount reports whether path is a bind-mounted namespace.
func IsMount(path string) bool {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return false
	}
	return fs.Type == nsfsMagic
}
