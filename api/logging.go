package api

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// The log drivers and options a service may ask for (`--log-driver`,
// `--log-opt`, compose logging:), with docker's names. Shoal has one
// logging mechanism: the node supervisor's rotated JSON-lines files
// (runtime/supervisor), which `logs` and `service logs` read. json-file
// and local both mean those files; none keeps no logs at all. Drivers that
// send logs elsewhere (syslog, fluentd, gelf, journald, awslogs, ...) and
// options Shoal does not implement (compress, labels, tag, ...) are refused
// rather than ignored: a user who asked for them would otherwise lose logs
// without a word.
const (
	LogDriverJSONFile = "json-file"
	LogDriverLocal    = "local"
	LogDriverNone     = "none"

	LogOptMaxSize  = "max-size"
	LogOptMaxFiles = "max-file"
)

// Bounds of the log options. The node's default is 10 MiB × 3 files
// (containerinit.DefaultLogMaxSize, DefaultLogMaxFiles) and nothing else
// caps what a node keeps: the files are in its data dir, beside the
// images, volumes and Raft log, so a service must not be able to have a
// node keep unbounded logs. MinLogMaxSize keeps a few lines per file
// (below it every long line would be a rotation); MaxLogMaxSize and
// MaxLogMaxFiles are docker-sized upper bounds for one option, and
// MaxLogTotal (max-size × max-file) caps one container at 10 GiB, ~340
// times the default, still a minority of a typical node's disk.
const (
	MinLogMaxSize  = 4 << 10
	MaxLogMaxSize  = 1 << 30
	MaxLogMaxFiles = 100
	MaxLogTotal    = 10 << 30
)

// LogDrivers are the drivers accepted, for error messages and help.
var LogDrivers = []string{LogDriverJSONFile, LogDriverLocal, LogDriverNone}

// LogSettings is what a container's log driver and options mean to the
// node: Disabled keeps no logs; otherwise MaxSize bytes per file and
// MaxFiles files, 0 meaning the node's default.
type LogSettings struct {
	Disabled bool
	MaxSize  int64
	MaxFiles int
}

// ParseLogging checks a driver ("" is the node's default, json-file) and
// its options and returns what they mean. The error names what is
// supported.
func ParseLogging(driver string, opts map[string]string) (LogSettings, error) {
	var s LogSettings
	switch driver {
	case "", LogDriverJSONFile, LogDriverLocal:
	case LogDriverNone:
		if len(opts) > 0 {
			return s, fmt.Errorf("log driver none takes no options (got %s)", strings.Join(slices.Sorted(maps.Keys(opts)), ", "))
		}
		s.Disabled = true
		return s, nil
	default:
		return s, fmt.Errorf("unsupported log driver %q: Shoal supports %s (json-file and local are both the node's rotated log files)",
			driver, strings.Join(LogDrivers, ", "))
	}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		v := opts[k]
		switch k {
		case LogOptMaxSize:
			n, err := ParseLogSize(v)
			if err != nil {
				return s, fmt.Errorf("log option max-size: %w", err)
			}
			if n < MinLogMaxSize || n > MaxLogMaxSize {
				return s, fmt.Errorf("log option max-size %s: must be between 4k and 1g", v)
			}
			s.MaxSize = n
		case LogOptMaxFiles:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxLogMaxFiles {
				return s, fmt.Errorf("log option max-file %q: must be an integer from 1 to %d", v, MaxLogMaxFiles)
			}
			s.MaxFiles = n
		default:
			return s, fmt.Errorf("unsupported log option %q: Shoal supports max-size and max-file", k)
		}
	}
	if s.MaxSize > 0 && s.MaxFiles > 0 && s.MaxSize*int64(s.MaxFiles) > MaxLogTotal {
		return s, fmt.Errorf("log options max-size × max-file (%s × %d) exceed the 10 GiB a container may keep", opts[LogOptMaxSize], s.MaxFiles)
	}
	return s, nil
}

// ParseLogSize parses docker's max-size: a number of bytes with an
// optional unit k, m or g (binary multiples, case-insensitive, "b", "kb"
// or "kib" forms accepted too), e.g. 10m.
func ParseLogSize(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unit := s[:i], s[i:]
	mult := map[string]int64{"": 1, "b": 1,
		"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
		"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if num == "" || err != nil || mult == 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q: want a number with an optional unit k, m or g, e.g. 10m", v)
	}
	return n * mult, nil
}
