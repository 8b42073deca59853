package localapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime"
)

// testStall is the stall limit of the sessions here: short, so a process
// that does not read its input is found out quickly.
const testStall = 50 * time.Millisecond

// floodFrames is more input than a pipe or a terminal, plus the queue,
// holds (40 frames of 64 KiB).
const floodFrames = 40

// execSession is one relayExec on an in-memory connection; the test is
// the client.
type execSession struct {
	cli  net.Conn
	wmu  sync.Mutex
	done chan struct{} // relayExec returned

	mu  sync.Mutex
	out bytes.Buffer // ExecStdout and ExecStderr frames, in order
}

// startExec runs relayExec for p (a process that never exits: its Done
// channel is nil). Cleanup stops the agent, which ends a session a failed
// test left running.
func startExec(t *testing.T, p *runtime.ExecProcess, tty bool, stall time.Duration) *execSession {
	t.Helper()
	stopping, stop := context.WithCancel(context.Background())
	l := &Routes{Log: slog.New(slog.DiscardHandler), Stopping: stopping}
	srv, cli := net.Pipe()
	s := &execSession{cli: cli, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		l.relayExec(srv, bufio.NewReader(srv), p, tty, stall)
	}()
	go func() {
		for {
			typ, b, err := api.ReadExecFrame(cli)
			if err != nil {
				return
			}
			if typ == api.ExecStdout || typ == api.ExecStderr {
				s.mu.Lock()
				s.out.Write(b)
				s.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		stop()
		cli.Close()
		<-s.done
	})
	return s
}

func (s *execSession) send(typ byte, b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return api.WriteExecFrame(s.cli, typ, b)
}

func (s *execSession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// inputData is the input the tests send: n bytes, each telling its offset.
func inputData(n int) []byte {
	block := make([]byte, 251)
	for i := range block {
		block[i] = byte(i)
	}
	return bytes.Repeat(block, n/len(block)+1)[:n]
}

// sendInput sends data in frames of size, then the frames of then, on a
// goroutine; the returned channel is closed once all were sent (or the
// connection failed).
func (s *execSession) sendInput(data []byte, size int, then ...func() error) <-chan struct{} {
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for len(data) > 0 {
			n := min(len(data), size)
			if s.send(api.ExecStdin, data[:n]) != nil {
				return
			}
			data = data[n:]
		}
		for _, f := range then {
			if f() != nil {
				return
			}
		}
	}()
	return sent
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closed(ch <-chan struct{}) func() bool {
	return func() bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
}

// pipeProcess is a process without a terminal that never exits and never
// reads its stdin unless the test does: the test holds the other ends of
// its pipes.
func pipeProcess(t *testing.T) (p *runtime.ExecProcess, stdin *os.File) {
	t.Helper()
	inR, inW, err1 := os.Pipe()
	outR, outW, err2 := os.Pipe()
	errR, errW, err3 := os.Pipe()
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	t.Cleanup(func() { inR.Close(); outW.Close(); errW.Close() })
	return &runtime.ExecProcess{Stdin: inW, Stdout: outR, Stderr: errR}, inR
}

// TestRelayExecEndsWhenClientLeaves: a client that goes away ends the
// session, also when it sent more input than the process reads (tail -f
// /dev/null < bigfile). The frame reader once wrote input inline, so it hung
// in that write: the hangup behind it (and a ^C) was never read and the
// session held its goroutines, connection and pipes until the process
// exited. (A ^C cannot be sent here: a Process made in a test has no
// supervisor connection to signal through; the terminal test below sends a
// resize, which the same reader handles.)
func TestRelayExecEndsWhenClientLeaves(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames int
	}{
		{"idle", 0},
		{"behind input the process does not read", floodFrames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := pipeProcess(t)
			s := startExec(t, p, false, testStall)
			s.sendInput(inputData(tc.frames*api.MaxExecFrame), api.MaxExecFrame, s.cli.Close)
			waitFor(t, "relayExec still runs after the client went away", closed(s.done))
		})
	}
}

// TestRelayExecStalledInputEnds: once the process took none of its input for
// the stall limit, its input ends after what was queued (written in full,
// then stdin closed: an end, not a gap), the rest is discarded and the
// client is told so.
func TestRelayExecStalledInputEnds(t *testing.T) {
	p, stdin := pipeProcess(t)
	s := startExec(t, p, false, testStall)
	data := inputData(floodFrames * api.MaxExecFrame)
	sent := s.sendInput(data, api.MaxExecFrame)
	notice := regexp.MustCompile(`shoal exec: the process took none of its input for \S+: its input ends after (\d+) bytes`)
	waitFor(t, "no notice that the input ended", func() bool { return notice.MatchString(s.output()) })
	waitFor(t, "the client's input is still not all read", closed(sent))

	// The process reads its stdin now: what was accepted, then the end.
	type result struct {
		b   []byte
		err error
	}
	got := make(chan result, 1)
	go func() { b, err := io.ReadAll(stdin); got <- result{b, err} }()
	var r result
	waitFor(t, "stdin did not end", func() bool {
		select {
		case r = <-got:
			return true
		default:
			return false
		}
	})
	if r.err != nil {
		t.Fatal(r.err)
	}
	accepted, _ := strconv.Atoi(notice.FindStringSubmatch(s.output())[1])
	if !bytes.HasPrefix(data, r.b) {
		t.Errorf("stdin got %d bytes that are not the start of the input", len(r.b))
	}
	if len(r.b) != accepted {
		t.Errorf("stdin got %d bytes, the notice says %d", len(r.b), accepted)
	}
	if accepted >= len(data) || accepted < api.MaxExecFrame {
		t.Errorf("input ended after %d of %d bytes: want more than a frame, less than all", accepted, len(data))
	}
}

// TestRelayExecInputInOrder: input to a process that reads it arrives
// whole and in order, however far it runs ahead of the process, and
// ExecStdinClose ends it after the last byte.
func TestRelayExecInputInOrder(t *testing.T) {
	p, stdin := pipeProcess(t)
	s := startExec(t, p, false, execStdinStall)
	data := inputData(3<<20 + 17)
	s.sendInput(data, 32<<10, func() error { return s.send(api.ExecStdinClose, nil) })
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(stdin); got <- b }()
	var b []byte
	waitFor(t, "stdin did not end", func() bool {
		select {
		case b = <-got:
			return true
		default:
			return false
		}
	})
	if !bytes.Equal(b, data) {
		t.Errorf("stdin got %d bytes, want the %d sent, in order", len(b), len(data))
	}
	if out := s.output(); out != "" {
		t.Errorf("unexpected output %q", out)
	}
}

// openPty opens a terminal pair: master as the agent holds a process's
// console, slave in raw mode (input is not echoed or edited, so it fills
// up when nobody reads it).
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	var n uint32
	if err := control(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return err
		}
		n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		return err
	}); err != nil {
		master.Close()
		t.Fatal(err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	if err := control(slave, func(fd int) error {
		tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		return unix.IoctlSetTermios(fd, unix.TCSETS, tio)
	}); err != nil {
		t.Fatal(err)
	}
	return master, slave
}

func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// TestRelayExecControlFramesBehindUnreadInput: a resize sent behind more
// input than a terminal holds reaches the terminal although the process
// reads none of it (as a ^C does: the same frame reader handles both).
func TestRelayExecControlFramesBehindUnreadInput(t *testing.T) {
	master, slave := openPty(t)
	s := startExec(t, &runtime.ExecProcess{Console: master}, true, testStall)
	s.sendInput(inputData(floodFrames*api.MaxExecFrame), api.MaxExecFrame, func() error {
		var b [4]byte
		b[1], b[3] = 123, 45 // big-endian 123 x 45
		return s.send(api.ExecResize, b[:])
	})
	waitFor(t, "the resize behind the input never reached the terminal", func() bool {
		var ws *unix.Winsize
		err := control(slave, func(fd int) (err error) { ws, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); return err })
		return err == nil && ws.Col == 123 && ws.Row == 45
	})
	waitFor(t, "no notice that the input ended", func() bool {
		return strings.Contains(s.output(), "its input ends after")
	})
}
