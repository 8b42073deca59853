package runtime

import (
	"errors"
	"os/exec"
	goruntime "runtime"
	"sync"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"

	"github.com/shoal-org/shoal/api/timerslack"
)

// slackMonitor is go-runc's process monitor with every runc command
// started through timerslack.Start: the agent's threads run with a coarse
// timer slack (api/timerslack, set at the agent's start), a forked process
// inherits its thread's, and runc and the processes it starts in a
// container (a health probe's `runc exec`) must keep the default.
type slackMonitor struct{}

var installMonitor sync.Once

// useSlackMonitor makes every go-runc command of this process start
// through slackMonitor (go-runc reads its monitor from a package variable).
func useSlackMonitor() {
	installMonitor.Do(func() { runc.Monitor = slackMonitor{} })
}

func (slackMonitor) Start(c *exec.Cmd) (chan runc.Exit, error) {
	if err := timerslack.Start(c); err != nil {
		return nil, err
	}
	ec := make(chan runc.Exit, 1)
	go func() {
		ec <- waitExit(c)
		close(ec)
	}()
	return ec, nil
}

// StartLocked keeps the starting goroutine on its thread until the child
// exits, as go-runc's own does (for a parent-death signal, which is tied
// to the thread).
func (slackMonitor) StartLocked(c *exec.Cmd) (chan runc.Exit, error) {
	started := make(chan error, 1)
	ec := make(chan runc.Exit, 1)
	go func() {
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		if err := timerslack.Start(c); err != nil {
			started <- err
			return
		}
		started <- nil
		ec <- waitExit(c)
		close(ec)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return ec, nil
}

func (slackMonitor) Wait(_ *exec.Cmd, ec chan runc.Exit) (int, error) {
	e := <-ec
	return e.Status, nil
}

// waitExit waits for c and reports its exit as go-runc's monitor does:
// 255 when the status is unknown.
func waitExit(c *exec.Cmd) runc.Exit {
	status := 0
	if err := c.Wait(); err != nil {
		status = 255
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
				status = ws.ExitStatus()
			}
		}
	}
	return runc.Exit{Timestamp: time.Now(), Pid: c.Process.Pid, Status: status}
}
