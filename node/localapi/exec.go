package localapi

// `shoal exec`: POST /v1/containers/{id}/exec upgrades the connection
// (api/exec.go describes the frames). The process is started before the
// upgrade, so every refusal (no such container, not running, no such
// executable) is an ordinary error answer; after it the handler relays the
// process's terminal or pipes, input, resizes and signals, and ends with
// the exit code.

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

// execDrain is how long output is still relayed after the process ended,
// for what a background child keeps writing to the same pipes or terminal.
const execDrain = 2 * time.Second

// execTarget finds the container of a `shoal exec`: a container ID, name or
// ID prefix, or a task name (web.1, web.NODEID) whose newest running
// container is on this node.
func (l *Routes) execTarget(ref string) (api.Container, error) {
	c, err := l.Containers.Get(ref)
	if err == nil || !errors.Is(err, runtime.ErrNotFound) {
		return c, err
	}
	var best api.Container
	found := false
	for _, x := range l.Containers.List() {
		// Task containers are named TASKNAME.TASKID-PREFIX.
		rest, ok := strings.CutPrefix(x.Name, ref+".")
		if !ok || rest == "" || strings.Contains(rest, ".") || x.TaskID == "" || x.State != api.ContainerRunning {
			continue
		}
		if !found || x.CreatedAt.After(best.CreatedAt) {
			best, found = x, true
		}
	}
	if !found {
		return api.Container{}, fmt.Errorf("%w on this node: %s (no container, and no running task of that name)", runtime.ErrNotFound, ref)
	}
	return best, nil
}

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
	c, err := l.execTarget(r.PathValue("id"))
	if err != nil {
		writeError(w, ContainerError(err))
		return
	}
	proc, err := l.Containers.Exec(r.Context(), c.ID, runtime.ExecOptions{
		Args: req.Cmd, Env: req.Env, User: req.User, Workdir: req.Workdir,
		Tty: req.Tty, Stdin: req.Stdin && !req.Tty, Width: req.Width, Height: req.Height,
	})
	if err != nil {
		writeError(w, execError(fmt.Errorf("exec in %s: %w", c.Name, err)))
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
	l.relayExec(conn, brw.Reader, proc, req.Tty)
}

// relayExec runs an exec session on an upgraded connection until the
// process ended and its exit code was sent, the client went away, or the
// agent stops. A client that goes away closes the process's terminal (a
// hangup) or pipes; the process is still reaped by the runtime.
func (l *Routes) relayExec(conn net.Conn, in *bufio.Reader, p *runtime.ExecProcess, tty bool) {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer conn.Close()
	defer p.Close()
	stop := context.AfterFunc(l.Stopping, func() { conn.Close() })
	defer stop()

	var wmu sync.Mutex
	send := func(typ byte, b []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return api.WriteExecFrame(conn, typ, b)
	}
	input := p.Stdin
	if tty {
		input = p.Console
	}
	clientGone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(clientGone)
		for {
			typ, payload, err := api.ReadExecFrame(in)
			if err != nil {
				return
			}
			switch typ {
			case api.ExecStdin:
				if input != nil {
					if _, err := input.Write(payload); err != nil {
						input = nil // the process closed its input
					}
				}
			case api.ExecStdinClose:
				if !tty && p.Stdin != nil {
					p.Stdin.Close()
					input = nil
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
	}()

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
