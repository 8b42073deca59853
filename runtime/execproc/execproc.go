// Package execproc starts a process inside a running container (`shoal
// exec`) and hands its stdio or terminal, its signals and its exit code to
// the caller.
//
// The process runs under `runc exec --detach`: runc starts it in the
// container's namespaces, cgroup and security settings (taken from the
// bundle's config.json, with the caller's command, environment, user and
// working directory) and exits. Only a process's parent, or the subreaper
// it is handed to when runc exits, learns its exit status, and the agent is
// not a subreaper (it would adopt the node supervisor, which must outlive
// it). So the node supervisor (runtime/supervisor), already the subreaper of
// every container's init, runs runc for an exec too: the agent sends it an
// "exec" request with the process's stdin, stdout and stderr as SCM_RIGHTS,
// the supervisor answers the pid once runc exited, and on the same
// connection forwards the agent's signals to the process and reports its
// exit code when it reaps it. The supervisor holds none of the process's
// stdio after runc started: the agent reads it directly.
//
// With a TTY, runc allocates the pty inside the container and hands the
// master to the agent over a console socket the agent listens on
// (SCM_RIGHTS); the caller relays it and resizes it. Without, the process
// gets pipes the agent made: its stdin (or /dev/null), stdout and stderr.
// runc's own error messages land on the stderr it was given (the process's
// stderr pipe, or with a TTY a pipe of their own), which the agent reads
// back when runc fails before the process started.
package execproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/supervisor"
)

// ErrFailed: runc could not start an exec'd process (no such executable,
// bad user or working directory); the message is runc's. The runtime's
// ErrExecFailed is this error.
var ErrFailed = errors.New("exec failed")

// Options describe a process to start in a running container.
type Options struct {
	Args []string
	// Env entries (K=V) override the container's environment.
	Env []string
	// User overrides the container's user (uid[:gid] or names from the
	// container's /etc/passwd and /etc/group); Workdir its working dir.
	User    string
	Workdir string
	// Tty gives the process a terminal (Process.Console); Stdin makes
	// Process.Stdin a pipe to the process (without Tty).
	Tty           bool
	Stdin         bool
	Width, Height uint16
}

// Process is a process started by Launcher.Start. The caller reads its output
// (Console, or Stdout and Stderr), writes its input, waits with Done and
// ExitCode, and must Close it.
type Process struct {
	Pid int
	// Console is the pty master with Tty: read it for output (EIO once
	// every holder of the terminal closed it), write it for input.
	Console *os.File
	// Stdin (nil unless asked for), Stdout and Stderr are the pipes of a
	// process without Tty.
	Stdin          *os.File
	Stdout, Stderr *os.File

	// conn is the supervisor's connection for this process: "signal"
	// lines go out on it, its exit comes back on it.
	conn *net.UnixConn
	wmu  sync.Mutex // one signal line at a time
	done chan struct{}
	code int
	once sync.Once
}

// Done is closed once the process has ended and ExitCode is known.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the process's exit status (128+N when killed by signal N),
// valid once Done is closed; -1 if the status could not be collected.
func (p *Process) ExitCode() int {
	<-p.done
	return p.code
}

// Signal sends sig to the process (through the supervisor, which sends it
// only while the process is unreaped, so never to a reused pid); a process
// that ended is not an error.
func (p *Process) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if sig <= 0 || sig > 64 {
		return fmt.Errorf("signal %d: out of range", sig)
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := supervisor.WriteLine(p.conn, supervisor.Request{Op: "signal", Signal: int(sig)}); err != nil {
		select {
		case <-p.done: // it ended meanwhile; the connection is closed
			return nil
		default:
		}
		return fmt.Errorf("signal exec'd process %d: %w", p.Pid, err)
	}
	return nil
}

// Resize sets the terminal size of a Tty process.
func (p *Process) Resize(width, height uint16) error {
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
func (p *Process) Close() {
	p.once.Do(func() {
		for _, f := range []*os.File{p.Console, p.Stdin, p.Stdout, p.Stderr} {
			if f != nil {
				f.Close()
			}
		}
	})
}

// Validate checks what the caller gave before any container is looked
// up: a command, KEY=VALUE env entries, no NUL byte, an absolute workdir.
// Its errors wrap ocispec.ErrNoCommand or ocispec.ErrInvalidSpec (the
// runtime's ErrNoCommand and ErrInvalidSpec).
func (opts Options) Validate() error {
	if len(opts.Args) == 0 || opts.Args[0] == "" {
		return ocispec.ErrNoCommand
	}
	for _, e := range opts.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("%w: env %q: want KEY=VALUE", ocispec.ErrInvalidSpec, e)
		}
	}
	if strings.ContainsRune(strings.Join(slices.Concat(opts.Args, opts.Env, []string{opts.User, opts.Workdir}), ""), 0) {
		return fmt.Errorf("%w: NUL byte in the command, env, user or workdir", ocispec.ErrInvalidSpec)
	}
	if opts.Workdir != "" && !path.IsAbs(opts.Workdir) {
		return fmt.Errorf("%w: workdir %q: must be an absolute path", ocispec.ErrInvalidSpec, opts.Workdir)
	}
	return nil
}

// ProcessSpec derives the exec'd process from the container's own
// (capabilities, no-new-privileges, rlimits, environment), read from its
// bundle config at config; a User of opts is looked up in the container's
// mounted rootfs. A user or group the container does not know is ErrFailed
// ("exec failed: unable to find user nobody: ..."), as docker exec's, which
// exits 126: the process could not be started, the request itself was
// fine (it was ocispec.ErrInvalidSpec, a 400 and exit code 1). The
// command runs through the container's init when the init installs the
// container's seccomp filter (ocispec.WrapExec: runc installs none on
// the process), and when the container's nofile soft limit is below its
// hard one: the init sets the rlimits runc leaves wrong
// (rlimitsThroughInit).
func ProcessSpec(config, rootfs string, opts Options) (specs.Process, error) {
	b, err := os.ReadFile(config)
	if err != nil {
		return specs.Process{}, fmt.Errorf("read bundle config: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil || s.Process == nil {
		return specs.Process{}, fmt.Errorf("decode bundle config: %v", err)
	}
	proc := *s.Process
	proc.Args = slices.Clone(opts.Args)
	proc.Env = slices.Clone(proc.Env)
	if opts.Tty && !slices.ContainsFunc(proc.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		// As docker exec -t: a terminal without TERM leaves top, vi and
		// clear refusing to run. The container's or the caller's wins.
		proc.Env = append(proc.Env, "TERM=xterm")
	}
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
		uid, gid, extra, err := ocispec.ResolveUser(rootfs, opts.User)
		if err != nil {
			if errors.Is(err, ocispec.ErrInvalidSpec) {
				return specs.Process{}, fmt.Errorf("%w: %s", ErrFailed, strings.TrimPrefix(err.Error(), ocispec.ErrInvalidSpec.Error()+": "))
			}
			return specs.Process{}, err
		}
		proc.User = specs.User{UID: uid, GID: gid, AdditionalGids: extra}
	}
	wrapped := ocispec.WrapExec(&s, &proc)
	if env, ok := rlimitsThroughInit(s); ok {
		if !wrapped {
			proc.Args = slices.Concat([]string{ocispec.InitPath, "--"}, proc.Args)
		}
		proc.Env = overrideEnv(proc.Env, []string{env})
	}
	return proc, nil
}

// initName is the file name of Shoal's own init (runtime/companion's
// InitName, which this package may not import): only it knows the exec
// mode rlimitsThroughInit relies on (tini would warn that it is not PID 1).
const initName = "shoal-init"

// rlimitResources are the OCI rlimit types and setrlimit's resource numbers.
var rlimitResources = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// rlimitsThroughInit decides whether the exec'd process must get its
// rlimits from the container's init in exec mode (runtime/init/shoal-init.c)
// and returns the SHOAL_EXEC_RLIMITS=... entry that asks for it.
//
// Why: runc 1.1 built with Go >= 1.19 (Debian 12's 1.1.5) applies the
// process spec's rlimits before the Go runtime of its `runc init` starts,
// and that runtime raises its soft RLIMIT_NOFILE to the hard limit, which
// the exec'd command inherits. With `--ulimit nofile=2000:4000` PID 1 had
// 2000/4000 but every `shoal exec` 4000/4000, though the spec said 2000.
// Only a process that runs after runc init can set it back: the init does,
// then execs the command in its place. It is needed only when the
// container's nofile soft limit is below its hard one (Go raises nothing
// otherwise; every other limit runc sets right), and possible only when
// the container runs Shoal's init at ocispec.InitPath; the init is given
// every rlimit of the container's config, as the spec holds them.
func rlimitsThroughInit(s specs.Spec) (string, bool) {
	if len(s.Process.Args) == 0 || s.Process.Args[0] != ocispec.InitPath {
		return "", false
	}
	ours := slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool {
		return m.Destination == ocispec.InitPath && filepath.Base(m.Source) == initName
	})
	lowered := slices.ContainsFunc(s.Process.Rlimits, func(r specs.POSIXRlimit) bool {
		return r.Type == "RLIMIT_NOFILE" && r.Soft < r.Hard
	})
	if !ours || !lowered {
		return "", false
	}
	var parts []string
	for _, r := range s.Process.Rlimits {
		res, ok := rlimitResources[r.Type]
		if !ok {
			continue // runc refused it at create: the container would not run
		}
		parts = append(parts, fmt.Sprintf("%d:%d:%d", res, r.Soft, r.Hard))
	}
	return "SHOAL_EXEC_RLIMITS=" + strings.Join(parts, ","), true
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

// Supervisor is the node supervisor's side of an exec (*supclient.Client):
// it runs `runc exec --detach` with stdio as its stdio, then answers the
// pid and keeps the connection on which signals go out and the exit comes
// back.
type Supervisor interface {
	Exec(ctx context.Context, req supervisor.Request, stdio [3]*os.File) (int, *net.UnixConn, *bufio.Reader, error)
}

// Launcher starts processes in the containers of one runtime.
type Launcher struct {
	Sup            Supervisor
	Runc, RuncRoot string // runc's binary and state dir
	// Spawn runs fn on a goroutine its owner (the Runtime's Run) waits for,
	// or reports false without running it once the owner shuts down; a
	// process's exit is waited for there. When Stop ends, the wait gives
	// up and the exit code is -1.
	Spawn func(fn func()) bool
	Stop  context.Context
	Log   *slog.Logger
}

// Start starts proc in the running container id. It returns once the
// process runs (or runc failed to start it: ErrFailed with runc's
// message). The process outlives a cancelled ctx.
func (l *Launcher) Start(ctx context.Context, id string, proc specs.Process, opts Options) (_ *Process, err error) {
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
	req := supervisor.Request{ID: id, Runc: l.Runc, RuncRoot: l.RuncRoot, Process: procFile, PidFile: pidFile}
	out := &Process{done: make(chan struct{})}
	defer func() {
		if err != nil {
			out.Close()
		}
	}()
	var (
		stdio     [3]*os.File // runc's and the process's; ours closed once sent
		runcErr   *os.File    // where runc's error message can be read
		consoleCh chan consoleResult
	)
	defer func() {
		for _, f := range stdio {
			if f != nil {
				f.Close()
			}
		}
	}()
	pipe := func() (*os.File, *os.File) {
		if err != nil {
			return nil, nil
		}
		var pr, pw *os.File
		pr, pw, err = os.Pipe()
		return pr, pw
	}
	if opts.Tty {
		sock := filepath.Join(tmp, "console.sock")
		ln, lerr := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if lerr != nil {
			return nil, fmt.Errorf("console socket: %w", lerr)
		}
		defer ln.Close()
		consoleCh = make(chan consoleResult, 1)
		go func() { consoleCh <- receiveConsole(ln) }()
		req.ConsoleSocket = sock
		// runc's stdout and stderr are one pipe (closing it twice is
		// harmless: os.File knows).
		var ew *os.File
		runcErr, ew = pipe()
		if runcErr != nil {
			defer runcErr.Close()
		}
		stdio[1], stdio[2] = ew, ew
	} else {
		if opts.Stdin {
			stdio[0], out.Stdin = pipe()
		}
		out.Stdout, stdio[1] = pipe()
		out.Stderr, stdio[2] = pipe()
		runcErr = out.Stderr
	}
	if err != nil {
		return nil, fmt.Errorf("exec pipes: %w", err)
	}
	if stdio[0] == nil {
		if stdio[0], err = os.Open(os.DevNull); err != nil {
			return nil, err
		}
	}
	pid, conn, br, err := l.Sup.Exec(ctx, req, stdio)
	for i, f := range stdio {
		f.Close()
		stdio[i] = nil
	}
	if errors.Is(err, supervisor.ErrRuncExec) {
		// runc wrote its error to the stderr it was given; nothing else
		// holds that pipe's write end now.
		_ = runcErr.SetReadDeadline(time.Now().Add(time.Second))
		eb, _ := io.ReadAll(io.LimitReader(runcErr, 16<<10))
		return nil, fmt.Errorf("%w: %s", ErrFailed, runcMessage(string(eb), err))
	}
	if err != nil {
		return nil, fmt.Errorf("exec in %s: %w", api.ShortID(id), err)
	}
	out.Pid, out.conn = pid, conn
	if opts.Tty {
		var res consoleResult
		select {
		case res = <-consoleCh:
		case <-time.After(10 * time.Second):
			res.err = errors.New("runc sent no terminal")
		}
		if res.err != nil {
			_ = out.Signal(unix.SIGKILL)
			l.wait(out, br)
			return nil, fmt.Errorf("exec: receive terminal: %w", res.err)
		}
		out.Console = res.f
		if err := out.Resize(opts.Width, opts.Height); err != nil {
			l.Log.Debug("exec: initial terminal size", "err", err)
		}
	}
	l.wait(out, br)
	return out, nil
}

// wait waits, on a goroutine, for the supervisor to report the
// process's end on its connection, then closes Done. If the connection
// breaks (the supervisor died) or Stop ends first, the status is lost (-1)
// and Done is closed anyway.
func (l *Launcher) wait(p *Process, br *bufio.Reader) {
	fn := func() {
		// Done is closed before the connection, so a Signal that finds
		// the connection closed also finds Done closed (no error).
		defer p.conn.Close()
		defer close(p.done)
		p.code = -1
		stop := context.AfterFunc(l.Stop, func() { p.conn.Close() })
		defer stop()
		line, err := supervisor.ReadLine(br, supervisor.MaxRequest)
		if err != nil {
			return
		}
		var ev supervisor.Event
		if json.Unmarshal(line, &ev) == nil && ev.ID != "" {
			p.code = ev.ExitCode
		}
	}
	if !l.Spawn(fn) {
		p.conn.Close()
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
	// runc logs as `time="..." level=error msg="exec failed: ..."`; the
	// "exec failed: " is ErrFailed's own text, which wraps this message.
	if i := strings.LastIndex(out, `msg="`); i >= 0 {
		m := out[i+5:]
		if j := strings.LastIndex(m, `"`); j >= 0 {
			m = m[:j]
		}
		m = strings.TrimPrefix(m, "exec failed: ")
		return strings.ReplaceAll(m, `\"`, `"`)
	}
	if len(out) > 512 {
		out = out[len(out)-512:]
	}
	return out
}
