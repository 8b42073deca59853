// Package exec is `shoal exec`: a process in a running container of this
// node, relayed over an upgraded API connection (api/exec.go). With -t the
// process gets a terminal; with -i the CLI's stdin is relayed (and, on a
// terminal with -t, put in raw mode so keys such as ^C reach the process's
// terminal). Without a terminal, SIGINT and SIGTERM are forwarded to the
// process. The CLI exits with the process's exit code.
package exec

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// startFailureCode is the exit code of an exec whose process could not be
// started (the agent's 422, runc's message in msg), as docker's: 127 when
// the command cmd does not exist, 126 for anything else that kept it from
// starting (permission denied, an unknown user, a working directory that
// does not exist). Only runc's lookup of the command itself — `exec:
// "CMD": executable file not found in $PATH` or `exec: "/CMD": stat /CMD:
// no such file or directory` — is "not found": `-w /nonexist` also says
// "no such file or directory", of the directory, and exited 127 as if the
// command were missing.
func startFailureCode(msg, cmd string) int {
	named := strings.Contains(msg, "exec: "+strconv.Quote(cmd)+": ") || strings.Contains(msg, `exec: "`+cmd+`": `)
	if named && (strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory")) {
		return shell.ExitNotFound
	}
	return shell.ExitCannotInvoke
}

// commands are the action of `shoal exec`, on the shared shell.
type commands struct{ *shell.Shell }

// Command defines `shoal exec`.
func Command(sh *shell.Shell) *cli.Command {
	s := &commands{sh}
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command in a running container of this node (container or task name, e.g. web.1)",
		ArgsUsage: "CONTAINER COMMAND [ARG...]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "interactive", Aliases: []string{"i"}, Usage: "relay stdin"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a terminal"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "environment variable K=V"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Usage: "user[:group] to run as"},
			&cli.StringFlag{Name: "workdir", Aliases: []string{"w"}, Usage: "working directory (absolute)"},
		},
		Action: s.execAction,
	}
}

// buildExecRequest turns the flags and arguments into a request.
func buildExecRequest(c *cli.Context) (string, api.ExecRequest, error) {
	if err := shell.NeedArgs(c, 2, -1); err != nil {
		return "", api.ExecRequest{}, err
	}
	req := api.ExecRequest{
		Cmd:     c.Args().Tail(),
		User:    c.String("user"),
		Workdir: c.String("workdir"),
		Tty:     c.Bool("tty"),
		Stdin:   c.Bool("interactive"),
	}
	if req.Workdir != "" && !strings.HasPrefix(req.Workdir, "/") {
		return "", req, specflags.UsageErrorf("--workdir %q: must be an absolute path", req.Workdir)
	}
	var err error
	if req.Env, err = specflags.SetEnvs(nil, c.StringSlice("env")); err != nil {
		return "", req, specflags.SpecError("env", err)
	}
	return c.Args().First(), req, nil
}

func (s *commands) execAction(c *cli.Context) error {
	ref, req, err := buildExecRequest(c)
	if err != nil {
		return err
	}
	in, _ := s.Stdin.(*os.File)
	termIn := in != nil && isTerminal(in.Fd())
	if req.Tty && req.Stdin && !termIn {
		// As docker: input piped into a terminal session never ends it
		// (the end of a pipe is no ^D to a shell on a pty), so
		// `echo cmd | shoal exec -it web.1 sh` hung for good, and the
		// signals it forwards do not end an interactive shell either.
		return fmt.Errorf("exec in %s: the input device is not a TTY: drop -t to pipe input, or run it from a terminal", ref)
	}
	// Signals are caught before the terminal size is read, so a resize in
	// between is not lost.
	sigs := []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}
	if req.Tty {
		sigs = append(sigs, syscall.SIGWINCH)
	}
	sigCh := make(chan os.Signal, 8)
	signal.Notify(sigCh, sigs...)
	done := make(chan struct{})
	defer func() { signal.Stop(sigCh); close(done) }()
	if req.Tty {
		for _, f := range []any{s.Stdin, s.Stdout} {
			if f, ok := f.(*os.File); ok && isTerminal(f.Fd()) {
				req.Width, req.Height = termSize(f.Fd())
				break
			}
		}
	}
	cl, err := s.Client(c)
	if err != nil {
		return err
	}
	conn, err := cl.Exec(c.Context, ref, req)
	if err != nil {
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnprocessableEntity {
			return &shell.ExitCodeError{Code: startFailureCode(ae.Message, req.Cmd[0]), Err: fmt.Errorf("exec in %s: %w", ref, err)}
		}
		return fmt.Errorf("exec in %s: %w", ref, err)
	}
	defer conn.Close()

	if req.Tty && req.Stdin && termIn {
		restore, err := makeRaw(in.Fd())
		if err == nil {
			defer restore()
		}
	}
	go func() {
		for {
			select {
			case <-done:
				return
			case sig := <-sigCh:
				if sig == syscall.SIGWINCH {
					for _, f := range []any{s.Stdin, s.Stdout} {
						if f, ok := f.(*os.File); ok && isTerminal(f.Fd()) {
							_ = conn.Resize(termSize(f.Fd()))
							break
						}
					}
					continue
				}
				_ = conn.Signal(int(sig.(syscall.Signal)))
			}
		}
	}()
	if req.Stdin {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Stdin.Read(buf)
				if n > 0 && conn.Stdin(buf[:n]) != nil {
					return
				}
				if err != nil {
					_ = conn.CloseStdin()
					return
				}
			}
		}()
	}
	for {
		typ, p, err := conn.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("exec in %s: the agent ended the session without an exit status", ref)
			}
			return fmt.Errorf("exec in %s: %w", ref, err)
		}
		switch typ {
		case api.ExecStdout:
			_, _ = s.Stdout.Write(p)
		case api.ExecStderr:
			_, _ = s.Stderr.Write(p)
		case api.ExecError:
			return fmt.Errorf("exec in %s: %s", ref, p)
		case api.ExecExit:
			code, err := api.DecodeExit(p)
			if err != nil {
				return fmt.Errorf("exec in %s: %w", ref, err)
			}
			if code != 0 {
				if code < 0 {
					code = shell.ExitCannotInvoke
				}
				return &shell.ExitCodeError{Code: code}
			}
			return nil
		}
	}
}

func isTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}

// termSize returns a terminal's width and height (0, 0 if unknown).
func termSize(fd uintptr) (uint16, uint16) {
	ws, err := unix.IoctlGetWinsize(int(fd), unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0
	}
	return ws.Col, ws.Row
}

// makeRaw puts a terminal in raw mode (cfmakeraw) and returns how to
// restore it.
func makeRaw(fd uintptr) (func(), error) {
	old, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(int(fd), unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(int(fd), unix.TCSETS, old) }, nil
}
