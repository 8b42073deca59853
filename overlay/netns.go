package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	"github.com/vishvananda/netns"
)

// inNS runs fn in the programmed namespace. Netlink calls never need this
// (the handle is bound to the namespace); it is for /proc/sys/net, which
// shows the namespace of the calling thread. With no Config.NetNS, fn runs
// directly.
func (o *Overlay) inNS(fn func() error) error {
	if !o.ns.IsOpen() {
		return fn()
	}
	return doInNS(o.ns, fn)
}

// doInNS runs fn on a fresh OS thread that entered ns, and waits for it. The
// thread goes back to its original namespace afterwards; if that fails, the
// goroutine exits still locked, which makes the Go runtime discard the
// thread rather than reuse it in the wrong namespace.
func doInNS(ns netns.NsHandle, fn func() error) error {
	errCh := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			errCh <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			goruntime.UnlockOSThread()
			errCh <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errCh <- errors.Join(ferr, fmt.Errorf("return to original network namespace: %w", err))
			return // thread stays locked and is destroyed
		}
		goruntime.UnlockOSThread()
		errCh <- ferr
	}()
	return <-errCh
}

// writeSysctl sets /proc/sys/<key> (key with slashes) if it differs.
func writeSysctl(key, value string) error {
	path := filepath.Join("/proc/sys", key)
	if cur, err := os.ReadFile(path); err == nil && string(trimNL(cur)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
