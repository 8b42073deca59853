package supervisor

// The node's supervisor: one small process per runtime Root (per node), not
// per container, that holds every container's stdio and exit status.
//
// Why. Only a process's parent (or the subreaper it was handed to) learns
// its exit status, and whoever holds the read end of a container's stdout
// decides whether its output survives. Before the supervisor, each container
// ran a copy of the whole shoal binary as its PID 1 to do both: 2.85 MiB PSS
// per container, charged to the container's memory limit, and it kept its
// exit record and logs in dirs the container could write (a workload could
// make the agent read /dev/zero). Now:
//
//   - PID 1 inside a container is shoal-init (runtime/init, C without libc;
//     tini-static, Docker's --init, when it is not installed): it forwards
//     signals to the user's command, reaps zombies and exits with the
//     command's status. Its stack, 4–8 KiB, is all it has of its own per
//     container; its one page of code is shared by every container.
//   - The supervisor (this file, the shoal binary re-executed under the name
//     shoal-supervisor) is a child subreaper. It runs `runc run --detach`
//     itself, so when runc exits each container's init becomes its child:
//     it reaps it by wait4 and records the status in the container's dir
//     (Request.Dir, exit.json), which is not mounted into the container. It
//     holds the read ends of the container's stdout and stderr pipes on one
//     epoll loop (no goroutine per container) and writes JSON-lines logs
//     with size-capped rotation into that dir's log/. Lines are split at
//     16 KiB, as Docker does.
//   - The agent talks to it over a root-only unix socket in Root: "start"
//     (run runc, answer the init's pid), "watch" (the set of supervised
//     containers, then one event per exit) and "exec" (run `runc exec
//     --detach` with the stdio the agent passes as SCM_RIGHTS, answer the
//     pid, forward "signal" lines, report the exit; see runtime/execproc). It starts the supervisor when
//     none answers; the supervisor detaches (setsid, re-parented away from
//     the agent) and exits by itself once it has had no container and no
//     agent connection for a few seconds. Killing or restarting the agent
//     leaves it, and so the containers' output and exit codes, untouched.
//
// The supervisor never reads what a container writes anywhere but its pipes,
// and what it reads from them is bounded per line; nothing in it grows with
// a container's output.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/runtime/containerinit"
)

// Names of the supervisor's files in Root, and of what it writes in each
// container's dir (Request.Dir).
const (
	Arg0     = "shoal-supervisor"
	SockFile = "supervisor.sock"
	LockFile = "supervisor.lock"
	PidFile  = "supervisor.pid"
	LogFile  = "supervisor.log"
	// ExitRecordFile (containerinit.ExitStatus as JSON) is written in the
	// container's dir (Request.Dir) by the supervisor when the container's init has ended and
	// its output is drained.
	ExitRecordFile = "exit.json"
)

const (
	// IdleExit is how long the supervisor lingers with no
	// container and no agent connection before it exits.
	IdleExit = 5 * time.Second
	// DrainDelay bounds how long output is read after the init exited
	// (the kernel kills the rest of the PID namespace with it, so EOF
	// normally follows at once).
	DrainDelay = time.Second
	// MaxLine splits longer lines, as Docker does at 16 KiB.
	MaxLine = 16 << 10
	// MaxRequest caps one request or event line on the socket.
	MaxRequest = 1 << 20
	// RuncTimeout bounds one `runc run --detach`.
	RuncTimeout = 2 * time.Minute
)

// init runs the supervisor when the binary was started as shoal-supervisor,
// before main and before the package initialisers of everything this
// package does not import. Go initialises packages in import-path order
// among those whose imports are done; this package needs only the standard
// library, x/sys and containerinit, so it comes before the agent's big
// dependencies (the jsonschema of compose-go alone allocates 1.7 MB at
// init, prometheus and its protobufs more), whose heap and code pages the
// supervisor would otherwise carry for its whole life. cmd/shoal's call of
// node.SupervisorMain stays as the documented entry point (and is reached
// only by binaries whose order differs). The supervisor then runs on the
// main goroutine, which the Go runtime keeps locked to the main thread
// during init; nothing here depends on which thread it runs on (no
// Pdeathsig, no per-thread state).
func init() {
	if len(os.Args) > 0 && IsInvocation(os.Args[0]) {
		os.Exit(Main(os.Args))
	}
}

// IsInvocation reports whether a process started as arg0
// (os.Args[0]) is the node supervisor; cmd/shoal's main must then call
// Main before anything else:
//
//	if runtime.IsInvocation(os.Args[0]) {
//		os.Exit(runtime.Main(os.Args))
//	}
func IsInvocation(arg0 string) bool {
	return filepath.Base(arg0) == Arg0
}

// Request is one request on the supervisor's socket (one JSON line).
type Request struct {
	Op          string `json:"op"` // "start", "watch", "exec", "fence", "leases", or "signal" on an exec's connection
	ID          string `json:"id,omitempty"`
	Dir         string `json:"dir,omitempty"` // logs in Dir/log, exit record in Dir/exit.json; the bundle unless Bundle is set
	Runc        string `json:"runc,omitempty"`
	RuncRoot    string `json:"runc_root,omitempty"`
	RuncLog     string `json:"runc_log,omitempty"`
	PidFile     string `json:"pid_file,omitempty"`
	LogMaxSize  int64  `json:"log_max_size,omitempty"`
	LogMaxFiles int    `json:"log_max_files,omitempty"`
	// LogNone keeps no log for the container (its service's log driver
	// none): its output is read and dropped. Older supervisors ignore it
	// and keep the log.
	LogNone bool `json:"log_none,omitempty"`
	// Bundle is the OCI bundle dir (config.json, rootfs) of "start" when
	// it is not Dir: the agent keeps it on tmpfs, apart from the logs and
	// the exit record. Supervisors whose answer to "watch" lacks
	// Reply.Bundle ignore it.
	Bundle string `json:"bundle,omitempty"`
	// Process (the process.json of `runc exec`) and ConsoleSocket (where
	// runc sends a terminal's master; empty without a terminal) are for
	// "exec", whose message carries the process's stdin, stdout and stderr
	// as SCM_RIGHTS.
	Process       string `json:"process,omitempty"`
	ConsoleSocket string `json:"console_socket,omitempty"`
	// Signal is for "signal": the number to send to the exec'd process;
	// for "fence", the container's stop signal (0: SIGTERM).
	Signal int `json:"signal,omitempty"`
	// FenceAfterMs and StopGraceMs are for "fence" (fence.go): stop
	// container ID with Signal once FenceAfterMs milliseconds have passed
	// without another "fence" for it, and SIGKILL it StopGraceMs after
	// that; FenceAfterMs 0 disarms. Older supervisors answer "unknown op".
	FenceAfterMs int64 `json:"fence_after_ms,omitempty"`
	StopGraceMs  int64 `json:"stop_grace_ms,omitempty"`
	// Leases is for "leases" (fence.go): every lease the agent sets in one
	// reconciler pass, each as one "fence" would set it. Supervisors
	// whose answer to "watch" lacks Reply.Leases answer "unknown op".
	Leases []Lease `json:"leases,omitempty"`
}

// Lease is one container's lease in a "leases" request: the fields of a
// "fence" request (ID, FenceAfterMs, StopGraceMs, Signal).
type Lease struct {
	ID           string `json:"id"`
	FenceAfterMs int64  `json:"fence_after_ms,omitempty"`
	StopGraceMs  int64  `json:"stop_grace_ms,omitempty"`
	Signal       int    `json:"signal,omitempty"`
}

// Reply answers a request. For "watch", Running lists every container
// the supervisor holds (pid 0 while its start is under way), and exit
// events (Event lines) follow on the same connection.
type Reply struct {
	Pid     int            `json:"pid,omitempty"`
	Running map[string]int `json:"running,omitempty"`
	Error   string         `json:"error,omitempty"`
	// RuncFailed marks an Error of "exec" that is runc's refusal (its
	// message went to the stderr the agent passed), not the supervisor's.
	RuncFailed bool `json:"runc_failed,omitempty"`
	// Bundle, in the answer to "watch", says that "start" takes
	// Request.Bundle. A supervisor from before it runs the bundle in Dir.
	Bundle bool `json:"bundle,omitempty"`
	// Leases, in the answer to "watch", says that the supervisor takes
	// "leases". Failed, in the answer to "leases", holds the error of
	// each lease it refused, by container ID (the others are set).
	Leases bool              `json:"leases,omitempty"`
	Failed map[string]string `json:"failed,omitempty"`
}

// Event reports that a container's init ended (its exit record is
// already written), or, on an exec's connection, that the exec'd process
// ended.
type Event struct {
	ID       string `json:"id"`
	ExitCode int    `json:"exit_code"`
}

// Main runs the node supervisor; argv is os.Args:
// shoal-supervisor [--detach] --root DIR. With --detach it starts a detached
// copy of itself and returns at once. It returns the exit code.
func Main(argv []string) int {
	detach, root := false, ""
	for i := 1; i < len(argv); i++ {
		switch {
		case argv[i] == "--detach":
			detach = true
		case argv[i] == "--root" && i+1 < len(argv):
			root = argv[i+1]
			i++
		default:
			fmt.Fprintf(os.Stderr, "shoal-supervisor: unknown argument %q\n", argv[i])
			return 2
		}
	}
	if !filepath.IsAbs(root) {
		fmt.Fprintln(os.Stderr, "shoal-supervisor: --root must be an absolute path")
		return 2
	}
	if detach {
		// Fork again in a new session: the caller reaps this process at
		// once, and the supervisor is re-parented away from the agent.
		_, err := syscall.ForkExec("/proc/self/exe", []string{Arg0, "--root", root}, &syscall.ProcAttr{
			Env:   os.Environ(),
			Files: []uintptr{0, 1, 2},
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "shoal-supervisor: detach: %v\n", err)
			return 1
		}
		return 0
	}
	// Small and steady beats fast here: one P, a tight heap, and no
	// allocation sampling for a memory profile no one reads (each sample
	// keeps a bucket with its stack for the life of the process).
	goruntime.GOMAXPROCS(1)
	debug.SetGCPercent(25)
	goruntime.MemProfileRate = 0
	s := &supervisor{
		root:     root,
		conts:    map[string]*supCont{},
		byPid:    map[int]*supCont{},
		children: map[int]chan unix.WaitStatus{},
		execs:    map[int]*supExec{},
		orphans:  map[int]orphanExit{},
		streams:  map[int32]*supStream{},
		watchers: map[*supWatcher]struct{}{},
	}
	if err := s.run(); err != nil {
		fmt.Fprintf(os.Stderr, "shoal-supervisor: %v\n", err)
		return 1
	}
	return 0
}

type supervisor struct {
	root string
	epfd int
	ln   *net.UnixListener

	mu       sync.Mutex
	conts    map[string]*supCont          // by container ID, until its exit is recorded
	byPid    map[int]*supCont             // running inits
	children map[int]chan unix.WaitStatus // runc processes we started
	execs    map[int]*supExec             // exec'd processes, by pid, until reaped
	orphans  map[int]orphanExit           // exits of pids not (yet) known
	reaps    uint64                       // exits reaped, ever: orders orphans against forks
	streams  map[int32]*supStream         // by epoll token
	nextTok  int32                        // last epoll token handed out
	watchers map[*supWatcher]struct{}     // agents' watch connections
	conns    int                          // open client connections
	busyAt   time.Time                    // last time there was a container or a connection
	work     uint64                       // requests served and exits recorded, ever (see idleLoop)
}

// supCont is one supervised container.
type supCont struct {
	id, dir string
	pid     int // 0 while runc runs
	lw      *containerinit.LogWriter
	open    []*supStream // pipes not at EOF yet
	exit    *containerinit.ExitStatus
	drain   *time.Timer
	budget  lineBudget // lines of output the supervisor reads (budget.go)
	// fence and fenceKill are the at-most-once lease (fence.go): the
	// stop when the agent stops renewing it, and the SIGKILL after it.
	fence, fenceKill *time.Timer
}

// supStream is the read end of one of a container's output pipes.
type supStream struct {
	tok     int32
	fd      int
	name    string // stdout or stderr
	c       *supCont
	partial []byte // a line without its newline yet, < MaxLine
	paused  bool   // off the epoll set until its container's budget refills
}

// supExec is a process started by `runc exec --detach`: runc exits at
// once and the process, its child, is handed to us (the subreaper).
type supExec struct {
	pid    int
	done   chan unix.WaitStatus // buffered: the reaper never blocks on it
	reaped bool                 // under supervisor.mu; then pid may be reused
}

type supWatcher struct {
	ch   chan Event
	conn net.Conn
}

func (s *supervisor) run() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set child subreaper: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(s.root, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// Another supervisor of this Root may be on its way out: wait a little
	// for its lock rather than failing the agent's spawn.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return fmt.Errorf("lock %s: %w (another supervisor runs)", lock.Name(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sigCh := make(chan os.Signal, 16)
	signal.Notify(sigCh, unix.SIGCHLD)
	signal.Ignore(unix.SIGHUP, unix.SIGPIPE)

	if s.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	sock := filepath.Join(s.root, SockFile)
	_ = os.Remove(sock)
	old := unix.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: ShortSockPath(sock), Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	s.ln = l
	_ = os.WriteFile(filepath.Join(s.root, PidFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	s.busyAt = time.Now()

	go s.reapLoop(sigCh)
	go s.pumpLoop()
	go s.idleLoop()
	trimMemory()
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		if !peerIsUs(conn) {
			conn.Close()
			continue
		}
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		go func() {
			defer func() {
				conn.Close()
				s.mu.Lock()
				s.conns--
				s.busyAt = time.Now()
				s.mu.Unlock()
			}()
			s.serve(conn)
		}()
	}
}

// trimMemory gives back what starting up cost: the heap the package
// initialisers of the whole shoal binary left behind, and the page-table
// references to the binary's code and read-only data that starting touched.
// Those pages stay in the page cache (shared with the agent, which runs the
// same binary); only the few the supervisor's loops use come back, so its
// resident set is what it needs, not what every package's init touched.
// Writable mappings are left alone: dropping them would lose their data.
func trimMemory() {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[5] != exe || strings.Contains(f[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		// Addresses from /proc/self/maps, not Go pointers: the raw
		// syscall keeps them integers.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_DONTNEED)
	}
}

// peerIsUs accepts only connections from our own user (root).
func peerIsUs(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		ok = err == nil && int(cred.Uid) == os.Geteuid()
	})
	return ok
}

// idleLoop ends the process once it has supervised nothing and served no
// one for IdleExit, and trims the supervisor's memory once it has been
// quiet for a tick after some work (see shouldTrim).
func (s *supervisor) idleLoop() {
	t := time.NewTicker(IdleExit / 5)
	defer t.Stop()
	var seen, trimmed uint64
	for range t.C {
		s.mu.Lock()
		work := s.work
		if len(s.conts) > 0 || s.conns > 0 {
			s.busyAt = time.Now()
		} else if time.Since(s.busyAt) >= IdleExit {
			// Exit under the lock: no start can begin meanwhile.
			_ = os.Remove(filepath.Join(s.root, PidFile))
			s.ln.Close() // unlinks the socket
			os.Exit(0)
		}
		s.mu.Unlock()
		if shouldTrim(work, seen, trimmed) {
			trimMemory()
			trimmed = work
		}
		seen = work
	}
}

// shouldTrim decides, once per idleLoop tick, whether to trim memory: when
// there was work (work, a counter of requests and exits, moved since the
// last trim) and none during the last tick (it equals seen, its value a
// tick ago). Why again and again, not once at start: serving a start or an
// exec runs code and reads tables all over the binary, and every page fault
// on its file-backed mappings maps in up to 16 neighbours (the kernel's
// fault-around). After 50 starts the binary's read-only data was almost all
// resident again: 8 MiB of the supervisor's 12 MiB PSS, charged to it alone
// wherever no other process maps the same file. A sleeping container costs
// the supervisor only its epoll wait and the reaper, which touch a few pages.
func shouldTrim(work, seen, trimmed uint64) bool {
	return work == seen && work != trimmed
}

// ErrRuncExec is `runc exec` exiting with an error.
var ErrRuncExec = errors.New("runc exec")

// supMaxFDs is how many descriptors a request may carry (an exec's stdin,
// stdout and stderr).
const supMaxFDs = 3

// serve answers one connection: one request, and for "watch" the event
// stream until the agent hangs up, for "exec" the process's exit.
func (s *supervisor) serve(conn *net.UnixConn) {
	// The request's first bytes come with the descriptors it passes (the
	// agent sends both in one sendmsg); what follows is read as a stream.
	first := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(supMaxFDs*4))
	n, oobn, flags, _, err := conn.ReadMsgUnix(first, oob)
	fds := parseRights(oob[:oobn])
	defer func() { closeFDs(fds) }()
	if err != nil {
		return
	}
	if flags&unix.MSG_CTRUNC != 0 || len(fds) > supMaxFDs { // the space is rounded up
		WriteLine(conn, Reply{Error: fmt.Sprintf("bad request: more than %d file descriptors", supMaxFDs)})
		return
	}
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(first[:n]), conn), 4096)
	line, err := ReadLine(br, MaxRequest)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.work++
	s.mu.Unlock()
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		WriteLine(conn, Reply{Error: "bad request: " + err.Error()})
		return
	}
	if req.Op != "exec" && len(fds) > 0 {
		WriteLine(conn, Reply{Error: fmt.Sprintf("bad request: %q takes no file descriptors", req.Op)})
		return
	}
	switch req.Op {
	case "start":
		pid, err := s.start(req)
		rep := Reply{Pid: pid}
		if err != nil {
			rep.Error = err.Error()
		}
		WriteLine(conn, rep)
	case "fence":
		rep := Reply{}
		if err := s.fence(req); err != nil {
			rep.Error = err.Error()
		}
		WriteLine(conn, rep)
	case "leases":
		WriteLine(conn, Reply{Failed: s.leases(req.Leases)})
	case "watch":
		s.watch(conn, br)
	case "exec":
		stdio := fds
		fds = nil // startExec closes them
		s.exec(conn, br, req, stdio)
	default:
		WriteLine(conn, Reply{Error: fmt.Sprintf("unknown op %q", req.Op)})
	}
}

// start runs `runc run --detach` for one bundle with fresh pipes as the
// container's stdout and stderr, and returns the init's pid.
func (s *supervisor) start(req Request) (int, error) {
	bundle := req.Bundle
	if bundle == "" {
		bundle = req.Dir
	}
	if !ValidName(req.ID) || !filepath.IsAbs(req.Dir) || !filepath.IsAbs(bundle) || !filepath.IsAbs(req.Runc) ||
		!filepath.IsAbs(req.RuncRoot) || !filepath.IsAbs(req.RuncLog) || !filepath.IsAbs(req.PidFile) {
		return 0, errors.New("bad start request: id, and absolute dir, bundle, runc, runc root, runc log and pid file, are required")
	}
	_ = os.Remove(filepath.Join(req.Dir, ExitRecordFile))
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	var outP, errP [2]int
	if err := unix.Pipe2(outP[:], unix.O_CLOEXEC); err != nil {
		return 0, fmt.Errorf("pipe: %w", err)
	}
	if err := unix.Pipe2(errP[:], unix.O_CLOEXEC); err != nil {
		unix.Close(outP[0])
		unix.Close(outP[1])
		return 0, fmt.Errorf("pipe: %w", err)
	}

	s.mu.Lock()
	if s.conts[req.ID] != nil {
		s.mu.Unlock()
		for _, fd := range []int{outP[0], outP[1], errP[0], errP[1]} {
			unix.Close(fd)
		}
		return 0, fmt.Errorf("container %s is already supervised", shortID(req.ID))
	}
	c := &supCont{
		id: req.ID, dir: req.Dir,
		lw: containerinit.NewLogWriter(filepath.Join(req.Dir, "log", containerinit.LogFile), req.LogMaxSize, req.LogMaxFiles),
	}
	if req.LogNone {
		c.lw = containerinit.DiscardLogWriter()
	}
	s.conts[req.ID] = c
	argv := []string{req.Runc, "--root", req.RuncRoot, "--log", req.RuncLog,
		"run", "--detach", "--pid-file", req.PidFile, "--bundle", bundle, req.ID}
	// Fork under s.mu, so that the reaper cannot see runc's exit before
	// its channel is registered.
	forkedAt := s.reaps
	runcPid, err := syscall.ForkExec(req.Runc, argv, &syscall.ProcAttr{
		Dir:   bundle,
		Env:   runcEnv(os.Environ()),
		Files: []uintptr{devnull.Fd(), uintptr(outP[1]), uintptr(errP[1])},
	})
	unix.Close(outP[1])
	unix.Close(errP[1])
	if err != nil {
		delete(s.conts, req.ID)
		s.mu.Unlock()
		unix.Close(outP[0])
		unix.Close(errP[0])
		return 0, fmt.Errorf("exec %s: %w", req.Runc, err)
	}
	done := make(chan unix.WaitStatus, 1)
	s.children[runcPid] = done
	s.addStreamLocked(c, outP[0], "stdout")
	s.addStreamLocked(c, errP[0], "stderr")
	s.mu.Unlock()

	var ws unix.WaitStatus
	select {
	case ws = <-done:
	case <-time.After(RuncTimeout):
		_ = unix.Kill(runcPid, unix.SIGKILL)
		ws = <-done
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		s.mu.Lock()
		for len(c.open) > 0 {
			s.closeStreamLocked(c.open[0])
		}
		c.lw.Close()
		delete(s.conts, req.ID)
		s.mu.Unlock()
		tail := strings.TrimSpace(string(TailCapped(filepath.Dir(req.RuncLog), filepath.Base(req.RuncLog), 512)))
		return 0, fmt.Errorf("runc run: %s: %s", describeWait(ws), tail)
	}
	b, err := ReadCapped(filepath.Dir(req.PidFile), filepath.Base(req.PidFile), maxSmallFile)
	pid := 0
	if err == nil {
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || pid <= 0 {
		// runc said it started the container but gave no pid: it cannot
		// be supervised. The agent kills it by its runc ID.
		for len(c.open) > 0 {
			s.closeStreamLocked(c.open[0])
		}
		c.lw.Close()
		delete(s.conts, req.ID)
		return 0, fmt.Errorf("read pid file: %v", err)
	}
	c.pid = pid
	if ws, ok := s.takeOrphanLocked(pid, forkedAt); ok { // it already ended and we reaped it
		s.exitedLocked(c, ws)
	} else {
		s.byPid[pid] = c
	}
	return pid, nil
}

// exec runs one process in a container (`runc exec --detach`, with the
// agent's stdio descriptors), answers its pid, then forwards the agent's
// "signal" lines to it and writes one Event when it ended. If the agent
// hangs up first, the process is still reaped; its status is dropped.
func (s *supervisor) exec(conn net.Conn, br *bufio.Reader, req Request, stdio []int) {
	e, err := s.startExec(req, stdio)
	if err != nil {
		WriteLine(conn, Reply{Error: err.Error(), RuncFailed: errors.Is(err, ErrRuncExec)})
		return
	}
	if WriteLine(conn, Reply{Pid: e.pid}) != nil {
		return
	}
	hup := make(chan struct{})
	go func() {
		defer close(hup)
		for {
			line, err := ReadLine(br, MaxRequest)
			if err != nil {
				return // the agent hung up, or we closed the connection
			}
			var sig Request
			if json.Unmarshal(line, &sig) == nil && sig.Op == "signal" && sig.Signal > 0 && sig.Signal <= 64 {
				s.signalExec(e, unix.Signal(sig.Signal))
			}
		}
	}()
	select {
	case ws := <-e.done:
		WriteLine(conn, Event{ID: req.ID, ExitCode: exitCodeOf(ws)})
	case <-hup:
	}
}

// signalExec sends sig to e unless it was reaped (its pid may be another
// process's by now). A zombie not yet reaped takes the signal harmlessly.
func (s *supervisor) signalExec(e *supExec, sig unix.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !e.reaped {
		_ = unix.Kill(e.pid, sig)
	}
}

// startExec runs `runc exec --detach` with stdio (stdin, stdout, stderr;
// it closes them) as runc's and the process's stdio, and returns the
// process, registered for reaping.
func (s *supervisor) startExec(req Request, stdio []int) (*supExec, error) {
	defer func() { closeFDs(stdio) }()
	if !ValidName(req.ID) || !filepath.IsAbs(req.Runc) || !filepath.IsAbs(req.RuncRoot) ||
		!filepath.IsAbs(req.Process) || !filepath.IsAbs(req.PidFile) ||
		(req.ConsoleSocket != "" && !filepath.IsAbs(req.ConsoleSocket)) {
		return nil, errors.New("bad exec request: id, and absolute runc, runc root, process and pid file, are required")
	}
	if len(stdio) != 3 {
		return nil, fmt.Errorf("bad exec request: want 3 file descriptors (stdin, stdout, stderr), got %d", len(stdio))
	}
	argv := []string{req.Runc, "--root", req.RuncRoot, "exec", "--detach", "--process", req.Process, "--pid-file", req.PidFile}
	if req.ConsoleSocket != "" {
		argv = append(argv, "--tty", "--console-socket", req.ConsoleSocket)
	}
	argv = append(argv, req.ID)
	s.mu.Lock()
	// Fork under s.mu, as in start: the reaper must find runc's channel.
	forkedAt := s.reaps
	runcPid, err := syscall.ForkExec(req.Runc, argv, &syscall.ProcAttr{
		Dir:   "/",
		Env:   runcEnv(os.Environ()),
		Files: []uintptr{uintptr(stdio[0]), uintptr(stdio[1]), uintptr(stdio[2])},
	})
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("exec %s: %w", req.Runc, err)
	}
	done := make(chan unix.WaitStatus, 1)
	s.children[runcPid] = done
	s.mu.Unlock()
	// Only runc and the process hold the agent's pipes from now on: their
	// EOF is the process's.
	closeFDs(stdio)
	stdio = nil

	var ws unix.WaitStatus
	select {
	case ws = <-done:
	case <-time.After(RuncTimeout):
		_ = unix.Kill(runcPid, unix.SIGKILL)
		ws = <-done
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		// runc's message went to the stderr the agent passed.
		return nil, fmt.Errorf("%w: %s", ErrRuncExec, describeWait(ws))
	}
	b, err := ReadCapped(filepath.Dir(req.PidFile), filepath.Base(req.PidFile), maxSmallFile)
	pid := 0
	if err == nil {
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("runc exec: read pid file: %v", err)
	}
	e := &supExec{pid: pid, done: make(chan unix.WaitStatus, 1)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ws, ok := s.takeOrphanLocked(pid, forkedAt); ok { // it already ended and we reaped it
		e.reaped = true
		e.done <- ws
	} else {
		s.execs[pid] = e
	}
	return e, nil
}

// parseRights returns the descriptors of the SCM_RIGHTS messages in oob,
// close-on-exec (so no other runc inherits them).
func parseRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range got {
			unix.CloseOnExec(fd)
		}
		fds = append(fds, got...)
	}
	return fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// exitCodeOf is a process's exit code as a shell reports it: its status,
// or 128+N when killed by signal N.
func exitCodeOf(ws unix.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 255
}

func describeWait(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

// addStreamLocked puts fd (a pipe's read end) on the epoll loop.
func (s *supervisor) addStreamLocked(c *supCont, fd int, name string) {
	_ = unix.SetNonblock(fd, true)
	s.nextTok++
	st := &supStream{tok: s.nextTok, fd: fd, name: name, c: c}
	s.streams[st.tok] = st
	c.open = append(c.open, st)
	// The token, not the fd, identifies the stream: an fd number is reused
	// once closed, a token never is.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLHUP | unix.EPOLLERR, Fd: st.tok}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		fmt.Fprintf(os.Stderr, "shoal-supervisor: epoll add: %v\n", err)
		s.closeStreamLocked(st)
	}
}

// closeStreamLocked flushes and closes one stream; the container's exit is
// recorded once its init ended and its last stream closed.
func (s *supervisor) closeStreamLocked(st *supStream) {
	if len(st.partial) > 0 {
		st.c.lw.WriteLine(st.name, string(st.partial))
		st.partial = nil
	}
	_ = unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, st.fd, nil)
	unix.Close(st.fd)
	delete(s.streams, st.tok)
	c := st.c
	for i, o := range c.open {
		if o == st {
			c.open = append(c.open[:i], c.open[i+1:]...)
			break
		}
	}
	if len(c.open) == 0 && c.exit != nil {
		s.finishLocked(c)
	}
}

// pumpLoop reads every container's output on one epoll set.
func (s *supervisor) pumpLoop() {
	evs := make([]unix.EpollEvent, 32)
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.EpollWait(s.epfd, evs, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			fmt.Fprintf(os.Stderr, "shoal-supervisor: epoll wait: %v\n", err)
			os.Exit(1)
		}
		for _, ev := range evs[:n] {
			s.mu.Lock()
			if st := s.streams[ev.Fd]; st != nil {
				s.readLocked(st, buf)
			}
			s.mu.Unlock()
		}
	}
}

// readLocked does one read of st (level-triggered: the next EpollWait
// comes back for the rest, which keeps a chatty container from starving
// the others), and stores its lines with one write. A container past its
// line budget is not read until the budget refills (pauseLocked).
func (s *supervisor) readLocked(st *supStream, buf []byte) {
	now := time.Now()
	if d := st.c.budget.wait(now); d > 0 {
		s.pauseLocked(st, d)
		return
	}
	n, err := unix.Read(st.fd, buf)
	if n > 0 {
		lines := st.feed(buf[:n], now)
		st.c.lw.Flush()
		st.c.budget.take(lines+RotationOpLines*st.c.lw.TakeFileOps(), now)
		return
	}
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return
	}
	s.closeStreamLocked(st) // EOF or a read error
}

// pauseLocked takes st off the epoll set for d: its pipe fills and the
// container's writes block until the budget refills (budget.go). Off the
// set rather than with no events asked: a hung-up pipe is reported
// whatever is asked, and would spin the loop.
func (s *supervisor) pauseLocked(st *supStream, d time.Duration) {
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, st.fd, nil); err != nil {
		return // not on the set: nothing to pause
	}
	st.paused = true
	time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.streams[st.tok] != st || !st.paused {
			return // closed meanwhile (drained, or its container removed)
		}
		st.paused = false
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLHUP | unix.EPOLLERR, Fd: st.tok}
		if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, st.fd, &ev); err != nil {
			fmt.Fprintf(os.Stderr, "shoal-supervisor: epoll add: %v\n", err)
			s.closeStreamLocked(st)
		}
	})
}

// feed splits data into lines (at most MaxLine each) for the log, stamped
// now and buffered (the caller flushes), and returns how many it stored.
func (st *supStream) feed(data []byte, now time.Time) int {
	lines := 0
	for len(data) > 0 {
		i := indexByte(data, '\n')
		if i >= 0 && len(st.partial)+i <= MaxLine {
			lines++
			if len(st.partial) == 0 {
				st.c.lw.Append(st.name, string(data[:i]), now)
			} else {
				st.c.lw.Append(st.name, string(append(st.partial, data[:i]...)), now)
				st.partial = st.partial[:0]
			}
			data = data[i+1:]
			continue
		}
		take := min(len(data), MaxLine-len(st.partial))
		if i >= 0 {
			take = min(take, i)
		}
		st.partial = append(st.partial, data[:take]...)
		data = data[take:]
		if len(st.partial) == MaxLine {
			lines++
			st.c.lw.Append(st.name, string(st.partial), now)
			st.partial = st.partial[:0]
		}
	}
	if len(st.partial) == 0 {
		st.partial = nil // hold no buffer for an idle stream
	}
	return lines
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// reapLoop reaps every child on SIGCHLD: runc processes (their status goes
// to start or startExec), container inits (their status is recorded) and
// exec'd processes (their status goes to the agent that asked).
func (s *supervisor) reapLoop(sigCh chan os.Signal) {
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			s.childExited(pid, ws)
		}
		<-sigCh
	}
}

func (s *supervisor) childExited(pid int, ws unix.WaitStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reaps++
	if ch, ok := s.children[pid]; ok {
		delete(s.children, pid)
		ch <- ws
		return
	}
	if c, ok := s.byPid[pid]; ok {
		delete(s.byPid, pid)
		s.exitedLocked(c, ws)
		return
	}
	if e, ok := s.execs[pid]; ok {
		delete(s.execs, pid)
		e.reaped = true
		e.done <- ws
		return
	}
	// An init or exec'd process that ended before its pid was known, or a stray
	// process of runc's that was re-parented to us: keep a bounded few.
	if len(s.orphans) >= 1024 {
		for p := range s.orphans {
			delete(s.orphans, p)
			break
		}
	}
	s.orphans[pid] = orphanExit{ws: ws, seq: s.reaps}
}

// orphanExit is an exit reaped before its pid was known: seq is the
// supervisor's reap count when it was reaped.
type orphanExit struct {
	ws  unix.WaitStatus
	seq uint64
}

// takeOrphanLocked returns (and forgets) the exit of pid reaped after the
// fork of the runc that reported pid (forkedAt: the reap count then). An
// older entry is another process that once had that pid: the kernel reuses
// pids, and an exit no start or exec ever claimed (its runc failed, or was
// killed) stays here until evicted. Taking it for the new process's would
// record a healthy container as exited, and the agent's cleanup would then
// kill it.
func (s *supervisor) takeOrphanLocked(pid int, forkedAt uint64) (unix.WaitStatus, bool) {
	o, ok := s.orphans[pid]
	if !ok {
		return 0, false
	}
	delete(s.orphans, pid)
	if o.seq <= forkedAt {
		return 0, false
	}
	return o.ws, true
}

// exitedLocked notes that c's init ended; the record is written once its
// output is drained (or after DrainDelay).
func (s *supervisor) exitedLocked(c *supCont, ws unix.WaitStatus) {
	st := containerinit.StatusOf(syscall.WaitStatus(ws))
	c.exit = &st
	stopFenceLocked(c)
	if len(c.open) == 0 {
		s.finishLocked(c)
		return
	}
	c.drain = time.AfterFunc(DrainDelay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for len(c.open) > 0 {
			s.closeStreamLocked(c.open[0]) // finishes c with the last one
		}
	})
}

// finishLocked writes c's exit record, forgets c and tells the agents.
func (s *supervisor) finishLocked(c *supCont) {
	if c.drain != nil {
		c.drain.Stop()
	}
	c.lw.Close()
	if err := writeJSON(filepath.Join(c.dir, ExitRecordFile), c.exit); err != nil {
		fmt.Fprintf(os.Stderr, "shoal-supervisor: record exit of %s: %v\n", shortID(c.id), err)
	}
	delete(s.conts, c.id)
	s.work++
	ev := Event{ID: c.id, ExitCode: c.exit.ExitCode}
	for w := range s.watchers {
		select {
		case w.ch <- ev:
		default:
			// A stuck agent: drop its connection. When it reconnects it
			// finds the exit record on disk.
			delete(s.watchers, w)
			w.conn.Close()
		}
	}
}

// watch answers a "watch": the containers supervised now, then one event
// per exit until the agent hangs up.
func (s *supervisor) watch(conn net.Conn, br *bufio.Reader) {
	w := &supWatcher{ch: make(chan Event, 1024), conn: conn}
	s.mu.Lock()
	running := make(map[string]int, len(s.conts))
	for id, c := range s.conts {
		running[id] = c.pid
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	if WriteLine(conn, Reply{Running: running, Bundle: true, Leases: true}) != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, br) // the agent never writes again: EOF is its hang-up
		cancel()
	}()
	for {
		select {
		case ev := <-w.ch:
			if WriteLine(conn, ev) != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// ReadLine reads one newline-terminated line of at most limit bytes.
func ReadLine(br *bufio.Reader, limit int) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > limit {
			return nil, fmt.Errorf("line longer than %d bytes", limit)
		}
		if err == nil {
			return out[:len(out)-1], nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

func WriteLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ShortSockPath returns a path for a unix socket at p that fits the 108
// bytes of sockaddr_un: p itself, or the same file reached through
// /proc/self/fd of its directory (the fd stays open for the process's
// life; one per process and path).
func ShortSockPath(p string) string {
	if len(p) < 100 {
		return p
	}
	sockDirFDs.Lock()
	defer sockDirFDs.Unlock()
	dir := filepath.Dir(p)
	fd, ok := sockDirFDs.m[dir]
	if !ok {
		var err error
		fd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return p
		}
		sockDirFDs.m[dir] = fd
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", fd, filepath.Base(p))
}

var sockDirFDs = struct {
	sync.Mutex
	m map[string]int
}{m: map[string]int{}}

// RuncProcs is the GOMAXPROCS setting of every runc process Shoal starts
// (run and exec here, delete, kill, list and health probes through
// go-runc in the runtime).
//
// Why: runc is a Go program, and so is its `runc init`, to which runc
// hands GOMAXPROCS on (the container's own process gets the spec's
// environment, not this one). Each `runc run` has a CPU to itself (the
// agent starts one per CPU at once), so a runtime with a P per CPU only
// starts threads that find nothing to do. 20 `runc run -d` of Shoal's
// bundle, two at a time, 6 alternating pairs: median 2.25 CPU-s with
// GOMAXPROCS=1 against 2.41, 5 of 6 pairs lower; 10 `runc delete -f`, 4
// pairs: 213-222 ms against 225-234 ms.
const RuncProcs = "GOMAXPROCS=1"

// runcEnv is env for a runc process: RuncProcs in place of any GOMAXPROCS
// env sets.
func runcEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			out = append(out, kv)
		}
	}
	return append(out, RuncProcs)
}
