package runtime

// Exec: a process started inside a running container (`shoal exec`).
//
// The process runs under `runc exec --detach`: runc starts it in the
// container's namespaces, cgroup and security settings (taken from the
// bundle's config.json, with the caller's command, environment, user and
// working directory) and exits. The agent is a child subreaper, so the
// process is then the agent's child: its exit status comes from a wait4 on
// its pid once its pidfd says it ended (never a wait for any child, as for
// containers), and signals go to it through the pidfd.
//
// With a TTY, runc allocates the pty inside the container and hands the
// master to the agent over a console socket (SCM_RIGHTS); the caller relays
// it and resizes it. Without, the process gets pipes the agent made: its
// stdin (or /dev/null), stdout and stderr. runc detaches, so it needs no
// copying goroutine of its own; its error messages land on the stderr pipe,
// which the agent reads back when runc fails before the process started.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
)

// ExecOptions describe a process to start in a running container.
type ExecOptions struct {
	Args []string
	// Env entries (K=V) override the container's environment.
	Env []string
	// User overrides the container's user (uid[:gid] or names from the
	// container's /etc/passwd and /etc/group); Workdir its working dir.
	User    string
	Workdir string
	// Tty gives the process a terminal (ExecProcess.Console); Stdin makes
	// ExecProcess.Stdin a pipe to the process (without Tty).
	Tty           bool
	Stdin         bool
	Width, Height uint16
}

// ExecProcess is a process started by Exec. The caller reads its output
// (Console, or Stdout and Stderr), writes its input, waits with Done and
// ExitCode, and must Close it.
type ExecProcess struct {
	Pid int
	// Console is the pty master with Tty: read it for output (EIO once
	// every holder of the terminal closed it), write it for input.
	Console *os.File
	// Stdin (nil unless asked for), Stdout and Stderr are the pipes of a
	// process without Tty.
	Stdin          *os.File
	Stdout, Stderr *os.File

	pidfd *os.File
	done  chan struct{}
	code  int
	once  sync.Once
}

// Done is closed once the process has ended and ExitCode is known.
func (p *ExecProcess) Done() <-chan struct{} { return p.done }

// ExitCode is the process's exit status (128+N when killed by signal N),
// valid once Done is closed; -1 if the status could not be collected.
func (p *ExecProcess) ExitCode() int {
	<-p.done
	return p.code
}

// Signal sends sig to the process; a process that ended is not an error.
func (p *ExecProcess) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	}); err != nil {
		return err
	}
	if errors.Is(serr, unix.ESRCH) {
		return nil
	}
	return serr
}

// Resize sets the terminal size of a Tty process.
func (p *ExecProcess) Resize(width, height uint16) error {
	if p.Console == nil {
		return errors.New("resize: the process has no terminal")
	}
	return resizeConsole(p.Console, width, height)
}

func resizeConsole(f *os.File, width, height uint16) error {
	if width == 0 || height == 0 {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width})
	}); err != nil {
		return err
	}
	return ierr
}

// Close releases the process's pipes or terminal. It does not kill the
// process (closing a terminal hangs it up, as ssh does). Safe to call twice.
func (p *ExecProcess) Close() {
	p.once.Do(func() {
		for _, f := range []*os.File{p.Console, p.Stdin, p.Stdout, p.Stderr} {
			if f != nil {
				f.Close()
			}
		}
	})
}

// Exec starts a process in the running container idOrName. It returns once
// the process runs (or runc failed to start it: ErrExecFailed with runc's
// message). The process outlives a cancelled ctx.
func (r *Runtime) Exec(ctx context.Context, idOrName string, opts ExecOptions) (*ExecProcess, error) {
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	if len(opts.Args) == 0 || opts.Args[0] == "" {
		return nil, ErrNoCommand
	}
	for _, e := range opts.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, fmt.Errorf("%w: env %q: want KEY=VALUE", ErrInvalidSpec, e)
		}
	}
	if strings.ContainsRune(strings.Join(slices.Concat(opts.Args, opts.Env, []string{opts.User, opts.Workdir}), ""), 0) {
		return nil, fmt.Errorf("%w: NUL byte in the command, env, user or workdir", ErrInvalidSpec)
	}
	if opts.Workdir != "" && !path.IsAbs(opts.Workdir) {
		return nil, fmt.Errorf("%w: workdir %q: must be an absolute path", ErrInvalidSpec, opts.Workdir)
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	id, state := c.rec.ID, c.rec.State
	r.mu.Unlock()
	if state != api.ContainerRunning {
		return nil, fmt.Errorf("exec in %s: %w", ShortID(id), ErrNotRunning)
	}
	if on, err := unix.PrctlRetInt(unix.PR_GET_CHILD_SUBREAPER, 0, 0, 0, 0); err == nil && on == 0 {
		// The exit status would go to whoever adopts the process.
		return nil, fmt.Errorf("exec needs the agent to be a child subreaper")
	}
	p := r.pathsOf(id)
	proc, err := r.execProcessSpec(p, opts)
	if err != nil {
		return nil, err
	}
	return r.startExec(ctx, id, p, proc, opts)
}

// execProcessSpec derives the exec'd process from the container's own
// (capabilities, no-new-privileges, rlimits, environment).
func (r *Runtime) execProcessSpec(p paths, opts ExecOptions) (specs.Process, error) {
	b, err := os.ReadFile(p.config)
	if err != nil {
		return specs.Process{}, fmt.Errorf("read bundle config: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil || s.Process == nil {
		return specs.Process{}, fmt.Errorf("decode bundle config: %v", err)
	}
	proc := *s.Process
	proc.Args = slices.Clone(opts.Args)
	proc.Env = overrideEnv(proc.Env, opts.Env)
	proc.Terminal = opts.Tty
	proc.ConsoleSize = nil
	if opts.Tty && opts.Width > 0 && opts.Height > 0 {
		proc.ConsoleSize = &specs.Box{Width: uint(opts.Width), Height: uint(opts.Height)}
	}
	if opts.Workdir != "" {
		proc.Cwd = opts.Workdir
	}
	if opts.User != "" {
		uid, gid, extra, err := ResolveUser(p.rootfs, opts.User)
		if err != nil {
			return specs.Process{}, err
		}
		proc.User = specs.User{UID: uid, GID: gid, AdditionalGids: extra}
	}
	return proc, nil
}

// overrideEnv sets the K=V entries of over in env (replacing a K already
// there, else appending).
func overrideEnv(env, over []string) []string {
	out := slices.Clone(env)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

func (r *Runtime) startExec(ctx context.Context, id string, p paths, proc specs.Process, opts ExecOptions) (_ *ExecProcess, err error) {
	tmp, err := os.MkdirTemp("", "shoal-exec-")
	if err != nil {
		return nil, fmt.Errorf("exec temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	procFile := filepath.Join(tmp, "process.json")
	pidFile := filepath.Join(tmp, "pid")
	b, err := json.Marshal(proc)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(procFile, b, 0o600); err != nil {
		return nil, fmt.Errorf("write exec process: %w", err)
	}
	args := []string{"--root", r.cfg.RuncRoot, "exec", "--detach", "--process", procFile, "--pid-file", pidFile}
	cmd := exec.CommandContext(ctx, r.cfg.RuncBinary)
	out := &ExecProcess{done: make(chan struct{})}
	defer func() {
		if err != nil {
			out.Close()
		}
	}()
	var (
		mine      []*os.File // the process's ends, closed once runc exited
		runcErr   bytes.Buffer
		consoleCh chan consoleResult
	)
	defer func() {
		for _, f := range mine {
			f.Close()
		}
	}()
	if opts.Tty {
		sock := filepath.Join(tmp, "console.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		defer ln.Close()
		consoleCh = make(chan consoleResult, 1)
		go func() { consoleCh <- receiveConsole(ln) }()
		args = append(args, "--tty", "--console-socket", sock)
		cmd.Stdout, cmd.Stderr = &runcErr, &runcErr
	} else {
		if opts.Stdin {
			pr, pw, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			cmd.Stdin, out.Stdin = pr, pw
			mine = append(mine, pr)
		}
		or, ow, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		out.Stdout = or
		mine = append(mine, ow)
		er, ew, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		out.Stderr = er
		mine = append(mine, ew)
		cmd.Stdout, cmd.Stderr = ow, ew
	}
	cmd.Args = append(append([]string{r.cfg.RuncBinary}, args...), id)
	runErr := cmd.Run()
	for _, f := range mine {
		f.Close()
	}
	mine = nil
	if runErr != nil {
		msg := runcErr.String()
		if !opts.Tty {
			// runc wrote its error where the process's stderr would go;
			// nothing else holds the pipe now.
			_ = out.Stderr.SetReadDeadline(time.Now().Add(time.Second))
			eb, _ := io.ReadAll(io.LimitReader(out.Stderr, 16<<10))
			msg = string(eb)
		}
		return nil, fmt.Errorf("%w: %s", ErrExecFailed, runcMessage(msg, runErr))
	}
	pb, err := os.ReadFile(pidFile)
	if err != nil {
		return nil, fmt.Errorf("exec: read pid file: %w", err)
	}
	out.Pid, err = strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil {
		return nil, fmt.Errorf("exec: parse pid file: %w", err)
	}
	pidfd, err := unix.PidfdOpen(out.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("exec: pidfd_open %d: %w", out.Pid, err)
	}
	out.pidfd = os.NewFile(uintptr(pidfd), "exec-pidfd")
	if opts.Tty {
		var res consoleResult
		select {
		case res = <-consoleCh:
		case <-time.After(10 * time.Second):
			res.err = errors.New("runc sent no terminal")
		}
		if res.err != nil {
			_ = out.Signal(unix.SIGKILL)
			r.reapExec(out)
			return nil, fmt.Errorf("exec: receive terminal: %w", res.err)
		}
		out.Console = res.f
		if err := out.Resize(opts.Width, opts.Height); err != nil {
			r.log.Debug("exec: initial terminal size", "err", err)
		}
	}
	r.reapExec(out)
	return out, nil
}

// reapExec waits, on a goroutine, for the process to end, then collects
// its status by pid and closes Done. If Run ends first the status is lost
// (-1) and Done is closed anyway.
func (r *Runtime) reapExec(p *ExecProcess) {
	fn := func() {
		defer close(p.done)
		defer p.pidfd.Close()
		p.code = -1
		stop := context.AfterFunc(r.runCtx, func() { _ = p.pidfd.SetReadDeadline(time.Now()) })
		defer stop()
		rc, err := p.pidfd.SyscallConn()
		if err != nil {
			return
		}
		exited := false
		_ = rc.Read(func(fd uintptr) bool {
			exited = pidExited(int(fd))
			return exited
		})
		if !exited {
			return
		}
		var ws syscall.WaitStatus
		for {
			wpid, err := syscall.Wait4(p.Pid, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if err == nil && wpid == p.Pid {
				switch {
				case ws.Exited():
					p.code = ws.ExitStatus()
				case ws.Signaled():
					p.code = 128 + int(ws.Signal())
				}
			}
			return
		}
	}
	if !r.spawn(fn) {
		p.pidfd.Close()
		p.code = -1
		close(p.done)
	}
}

type consoleResult struct {
	f   *os.File
	err error
}

// receiveConsole accepts runc's connection on the console socket and
// returns the pty master it sends, non-blocking (so reads honour
// deadlines).
func receiveConsole(ln *net.UnixListener) consoleResult {
	_ = ln.SetDeadline(time.Now().Add(30 * time.Second))
	conn, err := ln.AcceptUnix()
	if err != nil {
		return consoleResult{err: err}
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return consoleResult{err: err}
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return consoleResult{err: fmt.Errorf("no file descriptor in the console message (%v)", err)}
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return consoleResult{err: fmt.Errorf("want one file descriptor in the console message (%v)", err)}
	}
	unix.CloseOnExec(fds[0])
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return consoleResult{err: err}
	}
	return consoleResult{f: os.NewFile(uintptr(fds[0]), "pty-master")}
}

// runcMessage extracts what a user can act on from runc's output.
func runcMessage(out string, err error) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return err.Error()
	}
	// runc logs as `time="..." level=error msg="exec failed: ..."`.
	if i := strings.LastIndex(out, `msg="`); i >= 0 {
		m := out[i+5:]
		if j := strings.LastIndex(m, `"`); j >= 0 {
			m = m[:j]
		}
		return strings.ReplaceAll(m, `\"`, `"`)
	}
	if len(out) > 512 {
		out = out[len(out)-512:]
	}
	return out
}
