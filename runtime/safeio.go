package runtime

// Reading files a container may have touched.
//
// Since the supervisor (supervisor.go) holds every container's stdio and
// exit status, nothing the agent reads lives where a container can write:
// logs and exit records are written by the supervisor into the container's
// dir (Root/containers/<id>), which is not mounted into the container. The agent reads them
// as if a hostile workload could have placed anything there all the same
// (containers started by an older Shoal had their state and log dirs
// bind-mounted and writable, and a bug elsewhere must not turn into an
// unbounded read): every such file is opened relative to a directory handle
// the agent opened, with O_NOFOLLOW (a symlink to /dev/zero fails), with
// O_NONBLOCK (a FIFO cannot block the open), must be a regular file, and is
// read with a cap.

import (
	"os"

	"github.com/shoal-org/shoal/runtime/supervisor"
)

// Caps on what the agent reads from a container's dir.
const (
	// maxExitRecord caps an exit record (exit.json).
	maxExitRecord = 64 << 10
	// maxLogLine caps one stored log line; a longer line is skipped.
	maxLogLine = 1 << 20
	// maxSmallFile caps pid files and other one-line files.
	maxSmallFile = 4 << 10
)

// ErrUnsafeFile: a file the agent reads from a container's dir is not a
// regular file (a symlink, FIFO, device or directory) or is larger than its
// cap. The checked opens live in the supervisor package, which reads pid
// files and runc's log the same way and must not import this one.
var ErrUnsafeFile = supervisor.ErrUnsafeFile

func openInDir(dir, name string) (*os.File, error) { return supervisor.OpenInDir(dir, name) }

func readCapped(dir, name string, limit int64) ([]byte, error) {
	return supervisor.ReadCapped(dir, name, limit)
}
