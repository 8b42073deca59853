// Package supclient is the agent's side of the node supervisor
// (runtime/supervisor): it starts the supervisor when none answers, asks it
// to start containers and exec processes, and follows its exit events.
package supclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api/timerslack"
	"github.com/shoal-org/shoal/runtime/supervisor"
)

// Client is the agent's side of the node supervisor: it
// starts the supervisor when none answers, asks it to start containers, and
// keeps one watch connection open while Run runs, turning exit events into
// closed channels.
type Client struct {
	root string // runtime Root: socket, lock and log of the supervisor
	bin  string // the binary to run as shoal-supervisor
	log  *slog.Logger

	spawnMu sync.Mutex // one spawn at a time

	mu    sync.Mutex
	slots map[string]*ExitSlot

	// bundle: the supervisor last watched takes supervisor.Request.Bundle.
	bundle atomic.Bool
	// leases: the supervisor last watched takes "leases".
	leases atomic.Bool
}

// ExitSlot is what a container's watcher waits on: Done is closed when the
// supervisor reported the container's exit, Lost when a (new) supervisor
// no longer knows the container, so its exit will never be reported.
type ExitSlot struct {
	Done, Lost chan struct{}
	fired      bool
}

// New returns a client of the supervisor of runtime root root, run from
// binary bin when none answers.
func New(root, bin string, log *slog.Logger) *Client {
	return &Client{root: root, bin: bin, log: log, slots: map[string]*ExitSlot{}}
}

// Slot returns id's slot, making it if needed.
func (s *Client) Slot(id string) *ExitSlot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slotLocked(id)
}

func (s *Client) slotLocked(id string) *ExitSlot {
	sl := s.slots[id]
	if sl == nil {
		sl = &ExitSlot{Done: make(chan struct{}), Lost: make(chan struct{})}
		s.slots[id] = sl
	}
	return sl
}

// Forget drops id's slot (its exit was handled, or it is removed).
func (s *Client) Forget(id string) {
	s.mu.Lock()
	delete(s.slots, id)
	s.mu.Unlock()
}

func (s *Client) exited(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.slotLocked(id)
	if !sl.fired {
		sl.fired = true
		close(sl.Done)
	}
}

// markLost closes the lost channel of every slot whose container the
// supervisor does not hold (running is its answer to a watch).
func (s *Client) markLost(running map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, sl := range s.slots {
		if _, ok := running[id]; !ok && !sl.fired {
			sl.fired = true
			close(sl.Lost)
		}
	}
}

// Dial connects to the supervisor, starting one when none answers.
func (s *Client) Dial(ctx context.Context) (net.Conn, error) {
	sock := filepath.Join(s.root, supervisor.SockFile)
	var d net.Dialer
	if c, err := d.DialContext(ctx, "unix", supervisor.ShortSockPath(sock)); err == nil {
		return c, nil
	}
	s.spawnMu.Lock()
	defer s.spawnMu.Unlock()
	if c, err := d.DialContext(ctx, "unix", supervisor.ShortSockPath(sock)); err == nil {
		return c, nil
	}
	logf, err := os.OpenFile(filepath.Join(s.root, supervisor.LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open supervisor log: %w", err)
	}
	defer logf.Close()
	// --detach: the process we start forks the supervisor into its own
	// session and exits, so the supervisor is nobody's child here.
	cmd := &exec.Cmd{
		Path:   s.bin,
		Args:   []string{supervisor.Arg0, "--detach", "--root", s.root},
		Stdout: logf,
		Stderr: logf,
	}
	// Started with the default timer slack, which the supervisor and
	// every container it starts inherit (api/timerslack).
	err = timerslack.Start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		tail := strings.TrimSpace(string(supervisor.TailCapped(s.root, supervisor.LogFile, 512)))
		return nil, fmt.Errorf("start supervisor %s: %w: %s", s.bin, err, tail)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := d.DialContext(ctx, "unix", supervisor.ShortSockPath(sock))
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			tail := strings.TrimSpace(string(supervisor.TailCapped(s.root, supervisor.LogFile, 512)))
			return nil, fmt.Errorf("supervisor not answering on %s: %v: %s", sock, err, tail)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Start asks the supervisor to run the bundle and returns the init's pid.
func (s *Client) Start(ctx context.Context, req supervisor.Request) (int, error) {
	req.Op = "start"
	conn, err := s.Dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	var rep supervisor.Reply
	if err := roundTrip(conn, req, &rep); err != nil {
		return 0, fmt.Errorf("supervisor: %w", err)
	}
	if rep.Error != "" {
		return 0, errors.New(rep.Error)
	}
	return rep.Pid, nil
}

func roundTrip(conn net.Conn, req supervisor.Request, rep *supervisor.Reply) error {
	if err := supervisor.WriteLine(conn, req); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	line, err := supervisor.ReadLine(br, supervisor.MaxRequest)
	if err != nil {
		return err
	}
	return json.Unmarshal(line, rep)
}

// Watch opens a watch connection and returns the supervisor's running set
// and a reader for the events that follow.
func (s *Client) Watch(ctx context.Context) (map[string]int, net.Conn, *bufio.Reader, error) {
	conn, err := s.Dial(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := supervisor.WriteLine(conn, supervisor.Request{Op: "watch"}); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	br := bufio.NewReader(conn)
	line, err := supervisor.ReadLine(br, supervisor.MaxRequest)
	if err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("supervisor watch: %w", err)
	}
	var rep supervisor.Reply
	if err := json.Unmarshal(line, &rep); err != nil {
		conn.Close()
		return nil, nil, nil, fmt.Errorf("supervisor watch: %w", err)
	}
	if rep.Running == nil {
		rep.Running = map[string]int{}
	}
	s.bundle.Store(rep.Bundle)
	s.leases.Store(rep.Leases)
	return rep.Running, conn, br, nil
}

// TakesBundle reports whether the supervisor, as of the last Watch, runs a
// bundle kept apart from the container's dir (supervisor.Request.Bundle).
// A supervisor started before that existed outlives an agent upgrade
// while it holds containers; until it is gone this stays false, also when
// no Watch succeeded.
func (s *Client) TakesBundle() bool { return s.bundle.Load() }

// TakesLeases reports whether the supervisor, as of the last Watch, sets
// many leases in one request ("leases"); one of an earlier release takes
// "fence" only, or no lease at all, and outlives an agent upgrade while it
// holds containers.
func (s *Client) TakesLeases() bool { return s.leases.Load() }

// maxLeasesPerRequest keeps a "leases" request well under
// supervisor.MaxRequest (a lease is about 130 bytes of JSON).
const maxLeasesPerRequest = 4096

// Leases sets every lease in ls with one request per maxLeasesPerRequest
// (FenceAfterMs 0 disarms; see Fence). It returns the error of each lease
// the supervisor refused, by container ID, and err when a request failed
// as a whole (the leases of that request and after it are then not known
// to be set). A supervisor without TakesLeases answers "unknown op".
func (s *Client) Leases(ctx context.Context, ls []supervisor.Lease) (map[string]error, error) {
	var failed map[string]error
	for len(ls) > 0 {
		n := min(len(ls), maxLeasesPerRequest)
		f, err := s.leasesOnce(ctx, ls[:n])
		if err != nil {
			return failed, err
		}
		for id, msg := range f {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[id] = errors.New(msg)
		}
		ls = ls[n:]
	}
	return failed, nil
}

func (s *Client) leasesOnce(ctx context.Context, ls []supervisor.Lease) (map[string]string, error) {
	conn, err := s.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	var rep supervisor.Reply
	if err := roundTrip(conn, supervisor.Request{Op: "leases", Leases: ls}, &rep); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	return rep.Failed, nil
}

// Follow turns the events of one watch connection into closed done
// channels until the connection ends (or ctx does, which closes it), then
// reconnects, marking the containers the supervisor lost meanwhile, until
// ctx ends. A nil conn (the first Watch failed) starts with the reconnect:
// every exit a watch misses must still reach its slot, as a done or a
// lost.
func (s *Client) Follow(ctx context.Context, conn net.Conn, br *bufio.Reader) {
	for {
		if conn != nil {
			s.follow(ctx, conn, br)
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("lost the supervisor's watch connection; reconnecting")
		}
		running, c, b, err := s.WatchTries(ctx, 0)
		if err != nil {
			return // ctx ended
		}
		s.markLost(running)
		conn, br = c, b
	}
}

// WatchTries is Watch tried up to tries times (0: until ctx ends), a
// second apart, each failure logged.
func (s *Client) WatchTries(ctx context.Context, tries int) (map[string]int, net.Conn, *bufio.Reader, error) {
	for try := 1; ; try++ {
		running, conn, br, err := s.Watch(ctx)
		if err == nil || ctx.Err() != nil || try == tries {
			return running, conn, br, err
		}
		s.log.Warn("watch the node supervisor; trying again", "err", err)
		select {
		case <-ctx.Done():
			return nil, nil, nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// follow reads one watch connection's events until it ends (ctx's end
// closes it).
func (s *Client) follow(ctx context.Context, conn net.Conn, br *bufio.Reader) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	for {
		line, err := supervisor.ReadLine(br, supervisor.MaxRequest)
		if err != nil {
			return
		}
		var ev supervisor.Event
		if json.Unmarshal(line, &ev) == nil && ev.ID != "" {
			s.exited(ev.ID)
		}
	}
}

// Exec asks the supervisor to run `runc exec --detach` (req.Process,
// req.PidFile, req.ConsoleSocket) in container req.ID, with stdio as runc's
// and the process's stdin, stdout and stderr (sent over the socket; the
// caller still closes its copies). It returns once runc has exited: the
// process's pid, and the connection on which the supervisor takes "signal"
// lines and reports the process's end (one supervisor.Event). The caller owns and
// closes conn. A cancelled ctx abandons the request; once the pid is
// answered the process runs on regardless.
func (s *Client) Exec(ctx context.Context, req supervisor.Request, stdio [3]*os.File) (int, *net.UnixConn, *bufio.Reader, error) {
	req.Op = "exec"
	c, err := s.Dial(ctx)
	if err != nil {
		return 0, nil, nil, err
	}
	conn := c.(*net.UnixConn)
	finished, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-ctx.Done():
			_ = conn.SetDeadline(time.Now())
		case <-finished:
		}
	}()
	pid, br, err := func() (int, *bufio.Reader, error) {
		b, err := json.Marshal(req)
		if err != nil {
			return 0, nil, err
		}
		fds := make([]int, len(stdio))
		for i, f := range stdio {
			fds[i] = int(f.Fd())
		}
		// One sendmsg: the descriptors travel with the request's first byte.
		_, _, err = conn.WriteMsgUnix(append(b, '\n'), unix.UnixRights(fds...), nil)
		goruntime.KeepAlive(stdio)
		if err != nil {
			return 0, nil, err
		}
		br := bufio.NewReader(conn)
		line, err := supervisor.ReadLine(br, supervisor.MaxRequest)
		if err != nil {
			return 0, nil, err
		}
		var rep supervisor.Reply
		if err := json.Unmarshal(line, &rep); err != nil {
			return 0, nil, err
		}
		if rep.Error != "" && rep.RuncFailed {
			return 0, nil, fmt.Errorf("%w: %s", supervisor.ErrRuncExec, strings.TrimPrefix(rep.Error, supervisor.ErrRuncExec.Error()+": "))
		}
		if rep.Error != "" {
			return 0, nil, errors.New(rep.Error)
		}
		if rep.Pid <= 0 {
			return 0, nil, errors.New("no pid in the answer")
		}
		return rep.Pid, br, nil
	}()
	close(finished)
	<-watched
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return 0, nil, nil, ctx.Err()
		}
		if errors.Is(err, supervisor.ErrRuncExec) {
			return 0, nil, nil, err
		}
		return 0, nil, nil, fmt.Errorf("supervisor: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return pid, conn, br, nil
}

// ErrNoLease is Fence's error when the supervisor knows no lease at all:
// one started by a release before the at-most-once lease, which outlives
// the agent's upgrade while it holds containers (runtime/README.md, "At-most-once
// leases and an older supervisor").
var ErrNoLease = errors.New("the node's supervisor was started by a release without the at-most-once lease and outlives agent upgrades while it holds containers: if this agent is killed or hangs, nothing stops these containers before the leader replaces them elsewhere (the agent's own fence still stops them when it loses the leader); to replace the supervisor, drain the node, stop the agent for more than 5 s once no container runs, and start it again")

// Fence arms (after > 0) or disarms (after 0) the supervisor's lease on
// container id: unless renewed within after, the supervisor sends it sig
// and SIGKILLs it grace later (supervisor/fence.go). A supervisor from
// before the lease answers "unknown op": ErrNoLease.
func (s *Client) Fence(ctx context.Context, id string, after, grace time.Duration, sig syscall.Signal) error {
	req := supervisor.Request{Op: "fence", ID: id, Signal: int(sig)}
	if after > 0 {
		req.FenceAfterMs = max(after.Milliseconds(), 1)
		req.StopGraceMs = max(grace.Milliseconds(), 0)
	}
	conn, err := s.Dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	var rep supervisor.Reply
	if err := roundTrip(conn, req, &rep); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	if strings.HasPrefix(rep.Error, "unknown op") {
		return ErrNoLease
	}
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}
