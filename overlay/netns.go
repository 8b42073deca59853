package overlay

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/shoal-org/shoal/overlay/linkutil"
)

// inNS runs fn in the programmed namespace. Netlink calls never need this
// (the handle is bound to the namespace); it is for /proc/sys/net, which
// shows the namespace of the calling thread. With no Config.NetNS, fn runs
// directly.
func (o *Overlay) inNS(fn func() error) error {
	if !o.ns.IsOpen() {
		return fn()
	}
	return linkutil.DoInNS(o.ns, fn)
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
