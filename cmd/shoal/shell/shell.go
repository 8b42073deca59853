// Package shell is what every command of the CLI shares: the process's
// streams and clock (Shell, which tests replace to run the whole CLI
// in-process against a fake agent), the API client of --host, the checks of
// positional arguments and mandatory flags, the exit codes, and the
// builders of list and inspect commands (lists.go). The command groups
// (cmd/shoal and its subpackages) build their commands on a *Shell; main
// wires them into one tree.
package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// Exit codes of the CLI (ExitCodeError carries others).
const (
	ExitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Exit codes of `shoal run` and `shoal exec` when the command did not run,
// docker's: ExitRunFailed when the run or exec itself failed before the
// command (a refused spec, an unknown user or image: docker run's 125),
// ExitCannotInvoke when the command could not be started (permission
// denied, a working directory that does not exist: 126), ExitNotFound
// when the command does not exist (127). Scripts tell "my command failed"
// from "it never ran" by them.
const (
	ExitRunFailed    = 125
	ExitCannotInvoke = 126
	ExitNotFound     = 127
)

// ExitCodeError ends the CLI with a given code: `shoal run` exits with the
// container's code (no message); with Err, that error is printed first, as
// any other (a run that could not start: 125 and why).
type ExitCodeError struct {
	Code int
	Err  error
}

func (e *ExitCodeError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

func (e *ExitCodeError) Unwrap() error { return e.Err }

// Shell holds what commands need from the outside world, so tests can run
// the whole CLI in-process against a fake agent.
type Shell struct {
	Stdout io.Writer
	Stderr io.Writer
	Stdin  io.Reader
	// Poll is the interval of progress polling (200ms; tests shorten it).
	Poll time.Duration
	Now  func() time.Time
}

// New returns a shell on the process's standard streams.
func New() *Shell {
	return &Shell{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Poll: 200 * time.Millisecond, Now: time.Now}
}

// Client builds an API client for the --host of this invocation.
func (s *Shell) Client(c *cli.Context) (*client.Client, error) {
	cl, err := client.New(c.String("host"))
	if err != nil {
		return nil, &specflags.UsageError{Err: err}
	}
	return cl, nil
}

// ExitCode prints err (if any) and maps it to an exit code.
func (s *Shell) ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ec *ExitCodeError
	if errors.As(err, &ec) {
		if ec.Err != nil {
			fmt.Fprintf(s.Stderr, "Error: %s\n", output.Sanitize(ec.Err.Error()))
		}
		return ec.Code
	}
	var ue *specflags.UsageError
	if errors.As(err, &ue) {
		hint := "shoal"
		if ue.Cmd != "" {
			hint += " " + ue.Cmd
		}
		fmt.Fprintf(s.Stderr, "Error: %v\nSee '%s --help'.\n", ue.Err, hint)
		return exitUsage
	}
	if errors.Is(err, context.Canceled) {
		return 130
	}
	// An error may carry what other nodes wrote (a task's error, a
	// hostname): no terminal escapes.
	fmt.Fprintf(s.Stderr, "Error: %s\n", output.Sanitize(err.Error()))
	return exitError
}

// CmdName is the command path without the program name ("service ps"),
// "" for the program itself (urfave/cli runs the top level as a command
// named after the program: a mistyped global flag said "See 'shoal shoal
// --help'").
func CmdName(c *cli.Context) string {
	if c.Command == nil || c.App != nil && c.Command.HelpName == c.App.Name {
		return ""
	}
	if h := c.Command.HelpName; strings.HasPrefix(h, "shoal ") {
		return strings.TrimPrefix(h, "shoal ")
	}
	return c.Command.FullName()
}

// Connect checks the number of positional arguments, then makes the API
// client: how most actions start.
func (s *Shell) Connect(c *cli.Context, min, max int) (*client.Client, error) {
	if err := NeedArgs(c, min, max); err != nil {
		return nil, err
	}
	return s.Client(c)
}

// NeedArgs checks the number of positional arguments.
func NeedArgs(c *cli.Context, min, max int) error {
	n := c.NArg()
	if n < min || (max >= 0 && n > max) {
		usage := c.Command.ArgsUsage
		var want string
		switch {
		case max < 0:
			want = fmt.Sprintf("at least %d", min)
		case min == max:
			want = fmt.Sprintf("exactly %d", min)
		default:
			want = fmt.Sprintf("%d to %d", min, max)
		}
		return &specflags.UsageError{
			Err: fmt.Errorf("%q requires %s argument(s), got %d\nUsage: shoal %s [OPTIONS] %s", CmdName(c), want, n, CmdName(c), usage),
			Cmd: CmdName(c),
		}
	}
	return nil
}

// OutputFlags are --format and -q for list and inspect commands.
func OutputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "format", Usage: "json, table or a Go template"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only print IDs"},
	}
}

// NoTruncFlag keeps IDs and texts whole.
var NoTruncFlag = &cli.BoolFlag{Name: "no-trunc", Usage: "do not truncate output"}

// OutputOf reads the output flags of a command.
func OutputOf(c *cli.Context) (output.Opts, error) {
	o := output.Opts{Format: c.String("format"), Quiet: c.Bool("quiet"), NoTrunc: c.Bool("no-trunc")}
	if strings.TrimSpace(o.Format) == "" && o.Format != "" {
		return o, specflags.UsageErrorf("empty --format")
	}
	return o, nil
}

// EachArg runs do for every argument of a command that acts on several
// objects (rm, stop): a failure is printed on stderr and the loop goes on
// with the next argument; the command then exits 1 without printing the
// error again. do prints its own success output.
func (s *Shell) EachArg(args []string, do func(arg string) error) error {
	var failed error
	for _, a := range args {
		if err := do(a); err != nil {
			failed = err
			fmt.Fprintf(s.Stderr, "Error: %v\n", err)
		}
	}
	return QuietFailure(failed)
}

// EachRef is the action of a command that acts on each of its one or
// more arguments (rm, stop): it connects, runs do for each argument in
// turn, prints the argument when do succeeds (as docker's rm and stop do)
// and, when it fails, the error with what and the argument before it
// (Wrap: "remove volume db: ..."), going on with the next (EachArg).
func (s *Shell) EachRef(c *cli.Context, what string, do func(cl *client.Client, ref string) error) error {
	cl, err := s.Connect(c, 1, -1)
	if err != nil {
		return err
	}
	return s.EachArg(c.Args().Slice(), func(ref string) error {
		if err := do(cl, ref); err != nil {
			return Wrap(what+" "+ref, err)
		}
		fmt.Fprintln(s.Stdout, ref)
		return nil
	})
}

// QuietFailure turns an error already printed (by a command acting on
// several arguments) into exit code 1 without printing it again.
func QuietFailure(err error) error {
	if err == nil {
		return nil
	}
	return &ExitCodeError{Code: exitError}
}

// RequireFlags fails with a usage error when a mandatory flag is missing
// (urfave/cli's own Required check does not go through OnUsageError).
func RequireFlags(c *cli.Context, names ...string) error {
	for _, n := range names {
		if !c.IsSet(n) || c.String(n) == "" {
			return &specflags.UsageError{Err: fmt.Errorf("flag --%s is required", n), Cmd: CmdName(c)}
		}
	}
	return nil
}

// OpenInput opens a file argument; "-" is stdin. The caller closes it.
func (s *Shell) OpenInput(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(s.Stdin), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err // an *os.PathError: "open NAME: reason"
	}
	return f, nil
}

// OpenInputContext is OpenInput that returns when ctx ends even while the
// open blocks (a FIFO no one writes to: open(2) waits for a writer and
// never sees Ctrl-C, see ReadInput). A file opened after ctx ended is
// closed by the goroutine left behind. Reads of what it returns are the
// caller's: the HTTP client that streams it stops on ctx itself.
func (s *Shell) OpenInputContext(ctx context.Context, name string) (io.ReadCloser, error) {
	type result struct {
		in  io.ReadCloser
		err error
	}
	done := make(chan result, 1)
	go func() {
		in, err := s.OpenInput(name)
		done <- result{in, err}
	}()
	select {
	case r := <-done:
		return r.in, r.err
	case <-ctx.Done():
		// The opener may finish later: take its file and close it.
		go func() {
			if r := <-done; r.in != nil {
				_ = r.in.Close()
			}
		}()
		return nil, fmt.Errorf("open %s: %w", name, ctx.Err())
	}
}

// ReadInput reads at most limit bytes of a file argument ("-" is stdin),
// returning when ctx ends even if the open or read blocks: main cancels ctx
// on Ctrl-C or SIGTERM, which an open(2) of a FIFO no one writes to, or a
// read of a terminal, never sees, so the command hung until killed. The
// reader left behind then ends with the process. A read error is wrapped
// "read NAME: ..." once.
func (s *Shell) ReadInput(ctx context.Context, name string, limit int64) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		in, err := s.OpenInput(name)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer in.Close()
		data, err := io.ReadAll(io.LimitReader(in, limit))
		done <- result{data, Wrap("read "+name, err)}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("read %s: %w", name, ctx.Err())
	}
}

// Wrap adds context to an error unless the error already starts with that
// context: the agent's errors often name the operation and the object
// ("remove secret db: used by service app"), and the CLI wrapping them
// again printed it twice.
func Wrap(context string, err error) error {
	if err == nil {
		return nil
	}
	if strings.HasPrefix(err.Error(), context+": ") {
		return err
	}
	return fmt.Errorf("%s: %w", context, err)
}

// WrapOp adds "OP NAME: " to an error unless the error already names the
// operation OP (e.g. "create network"), with or without the name: the
// agent's refusals of a create do ("create network: a network named n1
// exists", "create secret s1: ..."), but an error from the write path does
// not ("no quorum: the write was not applied: ..."), and a user who read
// "Error: no quorum" after `network create` could not tell which object
// was refused, while `service create` said "create service web: no
// quorum". Wrap alone would name the operation twice in the first case.
func WrapOp(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if msg := err.Error(); strings.HasPrefix(msg, op+": ") || strings.HasPrefix(msg, op+" ") {
		return err
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}
