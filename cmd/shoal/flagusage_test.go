package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/cmd/shoal/shell"
)

// placeholder is what the first `quoted` word of a flag's usage may be:
// urfave/cli prints it after the flag as the value's name (--from-snapshot
// FILE), so it must read as one.
var placeholder = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// TestFlagUsagePlaceholders: no flag's help shows a phrase as its value's
// name. urfave/cli takes the first text between backticks in a usage as
// the value's placeholder, so "allow `shoal run --network`" printed
// "--attachable shoal run --network  allow shoal run --network" in
// `network create --help` (a bool flag, which takes no value at all), and
// the man page and docs/cli.md said the same.
func TestFlagUsagePlaceholders(t *testing.T) {
	app := newApp(shell.New())
	var walk func(path string, flags []cli.Flag, cmds []*cli.Command)
	walk = func(path string, flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			df, ok := f.(cli.DocGenerationFlag)
			if !ok {
				continue
			}
			usage := df.GetUsage()
			start := strings.IndexByte(usage, '`')
			if start < 0 {
				continue
			}
			end := strings.IndexByte(usage[start+1:], '`')
			if end < 0 {
				continue
			}
			if name := usage[start+1 : start+1+end]; !placeholder.MatchString(name) {
				t.Errorf("%s --%s: help shows %q as the value's name (urfave/cli's backtick placeholder); quote with ' instead", path, f.Names()[0], name)
			}
		}
		for _, c := range cmds {
			walk(path+" "+c.Name, c.Flags, c.Subcommands)
		}
	}
	walk("shoal", app.Flags, app.Commands)
}
