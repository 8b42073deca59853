package specflags

// The logging flags of `service create`, `service update` and `run`,
// docker's --log-driver and --log-opt. Compose maps logging.driver and
// logging.options onto the same spec fields (cmd/shoal/compose). The
// rules are api.ParseLogging's, which the leader checks again.

import (
	"fmt"
	"maps"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// logFlags are the flags of this file.
func logFlags(update bool) []cli.Flag {
	driver := "logging driver: json-file or local (both are the node's rotated log files that logs and service logs read) or none (no logs kept) (default json-file)"
	opt := "logging option KEY=VALUE: max-size (per file: k, m or g, 4k to 1g) or max-file (files kept: 1 to 100); default the node's, 10m and 3 (repeatable)"
	if update {
		driver = "change the logging driver: json-file or local (both are the node's rotated log files that logs and service logs read) or none (no logs kept); clears the options --log-opt does not give"
		opt = "set a logging option KEY=VALUE: max-size (per file: k, m or g, 4k to 1g) or max-file (files kept: 1 to 100); KEY= removes it (repeatable)"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "log-driver", Usage: driver},
		&cli.StringSliceFlag{Name: "log-opt", Usage: opt},
	}
}

// LogFlags are the logging flags of `shoal run`, the create form of the
// service flags (ApplyLogging reads them).
func LogFlags() []cli.Flag {
	flags := logFlags(false)
	helpDefaults(flags, false)
	return flags
}

// ApplyLogging sets the logging the user gave to a service spec's or a
// run request's LogDriver and LogOptions. On update a new driver starts
// from no options, and --log-opt changes only the keys it names.
func ApplyLogging(c *cli.Context, driver *string, options *map[string]string, update bool) error {
	if !c.IsSet("log-driver") && !c.IsSet("log-opt") {
		return nil
	}
	if c.IsSet("log-driver") {
		d := c.String("log-driver")
		if _, err := api.ParseLogging(d, nil); err != nil {
			return SpecError("log-driver", err)
		}
		*driver = d
		*options = nil
	}
	opts, err := SetLogOptions(*options, c.StringSlice("log-opt"), update)
	if err != nil {
		return SpecError("log-opt", err)
	}
	if _, err := api.ParseLogging(*driver, opts); err != nil {
		return SpecError("log-opt", err)
	}
	*options = opts
	return nil
}

// SetLogOptions sets the KEY=VALUE options of values in opts (a copy;
// nil when none remain). With remove, KEY= deletes KEY.
func SetLogOptions(opts map[string]string, values []string, remove bool) (map[string]string, error) {
	out := maps.Clone(opts)
	for _, v := range values {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" || (val == "" && !remove) {
			return opts, fmt.Errorf("%q: want KEY=VALUE, e.g. max-size=10m", v)
		}
		if out == nil {
			out = map[string]string{}
		}
		if val == "" {
			delete(out, k)
		} else {
			out[k] = val
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
