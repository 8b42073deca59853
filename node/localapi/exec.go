package localapi

// `shoal exec`: POST /v1/containers/{id}/exec upgrades the connection
// (api/exec.go describes the frames). The process is started before the
// upgrade, so every refusal (no such container, not running, no such
// executable) is an ordinary error answer; after it the handler relays the
// process's terminal or pipes, input, resizes and signals, and ends with
// the exit code.
//
// Why input has a goroutine, a queue and a stall limit of its own. Input,
// the end of input, resizes and signals arrive on one stream, in the order
// the client sent them (and the CLI sends them through one writer, so its
// ^C waits behind its own blocked input write). The protocol has no flow
// control (no window per direction as in ssh), so when the process does not
// keep up with its input the agent can either stop reading the stream (what
// a pipe does: nothing is lost, but nothing behind the input is seen
// either: not ^C, not a resize, not the client going away) or read on and
// hold or drop the input. It does the first while the process takes its
// input and the second once it has stopped taking it:
//
//   - the frame reader hands input to a queue of execStdinQueue frames (at
//     most 1 MiB) that a writer goroutine empties into the process's stdin
//     or terminal, and waits only while that queue is full. A process
//     slower than the client (`shoal exec -i db psql < dump.sql`, `tar x`)
//     gets the backpressure of a pipe and every byte, as with docker exec;
//     frames behind the input are read as soon as the queue has room again.
//   - if the process takes none of its input (not one execStdinChunk) for
//     execStdinStall while the queue is full, it is not reading it
//     (`tail -f /dev/null < bigfile`): the input ends there. What was
//     queued is still written, then a stdin pipe is closed (a terminal
//     stays open: closing it would hang the process up); later input is
//     discarded and the client is told so on stderr. The reader never
//     waits again, so ^C, resizes and a client that goes away are seen at
//     once; before, they wait at most execStdinStall.
//
// Discarding input as soon as the queue is full would break every bulk
// input to a process slower than the socket, which works with docker exec;
// a long stall is what only a process ignoring its input (or pausing for
// long with more than the queue still to come) shows, and ending the input
// at a frame boundary gives the process an end rather than a gap.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/runtime"
)

const (
	// execDrain is how long output is still relayed after the process
	// ended, for what a background child keeps writing to the same pipes or
	// terminal.
	execDrain = 2 * time.Second
	// execStdinQueue is how many input frames (of at most api.MaxExecFrame:
	// 1 MiB) are read ahead of the process.
	execStdinQueue = 16
	// execStdinStall is how long a process may take none of its input while
	// the queue is full before its input ends (see the top of the file).
	execStdinStall = 30 * time.Second
	// execStdinChunk is how much input the writer hands the process at
	// once: each chunk taken is progress that restarts the stall limit.
	execStdinChunk = 4 << 10
)

func execError(err error) error {
	if errors.Is(err, runtime.ErrExecFailed) {
		return &httpapi.Error{Status: http.StatusUnprocessableEntity, Msg: err.Error()}
	}
	return ContainerError(err)
}

// handleExec answers an exec request; writeError answers a refusal made
// before the upgrade.
func (l *Routes) handleExec(w http.ResponseWriter, r *http.Request, writeError func(http.ResponseWriter, error)) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), api.ExecProtocol) {
		writeError(w, httpapi.BadRequest("exec needs the header Upgrade: %s", api.ExecProtocol))
		return
	}
	var req api.ExecRequest
	if err := httpapi.DecodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Cmd) == 0 || req.Cmd[0] == "" {
		writeError(w, httpapi.BadRequest("exec needs a command"))
		return
	}
	c, err := l.execContainer(r.PathValue("id"))
	if err != nil {
		writeError(w, ContainerError(err))
		return
	}
	proc, err := l.Containers.Exec(r.Context(), c.ID, runtime.ExecOptions{
		Args: req.Cmd, Env: req.Env, User: req.User, Workdir: req.Workdir,
		Tty: req.Tty, Stdin: req.Stdin && !req.Tty, Width: req.Width, Height: req.Height,
	})
	if err != nil {
		// Not wrapped: the CLI's error names the container as the user
		// did ("exec in web.1: ..."); an "exec in NAME" here doubled it.
		writeError(w, execError(err))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		l.Log.Warn("exec: hijack", "err", err)
		_ = proc.Signal(syscall.SIGKILL)
		proc.Close()
		return
	}
	_, err = fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", api.ExecProtocol)
	if err != nil {
		conn.Close()
		proc.Close()
		return
	}
	l.relayExec(conn, brw.Reader, proc, req.Tty, execStdinStall)
}

// relayExec runs an exec session on an upgraded connection until the
// process ended and its exit code was sent, the client went away, or the
// agent stops. A client that goes away closes the process's terminal (a
// hangup) or pipes, which also ends a write of input the process does not
// take; the process is still reaped by the runtime. stall is
// execStdinStall (shorter in tests).
func (l *Routes) relayExec(conn net.Conn, in *bufio.Reader, p *runtime.ExecProcess, tty bool, stall time.Duration) {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close()
	defer p.Close()
	quit := make(chan struct{})
	defer close(quit)
	stop := context.AfterFunc(l.Stopping, func() { conn.Close() })
	defer stop()

	var wmu sync.Mutex
	send := func(typ byte, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return api.WriteExecFrame(conn, typ, b)
	}
	var input *execInput
	switch {
	case tty && p.Console != nil:
		input = newExecInput(p.Console, false, stall)
	case !tty && p.Stdin != nil:
		input = newExecInput(p.Stdin, true, stall)
	}
	if input != nil {
		wg.Go(func() { input.run(quit) })
	}
	clientGone := make(chan struct{})
	wg.Go(func() {
		defer close(clientGone)
		for {
			typ, payload, err := api.ReadExecFrame(in)
			if err != nil {
				return
			}
			switch typ {
			case api.ExecStdin:
				if input != nil && input.put(payload, quit) {
					to := api.ExecStderr
					if tty {
						to = api.ExecStdout // a terminal merges both
					}
					msg := fmt.Sprintf("shoal exec: the process took none of its input for %v: its input ends after %d bytes, the rest is discarded\n", stall, input.accepted)
					// Not from the reader: the client may not be reading.
					wg.Go(func() { _ = send(to, []byte(msg)) })
				}
			case api.ExecStdinClose:
				if !tty && input != nil {
					input.end()
				}
			case api.ExecResize:
				if wd, ht, err := api.DecodeResize(payload); err == nil && tty {
					_ = p.Resize(wd, ht)
				}
			case api.ExecSignal:
				if len(payload) == 1 && payload[0] > 0 && payload[0] <= 64 {
					_ = p.Signal(syscall.Signal(payload[0]))
				}
			}
		}
	})
	var outWG sync.WaitGroup
	pump := func(f *os.File, typ byte) {
		defer outWG.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if send(typ, buf[:n]) != nil {
					return
				}
			}
			if err != nil {
				return // EOF, EIO (terminal hung up), deadline or closed
			}
		}
	}
	var outs []*os.File
	if tty {
		outWG.Add(1)
		go pump(p.Console, api.ExecStdout)
		outs = append(outs, p.Console)
	} else {
		outWG.Add(2)
		go pump(p.Stdout, api.ExecStdout)
		go pump(p.Stderr, api.ExecStderr)
		outs = append(outs, p.Stdout, p.Stderr)
	}
	outDone := make(chan struct{})
	go func() { outWG.Wait(); close(outDone) }()

	select {
	case <-p.Done():
	case <-clientGone:
		for _, f := range outs {
			_ = f.SetReadDeadline(time.Now())
		}
		<-outDone
		return
	case <-l.Stopping.Done():
		for _, f := range outs {
			_ = f.SetReadDeadline(time.Now())
		}
		<-outDone
		return
	}
	t := time.NewTimer(execDrain)
	defer t.Stop()
	select {
	case <-outDone:
	case <-t.C:
		for _, f := range outs {
			_ = f.SetReadDeadline(time.Now())
		}
		<-outDone
	}
	_ = send(api.ExecExit, api.EncodeExit(p.ExitCode()))
}

// execInput writes a session's input to the process on a goroutine of its
// own (run), fed by the frame reader (put, end) through a bounded queue; the
// top of the file says why. put and end are for the frame reader alone.
type execInput struct {
	w          *os.File
	closeAtEnd bool // w is a stdin pipe: close it once the input ended
	stall      time.Duration

	queue    chan []byte
	progress chan struct{} // (1) the process took a chunk of input
	ended    chan struct{} // closed by end: no more input after what is queued
	done     chan struct{} // closed when run returns

	isEnded  bool  // the reader's: ended is closed
	accepted int64 // the reader's: bytes queued
}

func newExecInput(w *os.File, closeAtEnd bool, stall time.Duration) *execInput {
	return &execInput{
		w: w, closeAtEnd: closeAtEnd, stall: stall,
		queue:    make(chan []byte, execStdinQueue),
		progress: make(chan struct{}, 1),
		ended:    make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// put queues one frame of input. While the queue is full it waits, for as
// long as the process keeps taking input; if the process takes none for the
// stall limit, put ends the input and reports true (once). Input after the
// end, after the process stopped taking it, or once quit is closed is
// dropped.
func (in *execInput) put(b []byte, quit <-chan struct{}) (stalled bool) {
	if in.isEnded {
		return false
	}
	select {
	case <-in.done:
		return false
	case in.queue <- b:
		in.accepted += int64(len(b))
		return false
	default:
	}
	t := time.NewTimer(in.stall)
	defer t.Stop()
	for {
		select {
		case in.queue <- b:
			in.accepted += int64(len(b))
			return false
		case <-in.progress:
			t.Reset(in.stall)
		case <-in.done:
			return false
		case <-quit:
			return false
		case <-t.C:
			in.end()
			return true
		}
	}
}

// end ends the input after what is queued (ExecStdinClose, or a stall).
// Safe to call twice.
func (in *execInput) end() {
	if !in.isEnded {
		in.isEnded = true
		close(in.ended)
	}
}

// run writes the queued input to the process until the input ended and
// was written, the process stopped taking it (a write failed), or quit is
// closed; then it closes a stdin pipe. A write the process never takes
// ends when the session closes the process's files (Process.Close).
func (in *execInput) run(quit <-chan struct{}) {
	defer close(in.done)
	if in.closeAtEnd {
		defer in.w.Close()
	}
	for {
		select {
		case b := <-in.queue:
			if !in.write(b) {
				return
			}
		case <-in.ended:
			for {
				select {
				case b := <-in.queue:
					if !in.write(b) {
						return
					}
				default:
					return
				}
			}
		case <-quit:
			return
		}
	}
}

// write hands b to the process in chunks, noting each one it took.
func (in *execInput) write(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), execStdinChunk)
		if _, err := in.w.Write(b[:n]); err != nil {
			return false
		}
		b = b[n:]
		select {
		case in.progress <- struct{}{}:
		default:
		}
	}
	return true
}
