package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
	"github.com/shoal-org/shoal/node"
)

// Exit codes of the CLI.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// exitCodeError ends the CLI with a given code and no message: `shoal run`
// exits with the container's code.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// shell holds what commands need from the outside world, so tests can run
// the whole CLI in-process against a fake agent.
type shell struct {
	stdout io.Writer
	stderr io.Writer
	stdin  io.Reader
	// poll is the interval of progress polling (200ms; tests shorten it).
	poll time.Duration
	now  func() time.Time
	// startAgent replaces runAgent in tests.
	startAgent func(context.Context, agentFlags) error
	// agentConfig replaces DefaultAgentConfig in tests.
	agentConfig string
}

// newShell returns a shell on the process's standard streams.
func newShell() *shell {
	return &shell{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin, poll: 200 * time.Millisecond, now: time.Now}
}

// client builds an API client for the --host of this invocation.
func (s *shell) client(c *cli.Context) (*api.Client, error) {
	cl, err := api.NewClient(c.String("host"))
	if err != nil {
		return nil, &specflags.UsageError{Err: err}
	}
	return cl, nil
}

// run executes the CLI with args (args[0] is the program name) and returns
// the process exit code. Errors are printed on stderr as "Error: ...".
func (s *shell) run(ctx context.Context, args []string) int {
	app := s.app()
	if isCompletion(args) {
		complete(s.stdout, app, args)
		return exitOK
	}
	err := app.RunContext(ctx, reorderArgs(app, args))
	return s.exitCode(err)
}

// exitCode prints err (if any) and maps it to an exit code.
func (s *shell) exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	var ue *specflags.UsageError
	if errors.As(err, &ue) {
		hint := "shoal"
		if ue.Cmd != "" {
			hint += " " + ue.Cmd
		}
		fmt.Fprintf(s.stderr, "Error: %v\nSee '%s --help'.\n", ue.Err, hint)
		return exitUsage
	}
	if errors.Is(err, context.Canceled) {
		return 130
	}
	fmt.Fprintf(s.stderr, "Error: %v\n", err)
	return exitError
}

// app builds the command tree.
func (s *shell) app() *cli.App {
	app := &cli.App{
		Name:                      "shoal",
		Usage:                     "a Swarm-style container cluster in one binary",
		UsageText:                 "shoal [--host unix:///path.sock] COMMAND [OPTIONS] [ARGS...]",
		Writer:                    s.stdout,
		ErrWriter:                 s.stderr,
		Reader:                    s.stdin,
		HideHelpCommand:           true,
		DisableSliceFlagSeparator: true,
		UseShortOptionHandling:    true,
		ExitErrHandler:            func(*cli.Context, error) {},
		// Version is node.Version, set at build (Makefile); `shoal --version`.
		Version: node.Version,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "host",
				Aliases: []string{"H"},
				Usage:   "agent socket, unix:///path.sock",
				EnvVars: []string{api.HostEnv},
				Value:   api.DefaultHost,
			},
		},
		Commands: []*cli.Command{
			agentCommand(s),
			s.initCommand(),
			s.joinCommand(),
			s.tokenCommand(),
			s.caCommand(),
			s.snapshotCommand(),
			s.leaveCommand(),
			s.statusCommand(),
			s.nodeCommand(),
			s.imageCommand(),
			s.serviceCommand(),
			s.networkCommand(),
			s.stackCommand(),
			s.secretCommand(),
			s.configCommand(),
			s.runCommand(),
			s.psCommand(),
			s.logsCommand(),
			s.stopCommand(),
			s.rmCommand(),
			s.execCommand(),
			s.volumeCommand(),
			s.eventsCommand(),
			s.uiCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return specflags.UsageErrorf("unknown command %q", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	app.OnUsageError = onUsageError
	for _, cmd := range app.Commands {
		setupCommand(cmd)
	}
	return app
}

// onUsageError turns flag parsing errors into specflags.UsageErrors (exit code 2).
func onUsageError(c *cli.Context, err error, _ bool) error {
	ue := &specflags.UsageError{Err: err}
	if c != nil && c.Command != nil {
		ue.Cmd = cmdName(c)
	}
	return ue
}

// cmdName is the command path without the program name ("service ps").
func cmdName(c *cli.Context) string {
	if c.Command == nil {
		return ""
	}
	if h := c.Command.HelpName; strings.HasPrefix(h, "shoal ") {
		return strings.TrimPrefix(h, "shoal ")
	}
	return c.Command.FullName()
}

// setupCommand gives every command in the tree the usage-error hook and
// parent commands an action that rejects unknown subcommands.
func setupCommand(cmd *cli.Command) {
	cmd.OnUsageError = onUsageError
	if len(cmd.Subcommands) > 0 {
		cmd.HideHelpCommand = true
		if cmd.Action == nil {
			cmd.Action = func(c *cli.Context) error {
				if c.NArg() > 0 {
					return specflags.UsageErrorf("unknown command %q for %q", c.Args().First(), cmdName(c))
				}
				return cli.ShowSubcommandHelp(c)
			}
		}
	}
	for _, sub := range cmd.Subcommands {
		setupCommand(sub)
	}
	if act := cmd.Action; act != nil && len(cmd.Subcommands) == 0 {
		cmd.Action = func(c *cli.Context) error {
			err := act(c)
			var ue *specflags.UsageError
			if errors.As(err, &ue) && ue.Cmd == "" {
				ue.Cmd = cmdName(c)
			}
			return err
		}
	}
}

// tailArgCommands are the commands whose arguments after the first
// positional one belong to a container command (IMAGE [CMD...]) and are
// never flags of shoal's.
var tailArgCommands = map[string]bool{"run": true, "service create": true, "exec": true}

// reorderArgs lets flags follow positional arguments, as docker allows
// (`shoal service ps web --format json`): urfave/cli stops parsing flags at
// the first positional argument, so flags are moved before it. Global flags
// (--host) found after the command are moved to the front. Commands marked
// in tailArgCommands stop reordering at their first positional argument.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	globals := []string{}
	var path, names []string
	var cmdFlags, positional []string
	cmds := app.Commands
	var cmd *cli.Command
	i := 1
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if isFlagToken(a) {
			scope, f := lookupFlag(a, app.Flags, cmdFlagsOf(cmd))
			tok := canonicalFlag(a, f)
			dst := &cmdFlags
			if scope == "global" {
				dst = &globals
			}
			*dst = append(*dst, tok)
			if f != nil && takesValue(f) && !strings.Contains(a, "=") && i+1 < len(args) {
				i++
				*dst = append(*dst, args[i])
			}
			continue
		}
		if len(positional) == 0 {
			if sub := findCommand(cmds, a); sub != nil {
				// Flags seen so far belong to the parent command (only
				// --help is plausible there): keep them in place.
				path = append(path, cmdFlags...)
				cmdFlags = nil
				path = append(path, a)
				names = append(names, sub.Name)
				cmd, cmds = sub, sub.Subcommands
				continue
			}
		}
		positional = append(positional, a)
		if tailArgCommands[strings.Join(names, " ")] {
			i++
			break
		}
	}
	out := append([]string{args[0]}, globals...)
	out = append(out, path...)
	out = append(out, cmdFlags...)
	out = append(out, positional...)
	return append(out, args[i:]...)
}

// isFlagToken reports whether a looks like a flag ("-" alone is stdin).
func isFlagToken(a string) bool { return len(a) > 1 && a[0] == '-' }

// cmdFlagsOf returns the flags of cmd (nil for the app level).
func cmdFlagsOf(cmd *cli.Command) []cli.Flag {
	if cmd == nil {
		return nil
	}
	return cmd.Flags
}

// lookupFlag finds the flag a token names: scope is "global" when it is an
// app flag not shadowed by the command; f is nil for unknown flags.
func lookupFlag(tok string, global, local []cli.Flag) (scope string, f cli.Flag) {
	name := strings.TrimLeft(tok, "-")
	name, _, _ = strings.Cut(name, "=")
	if f := findFlag(local, name); f != nil {
		return "local", f
	}
	if f := findFlag(global, name); f != nil {
		return "global", f
	}
	return "unknown", nil
}

// canonicalFlag rewrites an alias ("-e X") to the flag's main name
// ("--env X"): urfave/cli refuses a repeated flag given in two forms, which
// docker users do all the time (-e A=1 --env B=2).
func canonicalFlag(tok string, f cli.Flag) string {
	if f == nil {
		return tok
	}
	_, val, hasVal := strings.Cut(tok, "=")
	out := "--" + f.Names()[0]
	if hasVal {
		out += "=" + val
	}
	return out
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// takesValue reports whether a flag consumes the next argument.
func takesValue(f cli.Flag) bool {
	if _, ok := f.(*cli.BoolFlag); ok {
		return false
	}
	if df, ok := f.(cli.DocGenerationFlag); ok {
		return df.TakesValue()
	}
	return true
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// connect checks the number of positional arguments, then makes the API
// client: how most actions start.
func (s *shell) connect(c *cli.Context, min, max int) (*api.Client, error) {
	if err := needArgs(c, min, max); err != nil {
		return nil, err
	}
	return s.client(c)
}

// needArgs checks the number of positional arguments.
func needArgs(c *cli.Context, min, max int) error {
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
			Err: fmt.Errorf("%q requires %s argument(s), got %d\nUsage: shoal %s [OPTIONS] %s", cmdName(c), want, n, cmdName(c), usage),
			Cmd: cmdName(c),
		}
	}
	return nil
}

// outputFlags are --format and -q for list and inspect commands.
func outputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "format", Usage: "json, table or a Go template"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "only print IDs"},
	}
}

// noTruncFlag keeps IDs and texts whole.
var noTruncFlag = &cli.BoolFlag{Name: "no-trunc", Usage: "do not truncate output"}

// outputOf reads the output flags of a command.
func outputOf(c *cli.Context) (output.Opts, error) {
	o := output.Opts{Format: c.String("format"), Quiet: c.Bool("quiet"), NoTrunc: c.Bool("no-trunc")}
	if strings.TrimSpace(o.Format) == "" && o.Format != "" {
		return o, specflags.UsageErrorf("empty --format")
	}
	return o, nil
}

// eachArg runs do for every argument of a command that acts on several
// objects (rm, stop): a failure is printed on stderr and the loop goes on
// with the next argument; the command then exits 1 without printing the
// error again. do prints its own success output.
func (s *shell) eachArg(args []string, do func(arg string) error) error {
	var failed error
	for _, a := range args {
		if err := do(a); err != nil {
			failed = err
			fmt.Fprintf(s.stderr, "Error: %v\n", err)
		}
	}
	return quietFailure(failed)
}

// quietFailure turns an error already printed (by a command acting on
// several arguments) into exit code 1 without printing it again.
func quietFailure(err error) error {
	if err == nil {
		return nil
	}
	return &exitCodeError{code: exitError}
}

// requireFlags fails with a usage error when a mandatory flag is missing
// (urfave/cli's own Required check does not go through OnUsageError).
func requireFlags(c *cli.Context, names ...string) error {
	for _, n := range names {
		if !c.IsSet(n) || c.String(n) == "" {
			return &specflags.UsageError{Err: fmt.Errorf("flag --%s is required", n), Cmd: cmdName(c)}
		}
	}
	return nil
}
