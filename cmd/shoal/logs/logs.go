// Package logs is what `shoal logs` and `shoal service logs` share: the log
// flags (--follow, --tail, --since, --timestamps) and their reading into
// client.LogOptions, how a log line is printed (on stdout or stderr as its
// stream was, optionally behind its time), and the error of a stream the
// user interrupted.
package logs

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// Flags are shared by `logs` and `service logs`.
func Flags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new output"},
		&cli.StringFlag{Name: "tail", Aliases: []string{"n"}, Value: "all", Usage: "number of lines to show from the end"},
		&cli.StringFlag{Name: "since", Usage: "show lines since a time (RFC 3339) or for a duration (10m)"},
		&cli.BoolFlag{Name: "timestamps", Aliases: []string{"t"}, Usage: "prefix lines with their time"},
	}
}

// Opts are parsed log flags; Skip means nothing can match (--tail 0
// without --follow).
type Opts struct {
	client.LogOptions
	Skip bool
}

// Options reads the log flags; now is the clock of --since and --tail 0.
func Options(c *cli.Context, now func() time.Time) (Opts, error) {
	var o Opts
	o.Follow = c.Bool("follow")
	tail, err := specflags.ParseTail(c.String("tail"))
	if err != nil {
		return o, &specflags.UsageError{Err: err}
	}
	if since := c.String("since"); since != "" {
		t, err := specflags.ParseSince(since, now())
		if err != nil {
			return o, specflags.SpecError("since", err)
		}
		o.Since = t
	}
	switch {
	case tail > 0:
		o.Tail = tail
	case tail == 0 && o.Follow:
		// Only new lines: the API has no "tail 0", so ask for lines from now.
		o.Since = now()
	case tail == 0:
		o.Skip = true
	}
	return o, nil
}

// WriteLine prints a line on stdout or stderr according to its stream.
func WriteLine(stdout, stderr io.Writer, l api.LogLine, prefix string, timestamps bool) error {
	w := stdout
	if l.Stream == "stderr" {
		w = stderr
	}
	if timestamps {
		prefix = l.Time.Format(time.RFC3339Nano) + " " + prefix
	}
	_, err := fmt.Fprintf(w, "%s%s\n", prefix, l.Line)
	return err
}

// StreamErr hides the error of a follow stream the user interrupted.
func StreamErr(ctx context.Context, what string, err error) error {
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
