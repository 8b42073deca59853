// Package containerinit is the Go init that ran as PID 1 inside every Shoal
// container before the node supervisor (runtime/supervisor.go) and tini
// took over. It stays for two reasons: containers started by an older agent
// still run it (the runtime reads their exit records, safely), and it is the
// baseline the per-container memory benchmark compares with
// (BenchmarkContainerOverhead). Its ExitStatus and LogWriter are the formats
// the supervisor writes too.
//
// What follows is why it was built this way.
//
// Why an init of our own, and why it writes logs and the exit status itself:
//
//   - Supervision without a shim. The agent runs containers detached (no
//     helper process per container). Only a process's parent can collect its
//     exit status, so after an agent restart (or SIGKILL) a new agent could see
//     a container end (pidfd) but not learn its code. The init runs the user's
//     command as its child, so it always learns the code, and records it in a
//     bind-mounted state dir (StateDir/exit.json, written atomically) before it
//     exits with the same code. The agent reads that file when it cannot wait
//     for the init itself.
//   - Signals. A process that is PID 1 ignores signals it has no handler for
//     (busybox `sleep` ignores SIGTERM), so a stop would cost the whole grace
//     period. The init forwards SIGTERM, SIGINT and friends to its child and
//     reaps orphaned zombies like any init.
//   - Logs. The init reads the child's stdout and stderr through pipes and
//     writes JSON lines ({time, stream, line}) with size-capped rotation into a
//     bind-mounted log dir. No agent process sits in the data path, so output
//     keeps flowing while the agent restarts; the agent only reads the files.
//     The cost is that the log writing is accounted to the container's cgroup,
//     which is where it belongs anyway.
//
// The init is the shoal binary itself (static, CGO_ENABLED=0), bind-mounted
// read-only at InitPath. It imports only the standard library (and the
// stdlib-only api/atomicfile) so it starts fast and stays small in memory.
package containerinit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-org/shoal/api/atomicfile"
)

// Paths inside the container. The runtime bind-mounts the init binary at
// InitPath, a writable per-container dir at StateDir and the container's log
// dir at LogDir.
const (
	InitPath = "/.shoal/init"
	StateDir = "/.shoal/state"
	LogDir   = "/.shoal/log"
)

// File names inside StateDir and LogDir.
// ReadyFile appears once the init handles signals; a SIGTERM sent earlier
// could be lost (PID 1 without a handler) or end the init before it forwards.
const (
	ExitFile  = "exit.json"
	ReadyFile = "ready"
	LogFile   = "container.log"
)

// Defaults for log rotation when the flags are absent.
const (
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 3
)

// maxLineLen splits very long lines, as Docker does at 16 KiB.
const maxLineLen = 16 << 10

// drainDelay bounds how long the init keeps reading output after its child
// exited, for descendants that still hold the pipes open.
const drainDelay = 300 * time.Millisecond

// ExitStatus is what the init records in StateDir/ExitFile when its child
// ends. ExitCode follows the shell convention: 128+N when killed by signal N.
type ExitStatus struct {
	ExitCode   int       `json:"exit_code"`
	Signal     int       `json:"signal,omitempty"`
	FinishedAt time.Time `json:"finished_at"`
	Error      string    `json:"error,omitempty"`
}

// Options configure one run of the init; Main builds them from its arguments.
type Options struct {
	Args        []string // the user's command, Args[0] looked up in PATH
	StateDir    string
	LogDir      string
	LogMaxSize  int64
	LogMaxFiles int
}

// Args builds the argument vector (after argv[0]) that Main understands.
func Args(logMaxSize int64, logMaxFiles int, cmd []string) []string {
	out := []string{
		"--log-max-size=" + strconv.FormatInt(logMaxSize, 10),
		"--log-max-files=" + strconv.Itoa(logMaxFiles),
		"--",
	}
	return append(out, cmd...)
}

// ParseArgs parses argv (argv[0] included) as built by Args.
func ParseArgs(argv []string) (Options, error) {
	o := Options{StateDir: StateDir, LogDir: LogDir, LogMaxSize: DefaultLogMaxSize, LogMaxFiles: DefaultLogMaxFiles}
	if len(argv) == 0 {
		return o, errors.New("no arguments")
	}
	rest := argv[1:]
	for len(rest) > 0 {
		a := rest[0]
		rest = rest[1:]
		if a == "--" {
			o.Args = rest
			break
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return o, fmt.Errorf("bad init flag %q", a)
		}
		switch k {
		case "--log-max-size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return o, fmt.Errorf("bad --log-max-size %q", v)
			}
			o.LogMaxSize = n
		case "--log-max-files":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return o, fmt.Errorf("bad --log-max-files %q", v)
			}
			o.LogMaxFiles = n
		case "--state-dir":
			o.StateDir = v
		case "--log-dir":
			o.LogDir = v
		default:
			return o, fmt.Errorf("unknown init flag %q", k)
		}
	}
	if len(o.Args) == 0 {
		return o, errors.New("no command after --")
	}
	return o, nil
}

// Main is the init's entry point: it runs the command given after "--" and
// returns the exit code to exit with. argv is os.Args.
func Main(argv []string) int {
	debug.SetGCPercent(50)
	// Run subscribes to signals first thing; the agent waits for ReadyFile
	// before it sends any.
	o, err := ParseArgs(argv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "shoal-init: %v\n", err)
		return 127
	}
	return Run(o)
}

// Run supervises o.Args until it exits and returns its exit code.
func Run(o Options) int {
	lw := NewLogWriter(filepath.Join(o.LogDir, LogFile), o.LogMaxSize, o.LogMaxFiles)
	defer lw.Close()

	// Subscribe before forking so no SIGCHLD is lost.
	sigCh := make(chan os.Signal, 32)
	signal.Notify(sigCh)
	if f, err := os.Create(filepath.Join(o.StateDir, ReadyFile)); err == nil {
		f.Close()
	}

	st := supervise(o, lw, sigCh)
	signal.Stop(sigCh)
	if err := writeExit(o.StateDir, st); err != nil {
		fmt.Fprintf(os.Stderr, "shoal-init: record exit: %v\n", err)
	}
	return st.ExitCode
}

func supervise(o Options, lw *LogWriter, sigCh chan os.Signal) ExitStatus {
	fail := func(code int, err error) ExitStatus {
		lw.WriteLine("stderr", "shoal-init: "+err.Error())
		return ExitStatus{ExitCode: code, FinishedAt: time.Now().UTC(), Error: err.Error()}
	}
	path := o.Args[0]
	if !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			return fail(127, fmt.Errorf("exec %s: executable file not found in $PATH", path))
		}
		path = p
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(126, fmt.Errorf("pipe: %w", err))
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(126, fmt.Errorf("pipe: %w", err))
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail(126, fmt.Errorf("open %s: %w", os.DevNull, err))
	}
	pid, err := syscall.ForkExec(path, o.Args, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{devnull.Fd(), outW.Fd(), errW.Fd()},
	})
	devnull.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		code := 126
		if errors.Is(err, syscall.ENOENT) {
			code = 127
		}
		return fail(code, fmt.Errorf("exec %s: %w", o.Args[0], err))
	}

	var pumps sync.WaitGroup
	for _, p := range []struct {
		r      *os.File
		stream string
	}{{outR, "stdout"}, {errR, "stderr"}} {
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			pump(p.r, p.stream, lw)
		}()
	}

	var st ExitStatus
	exited := false
	reap := func() {
		for {
			var ws syscall.WaitStatus
			wpid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || wpid <= 0 {
				return
			}
			if wpid == pid {
				exited = true
				st = StatusOf(ws)
			}
		}
	}
	reap()
	for !exited {
		s := <-sigCh
		switch s {
		case syscall.SIGCHLD:
			reap()
		case syscall.SIGURG, syscall.SIGPIPE:
			// SIGURG is the Go runtime's preemption signal; neither is meant
			// for the child.
		default:
			if sig, ok := s.(syscall.Signal); ok {
				_ = syscall.Kill(pid, sig)
			}
		}
	}

	// Collect the rest of the output; descendants may hold the pipes open.
	done := make(chan struct{})
	go func() { pumps.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainDelay):
		deadline := time.Now()
		_ = outR.SetReadDeadline(deadline)
		_ = errR.SetReadDeadline(deadline)
		<-done
	}
	outR.Close()
	errR.Close()
	return st
}

// StatusOf is the exit record of a process that ended with ws: its exit
// code, or 128+N and the signal for a kill by signal N (the shell's rule).
func StatusOf(ws syscall.WaitStatus) ExitStatus {
	st := ExitStatus{FinishedAt: time.Now().UTC()}
	switch {
	case ws.Exited():
		st.ExitCode = ws.ExitStatus()
	case ws.Signaled():
		st.Signal = int(ws.Signal())
		st.ExitCode = 128 + st.Signal
	default:
		st.ExitCode = 255
	}
	return st
}

// pump copies r into lw line by line until EOF or a read deadline.
func pump(r io.Reader, stream string, lw *LogWriter) {
	br := bufio.NewReaderSize(r, maxLineLen)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			lw.WriteLine(stream, strings.TrimSuffix(string(line), "\n"))
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func writeExit(dir string, st ExitStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ExitFile), b, 0o644)
}

// ReadExit reads the exit status recorded in dir (StateDir's host side). It
// returns an error wrapping fs.ErrNotExist when the init recorded none.
func ReadExit(dir string) (ExitStatus, error) {
	var st ExitStatus
	b, err := os.ReadFile(filepath.Join(dir, ExitFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode %s: %w", ExitFile, err)
	}
	return st, nil
}

// LogLine is one stored line of output; it has the JSON shape of api.LogLine.
type LogLine struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Line   string    `json:"line"`
}

// LogWriter appends JSON lines to a file and rotates it when it would grow
// past maxSize, keeping maxFiles files in all (path, path.1, ... path.N-1).
// It is safe for concurrent use. Write errors are dropped: losing a log line
// must never kill the container.
type LogWriter struct {
	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
	buf      []byte // appended lines not written yet
	discard  bool   // DiscardLogWriter's: lines are dropped
	fileOps  int    // file operations of rotations since TakeFileOps
}

// NewLogWriter returns a writer appending to path; the file is opened lazily.
func NewLogWriter(path string, maxSize int64, maxFiles int) *LogWriter {
	if maxSize <= 0 {
		maxSize = DefaultLogMaxSize
	}
	if maxFiles <= 0 {
		maxFiles = DefaultLogMaxFiles
	}
	return &LogWriter{path: path, maxSize: maxSize, maxFiles: maxFiles}
}

// DiscardLogWriter returns a writer that drops every line: the log of a
// container whose service says log driver none, whose output is still
// read (a full pipe would block it) but kept nowhere.
func DiscardLogWriter() *LogWriter {
	return &LogWriter{maxSize: DefaultLogMaxSize, maxFiles: DefaultLogMaxFiles, discard: true}
}

// WriteLine records one line of the given stream, stamped with the current time.
func (w *LogWriter) WriteLine(stream, line string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.appendLocked(stream, line, time.Now())
	w.flushLocked()
}

// Append records one line stamped at now without writing it yet: a
// reader of a container's output appends every line of one read and
// Flushes once, one write(2) for a read of 16,000 empty lines instead of
// one per line. The buffer is written early past 64 KiB.
func (w *LogWriter) Append(stream, line string, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.appendLocked(stream, line, now)
	if len(w.buf) >= 64<<10 {
		w.flushLocked()
	}
}

// Flush writes what Append buffered.
func (w *LogWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
}

// appendLocked adds one line to the buffer, first writing out the buffer
// and rotating the file when the line would take the file past maxSize.
func (w *LogWriter) appendLocked(stream, line string, now time.Time) {
	n := len(w.buf)
	w.buf = AppendLogLine(w.buf, now, stream, line)
	if size := w.size + int64(len(w.buf)); size > w.maxSize && size-int64(len(w.buf)-n) > 0 {
		entry := append([]byte(nil), w.buf[n:]...)
		w.buf = w.buf[:n]
		w.flushLocked()
		if w.f != nil && w.size > 0 {
			w.rotateLocked()
		}
		w.buf = append(w.buf, entry...)
	}
}

// flushLocked writes the buffer (dropped when the file cannot be opened:
// losing log lines must never stop the reader).
func (w *LogWriter) flushLocked() {
	if len(w.buf) == 0 {
		return
	}
	if w.discard {
		w.buf = w.buf[:0]
		return
	}
	defer func() {
		if cap(w.buf) > 256<<10 {
			w.buf = nil // hold no large buffer for an idle stream
		} else {
			w.buf = w.buf[:0]
		}
	}()
	if w.f == nil {
		if err := w.openLocked(); err != nil {
			return
		}
	}
	n, _ := w.f.Write(w.buf)
	w.size += int64(n)
}

// openLocked opens (or creates) the current file. It follows no symlink
// and accepts only a regular file: a log dir a container once could write
// must not make the writer append to another file.
func (w *LogWriter) openLocked() error {
	return w.openFlagsLocked(os.O_WRONLY | os.O_CREATE | os.O_APPEND)
}

func (w *LogWriter) openFlagsLocked(flags int) error {
	f, err := os.OpenFile(w.path, flags|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("%s is not a regular file", w.path)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

func (w *LogWriter) rotateLocked() {
	w.f.Close()
	w.f = nil
	// A remove and renames of the older files, the current one's rename
	// and a new file's open (the truncating open alone with one file).
	w.fileOps += max(w.maxFiles, 1) + 1
	if w.maxFiles <= 1 {
		_ = w.openFlagsLocked(os.O_WRONLY | os.O_CREATE | os.O_APPEND | os.O_TRUNC)
		return
	} else {
		_ = os.Remove(fmt.Sprintf("%s.%d", w.path, w.maxFiles-1))
		for i := w.maxFiles - 2; i >= 1; i-- {
			_ = os.Rename(fmt.Sprintf("%s.%d", w.path, i), fmt.Sprintf("%s.%d", w.path, i+1))
		}
		_ = os.Rename(w.path, w.path+".1")
	}
	_ = w.openLocked()
}

// TakeFileOps returns how many file operations (removes, renames, opens)
// rotations did since the last call: the supervisor charges them to the
// container's output budget, since a small max-size over many files makes
// rotating cost far more than writing.
func (w *LogWriter) TakeFileOps() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.fileOps
	w.fileOps = 0
	return n
}

// Close closes the current file.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
