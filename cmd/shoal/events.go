package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// eventsCommand defines `shoal events`.
func (s *commands) eventsCommand() *cli.Command {
	return &cli.Command{
		Name:      "events",
		Usage:     "stream what changes in the cluster and on this node's containers",
		UsageText: "shoal events [--since T] [--until T] [--filter type=service|node|task|container] [--filter name=X] [--format json]",
		Description: "Streams node, service and task events of the cluster and container events of this node.\n" +
			"--since replays the events the agent kept (up to 10,000, one hour); --until ends the stream.\n" +
			"Filters of the same key are ORed, different keys ANDed; name=X matches an event's name, ID or ID prefix\n" +
			"and the service of task and container events.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "since", Usage: "replay kept events since a time (RFC 3339, Unix seconds) or for a duration (10m)"},
			&cli.StringFlag{Name: "until", Usage: "stop at a time (RFC 3339, Unix seconds) or a duration ago (1m), as docker's"},
			&cli.StringSliceFlag{Name: "filter", Aliases: []string{"f"}, Usage: "type=node|service|task|container or name=NAME (repeatable)"},
			&cli.StringFlag{Name: "format", Usage: "json (one object per line)"},
		},
		Action: func(c *cli.Context) error {
			if err := shell.NeedArgs(c, 0, 0); err != nil {
				return err
			}
			opts, err := s.eventOptions(c)
			if err != nil {
				return err
			}
			format := c.String("format")
			if format != "" && format != "json" {
				return specflags.UsageErrorf("invalid --format %q: want json", format)
			}
			cl, err := s.Client(c)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(s.Stdout)
			return cl.Events(c.Context, opts, func(ev api.Event) error {
				if format == "json" {
					return enc.Encode(ev)
				}
				return writeEventLine(s.Stdout, ev)
			})
		},
	}
}

// eventOptions reads the time and filter flags of `shoal events`.
func (s *commands) eventOptions(c *cli.Context) (client.EventOptions, error) {
	var o client.EventOptions
	now := s.Now()
	if v := c.String("since"); v != "" {
		t, err := specflags.ParseSince(v, now)
		if err != nil {
			return o, specflags.UsageErrorf("invalid --since: %v", err)
		}
		o.Since = t
	}
	if v := c.String("until"); v != "" {
		// As docker's --until: a duration is that long ago (--since 10m
		// --until 1m replays nine minutes and stops); a later end is a time.
		t, err := specflags.ParseSince(v, now)
		if err != nil {
			return o, specflags.UsageErrorf("invalid --until: %v", err)
		}
		o.Until = t
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && o.Until.Before(o.Since) {
		return o, specflags.UsageErrorf("--until is before --since")
	}
	for _, f := range c.StringSlice("filter") {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return o, specflags.UsageErrorf("invalid --filter %q: want type=TYPE or name=NAME", f)
		}
		switch k {
		case "type":
			switch v {
			case api.EventNode, api.EventService, api.EventTask, api.EventContainer:
			default:
				return o, specflags.UsageErrorf("invalid --filter %q: type is node, service, task or container", f)
			}
			o.Types = append(o.Types, v)
		case "name":
			o.Names = append(o.Names, v)
		default:
			return o, specflags.UsageErrorf("invalid --filter %q: the keys are type and name", f)
		}
	}
	return o, nil
}

// writeEventLine prints an event as `docker events` does:
// TIME TYPE ACTION ID (k=v, ...).
func writeEventLine(w io.Writer, ev api.Event) error {
	attrs := make([]string, 0, len(ev.Attributes)+1)
	if ev.Name != "" {
		attrs = append(attrs, "name="+ev.Name)
	}
	keys := make([]string, 0, len(ev.Attributes))
	for k := range ev.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		attrs = append(attrs, k+"="+ev.Attributes[k])
	}
	// Names and attributes come from every node: no terminal escapes.
	_, err := fmt.Fprintf(output.SafeWriter(w), "%s %s %s %s (%s)\n", ev.Time.Local().Format(time.RFC3339Nano), ev.Type, ev.Action, ev.ID, strings.Join(attrs, ", "))
	return err
}
