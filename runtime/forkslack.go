package runtime

import (
	"os/exec"
	goruntime "runtime"
	"sync"

	runc "github.com/containerd/go-runc"

	"github.com/shoal-org/shoal/api/timerslack"
)

// slackMonitor is go-runc's own process monitor (next) with every runc
// command forked through timerslack.Fork: the agent's threads run with a
// coarse timer slack (api/timerslack, set at the agent's start), a forked
// process inherits its thread's, and runc and the processes it starts in
// a container (a health probe's `runc exec`) must keep the default.
type slackMonitor struct{ next runc.ProcessMonitor }

var installMonitor sync.Once

// useSlackMonitor makes every go-runc command of this process start
// through slackMonitor (go-runc reads its monitor from a package variable).
func useSlackMonitor() {
	installMonitor.Do(func() { runc.Monitor = slackMonitor{next: runc.Monitor} })
}

func (m slackMonitor) Start(c *exec.Cmd) (ec chan runc.Exit, err error) {
	err = timerslack.Fork(func() (err error) {
		ec, err = m.next.Start(c)
		return err
	})
	return ec, err
}

// StartLocked keeps the forking thread until the child exits, as go-runc's
// own does (a parent-death signal is tied to the thread), but forks
// through Start so that the thread's slack is the default meanwhile.
func (m slackMonitor) StartLocked(c *exec.Cmd) (chan runc.Exit, error) {
	started := make(chan error, 1)
	out := make(chan runc.Exit, 1)
	go func() {
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		ec, err := m.Start(c)
		started <- err
		if err != nil {
			return
		}
		out <- <-ec
		close(out)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return out, nil
}

func (m slackMonitor) Wait(c *exec.Cmd, ec chan runc.Exit) (int, error) { return m.next.Wait(c, ec) }
