package runtime

// Files a container may have touched (logs, exit records, pid files) are
// read without following links, as regular files, with a cap: why, in
// runtime/exitrecord's doc; the checked opens are runtime/supervisor's.

import "github.com/shoal-org/shoal/runtime/supervisor"

// ErrUnsafeFile: a file the agent reads from a container's dir is not a
// regular file (a symlink, FIFO, device or directory) or is larger than its
// cap. The checked opens live in the supervisor package, which reads pid
// files and runc's log the same way and must not import this one.
var ErrUnsafeFile = supervisor.ErrUnsafeFile
