package httpapi

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ListenUnix binds the API socket at path, root-only (0600). It never
// changes the process's umask, which the agent's goroutines already running
// share: the socket is bound in a fresh directory of its own next to path
// (0700, so no other user can reach it before its mode is set), made 0600,
// then renamed into place (a bound unix socket keeps answering under its
// new name; clients connect by path). A socket another agent still answers
// on is refused; a stale one is replaced. Closing the listener removes the
// socket at path.
func ListenUnix(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s is in use: another agent is running", path)
	}
	tmp, err := os.MkdirTemp(dir, ".sock-")
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s (bound first as %s): %w", path, bound, err)
	}
	ln.SetUnlinkOnClose(false) // it would unlink bound, not path
	if err := os.Chmod(bound, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	_ = os.Remove(path)
	if err := os.Rename(bound, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return &unixListener{UnixListener: ln, path: path}, nil
}

// unixListener is the API socket's listener under the name it was renamed
// to: Addr is path, and Close removes path.
type unixListener struct {
	*net.UnixListener
	path   string
	unlink sync.Once
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	l.unlink.Do(func() { _ = os.Remove(l.path) })
	return l.UnixListener.Close()
}
