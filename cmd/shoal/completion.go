package main

// Shell completion. The packaged bash and zsh scripts
// (scripts/packaging/completion) call `shoal WORDS... --generate-bash-completion`,
// urfave/cli's protocol, and offer the words printed back. shoal answers
// itself instead of through urfave/cli's EnableBashCompletion, which runs a
// leaf command's action when its flags are reordered (reorderArgs) and
// panics on `--`: completing must never reach the agent.

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionFlag is the last argument of a completion request.
const completionFlag = "--generate-bash-completion"

// isCompletion reports whether args (args[0] is the program) ask for
// completions.
func isCompletion(args []string) bool {
	return len(args) > 1 && args[len(args)-1] == completionFlag
}

// complete prints the candidates for the word being completed, the last of
// args[1:len-1] (possibly empty): the flags of the command the words before
// it name when it starts with "-", else that command's subcommands; the
// shell filters them by the word. Pure but for the writes to w.
func complete(w io.Writer, app *cli.App, args []string) {
	words := args[1 : len(args)-1]
	cur := ""
	if len(words) > 0 {
		cur, words = words[len(words)-1], words[:len(words)-1]
	}
	var cmd *cli.Command
	cmds := app.Commands
	for i := 0; i < len(words); i++ {
		a := words[i]
		if a == "--" {
			return // a container's command follows: nothing of ours
		}
		if isFlagToken(a) {
			if _, f := lookupFlag(a, app.Flags, cmdFlagsOf(cmd)); f != nil && takesValue(f) && !strings.Contains(a, "=") {
				i++ // its value
			}
			continue
		}
		sub := findCommand(cmds, a)
		if sub == nil {
			cmds = nil // a positional argument: no subcommand follows
			break
		}
		cmd, cmds = sub, sub.Subcommands
	}
	if strings.HasPrefix(cur, "-") {
		flags := app.Flags
		if cmd != nil {
			flags = append(append([]cli.Flag{}, cmd.Flags...), app.Flags...)
		}
		for _, f := range flags {
			if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
				continue
			}
			fmt.Fprintln(w, "--"+f.Names()[0])
		}
		return
	}
	for _, c := range cmds {
		if !c.Hidden {
			fmt.Fprintln(w, c.Name)
		}
	}
}
