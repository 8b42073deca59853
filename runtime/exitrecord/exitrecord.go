// Package exitrecord reads how a container's run ended: the exit record
// (supervisor.ExitRecordFile) the node supervisor writes in the
// container's dir once the output is drained, or, for a container started
// by an older Shoal, its init's in the state dir (Outcome).
//
// Since the supervisor (runtime/supervisor) holds every container's stdio and
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
//
// It exists apart from the runtime because the answer is a pure function
// of two files and the reads are where a hostile workload could push; the
// runtime records what Outcome says.
package exitrecord

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/shoal-org/shoal/runtime/containerinit"
	"github.com/shoal-org/shoal/runtime/supervisor"
)

// maxSize caps an exit record.
const maxSize = 64 << 10

// Outcome is the end of a run as the runtime records it: the exit code and
// error of the exit record in dir, else of the one in stateDir (an older
// init's), with the time it ended (zero when unknown); without a readable
// record, 137 and an error saying why.
func Outcome(dir, stateDir string) (code int, errMsg string, finishedAt time.Time) {
	code = 137
	st, ferr := Read(dir)
	if errors.Is(ferr, fs.ErrNotExist) {
		st, ferr = Read(stateDir)
	}
	switch {
	case ferr == nil:
		code, errMsg = st.ExitCode, st.Error
		finishedAt = st.FinishedAt
	case errors.Is(ferr, fs.ErrNotExist):
		errMsg = "exit status not recorded (the container's supervisor was gone)"
	default:
		errMsg = fmt.Sprintf("exit status unreadable: %v", ferr)
	}
	return code, errMsg, finishedAt
}

// Read reads the exit record in dir (the supervisor's in the
// container's dir, or an older init's state dir) without following links and
// with a size cap. A missing record gives an error wrapping fs.ErrNotExist.
func Read(dir string) (containerinit.ExitStatus, error) {
	var st containerinit.ExitStatus
	b, err := supervisor.ReadCapped(dir, supervisor.ExitRecordFile, maxSize)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode %s: %w", filepath.Join(dir, supervisor.ExitRecordFile), err)
	}
	return st, nil
}
