package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/agent"
	"github.com/shoal-org/shoal/cmd/shoal/cluster"
	"github.com/shoal-org/shoal/cmd/shoal/exec"
	"github.com/shoal-org/shoal/cmd/shoal/service"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
	"github.com/shoal-org/shoal/cmd/shoal/stack"
	"github.com/shoal-org/shoal/node"
)

// run executes the CLI with args (args[0] is the program name) on s and
// returns the process exit code. Errors are printed on stderr as
// "Error: ...".
func run(ctx context.Context, s *shell.Shell, args []string) int {
	app := newApp(s)
	if isCompletion(args) {
		complete(s.Stdout, app, args)
		return shell.ExitOK
	}
	err := app.RunContext(ctx, reorderArgs(app, args))
	return s.ExitCode(err)
}

// commands are the actions of the commands main defines itself, on the
// shared shell; the other groups are subpackages.
type commands struct{ *shell.Shell }

// newApp builds the command tree: the commands of main (commands) and of
// the subpackages, each on s.
func newApp(s *shell.Shell) *cli.App {
	m := &commands{s}
	app := &cli.App{
		Name:                      "shoal",
		Usage:                     "a Swarm-style container cluster in one binary",
		UsageText:                 "shoal [--host unix:///path.sock] COMMAND [OPTIONS] [ARGS...]",
		Writer:                    s.Stdout,
		ErrWriter:                 s.Stderr,
		Reader:                    s.Stdin,
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
				EnvVars: []string{client.HostEnv},
				Value:   client.DefaultHost,
			},
		},
		Commands: slices.Concat(
			[]*cli.Command{agent.Command()},
			cluster.Commands(s),
			[]*cli.Command{
				m.nodeCommand(),
				m.imageCommand(),
				service.Command(s),
				m.networkCommand(),
				stack.Command(s),
				m.secretCommand(),
				m.configCommand(),
				m.runCommand(),
				m.psCommand(),
				m.logsCommand(),
				m.stopCommand(),
				m.rmCommand(),
				m.inspectCommand(),
				exec.Command(s),
				m.volumeCommand(),
				m.eventsCommand(),
				m.uiCommand(),
			},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return &specflags.UsageError{Err: unknownCommand(c.Args().First(), "", c.App.Commands)}
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
		ue.Cmd = shell.CmdName(c)
		ue.Err = explainUnknownFlag(explainBadValue(err, c.Command.Flags), c.Command.Flags)
	} else if c != nil && c.App != nil {
		ue.Err = explainUnknownFlag(err, c.App.Flags)
	}
	return ue
}

// badValueRE matches the flag package's refusal of a value, whose reason
// for numbers and durations is only "parse error".
var badValueRE = regexp.MustCompile(`^invalid value "(.*)" for flag -([^:]+): (.*)$`)

// explainBadValue says what a flag wants when its value did not parse:
// `--replicas -1` answered "invalid value "-1" for flag -replicas: parse
// error", which tells a user neither the flag's spelling nor the fix.
func explainBadValue(err error, flags []cli.Flag) error {
	m := badValueRE.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	value, name, reason := m[1], m[2], m[3]
	for _, f := range flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		switch f.(type) {
		case *cli.UintFlag, *cli.Uint64Flag:
			reason = "want a whole number, 0 or more"
		case *cli.IntFlag, *cli.Int64Flag:
			reason = "want a whole number"
		case *cli.Float64Flag:
			reason = "want a number"
		case *cli.DurationFlag:
			reason = "want a duration with a unit, like 500ms, 10s or 1m30s"
		}
		name = f.Names()[0]
		break
	}
	flag := "--" + name
	if len(name) == 1 {
		flag = "-" + name
	}
	return fmt.Errorf("invalid value %q for %s: %s", value, flag, reason)
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
					name := shell.CmdName(c)
					return &specflags.UsageError{Err: unknownCommand(c.Args().First(), name, c.Command.Subcommands), Cmd: name}
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
				ue.Cmd = shell.CmdName(c)
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
