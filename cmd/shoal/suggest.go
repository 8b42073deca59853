package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/xrash/smetrics"
)

// closeEnough is the Jaro-Winkler similarity from which a mistyped name is
// taken for a known one: high enough that `--nmae` gets `--name` and
// `servce` gets `service`, and an unrelated word gets nothing (urfave/cli's
// own suggestion offers the closest name however far it is).
const closeEnough = 0.85

// mostBegun is how many names a word that begins them may offer: past it
// the list reads as the help, which the hint after the error points at.
const mostBegun = 4

// didYouMean returns the names among known that word most likely meant:
// the names it begins, in their order, when there are a few (`--env` for
// `--env-add` and `--env-rm`: `service update` has no `--env`, as in
// docker; a single letter begins too many to mean one), else the most
// similar name when it is closeEnough; nothing otherwise.
func didYouMean(word string, known []string) []string {
	if word == "" {
		return nil
	}
	var begun []string
	for _, k := range known {
		if len(word) > 1 && strings.HasPrefix(k, word) {
			begun = append(begun, k)
		}
	}
	if len(begun) > 0 && len(begun) <= mostBegun {
		return begun
	}
	best, score := "", 0.0
	for _, k := range known {
		if s := smetrics.JaroWinkler(word, k, 0.7, 4); s > score {
			best, score = k, s
		}
	}
	if score < closeEnough {
		return nil
	}
	return []string{best}
}

// orList joins names as "a", "a or b", "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// unknownFlagRE matches the flag package's refusal of a flag a command
// does not define; it spells the flag with one dash whatever was typed.
var unknownFlagRE = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)

// explainUnknownFlag turns "flag provided but not defined: -nmae" into
// "unknown flag: --nmae (did you mean --name?)", as docker names it, with
// the flags of the command that refused it.
func explainUnknownFlag(err error, flags []cli.Flag) error {
	m := unknownFlagRE.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	var known []string
	for _, f := range flags {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		known = append(known, f.Names()...)
	}
	known = append(known, "help")
	msg := "unknown flag: " + dashed(m[1])
	if names := didYouMean(m[1], known); len(names) > 0 {
		for i, n := range names {
			names[i] = dashed(n)
		}
		msg += fmt.Sprintf(" (did you mean %s?)", orList(names))
	}
	return errors.New(msg)
}

// dashed spells a flag name as it is typed: -q, --format.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// unknownCommand is the usage error for word, which none of cmds is
// named; in is the parent command's name ("" at the top).
func unknownCommand(word, in string, cmds []*cli.Command) error {
	var known []string
	for _, c := range cmds {
		if !c.Hidden {
			known = append(known, c.Names()...)
		}
	}
	msg := fmt.Sprintf("unknown command %q", word)
	if in != "" {
		msg += fmt.Sprintf(" for %q", in)
	}
	if names := didYouMean(word, known); len(names) > 0 {
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = fmt.Sprintf("%q", n)
		}
		msg += fmt.Sprintf(" (did you mean %s?)", orList(quoted))
	}
	return errors.New(msg)
}
