package health

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/runtime/supervisor"
)

// Prober runs a container's health check command through `runc exec`.
type Prober struct {
	Runc *runc.Runc
	ID   string // the container's
	// Bundle is the container's bundle dir; Config (its config.json) and
	// PidFile (where runc writes the probe's pid) are paths in it.
	Bundle, Config, PidFile string
	// Kill SIGKILLs pid, the probe of a runc exec killed at the timeout,
	// only if it is still a process of the container, and reports an
	// error otherwise: the pid comes from a file, and once the probe is
	// reaped (by whichever process adopted it) the pid may be another
	// process's. The runtime's is initproc.Signal with the container's
	// cgroup. Nil kills nothing.
	Kill func(pid int) error
}

// Probe runs one health check command in the container through `runc exec`
// with the container's own process settings, and reports whether it exited 0
// within timeout, with the tail of its output.
func (p Prober) Probe(ctx context.Context, args []string, timeout time.Duration) (bool, string) {
	id := p.ID
	var s specs.Spec
	b, err := supervisor.ReadCapped(p.Bundle, filepath.Base(p.Config), 16<<20)
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil || s.Process == nil {
		return false, fmt.Sprintf("read bundle config: %v", err)
	}
	proc := *s.Process
	proc.Args = args
	proc.Terminal = false

	pidPath := p.PidFile
	_ = os.Remove(pidPath)
	// The probe's output goes through a pipe of which we keep the first
	// probeOutputCap bytes: a probe printing /dev/zero costs neither disk
	// nor agent memory.
	pr, pw, err := os.Pipe()
	if err != nil {
		return false, fmt.Sprintf("health output pipe: %v", err)
	}
	outCh := make(chan []byte, 1)
	go func() {
		defer pr.Close()
		b, _ := io.ReadAll(io.LimitReader(pr, probeOutputCap))
		_, _ = io.Copy(io.Discard, pr) // until every writer is gone or the deadline
		outCh <- b
	}()

	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = p.Runc.Exec(pctx, id, proc, &runc.ExecOpts{IO: probeIO{pw}, PidFile: pidPath})
	pw.Close()
	timedOut := pctx.Err() != nil
	if timedOut {
		// runc was killed; the probe process may live on: kill it.
		p.killProbe()
	}
	// Descendants of the probe may hold the pipe open: stop reading soon.
	_ = pr.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	out := <-outCh
	if timedOut {
		return false, fmt.Sprintf("health check timed out after %s", timeout)
	}
	msg := strings.TrimSpace(string(out))
	if err != nil {
		return false, msg
	}
	return true, msg
}

const (
	// probeOutputCap is how much of a health probe's output is kept.
	probeOutputCap = 4096
	// maxPidFile caps the probe's pid file.
	maxPidFile = 4 << 10
)

// killProbe SIGKILLs the process whose pid runc wrote in the pid file,
// through Kill, which checks it is still the container's; it is a child of
// the (killed) runc exec, so its reaper is not us.
func (p Prober) killProbe() {
	if p.Kill == nil {
		return
	}
	b, err := supervisor.ReadCapped(p.Bundle, filepath.Base(p.PidFile), maxPidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return
	}
	_ = p.Kill(pid)
}

// probeIO gives runc exec (and so the probe) a pipe as stdout and stderr
// and /dev/null as stdin.
type probeIO struct{ w *os.File }

func (i probeIO) Close() error          { return nil }
func (i probeIO) Stdin() io.WriteCloser { return nil }
func (i probeIO) Stdout() io.ReadCloser { return nil }
func (i probeIO) Stderr() io.ReadCloser { return nil }

// Set implements runc.IO.
func (i probeIO) Set(cmd *exec.Cmd) {
	cmd.Stdin = nil
	cmd.Stdout = i.w
	cmd.Stderr = i.w
}
