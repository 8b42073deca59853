package containeropts

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// rlimits are the names --ulimit takes (Docker's) and the OCI type each
// sets.
var rlimits = map[string]string{
	"as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
	"fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
	"msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
	"nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
	"rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}

// MaxNofile is the most open files a task may be allowed: the kernel's
// default fs.nr_open. setrlimit refuses more (and unlimited), so runc
// would fail every task.
const MaxNofile = 1 << 20

// RlimitType returns the OCI rlimit type of a --ulimit name (nofile is
// RLIMIT_NOFILE).
func RlimitType(name string) (string, bool) {
	t, ok := rlimits[name]
	return t, ok
}

// RlimitValue is a limit as setrlimit takes it: -1 (unlimited) is
// RLIM_INFINITY.
func RlimitValue(v int64) uint64 {
	if v < 0 {
		return ^uint64(0)
	}
	return uint64(v)
}

// UlimitProblem returns why u cannot be set, or "": a known name, soft
// and hard each a count or -1 (unlimited), soft no more than hard, and
// for nofile no more than MaxNofile.
func UlimitProblem(u api.Ulimit) string {
	if _, ok := rlimits[u.Name]; !ok {
		return fmt.Sprintf("unknown limit %q (want one of as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack)", u.Name)
	}
	if u.Soft < -1 || u.Hard < -1 {
		return fmt.Sprintf("%s: soft %d, hard %d: want a count or -1 (unlimited)", u.Name, u.Soft, u.Hard)
	}
	if RlimitValue(u.Soft) > RlimitValue(u.Hard) {
		return fmt.Sprintf("%s: soft limit %d above the hard limit %d", u.Name, u.Soft, u.Hard)
	}
	if u.Name == "nofile" && RlimitValue(u.Hard) > MaxNofile {
		return fmt.Sprintf("nofile: hard limit %d: at most %d (the kernel's fs.nr_open; unlimited is not allowed)", u.Hard, MaxNofile)
	}
	return ""
}

// UlimitsProblems returns UlimitProblem of each limit, and a name given
// twice, each prefixed with field[i].
func UlimitsProblems(field string, us []api.Ulimit) []string {
	var p []string
	seen := map[string]bool{}
	for i, u := range us {
		if why := UlimitProblem(u); why != "" {
			p = append(p, fmt.Sprintf("%s[%d]: %s", field, i, why))
		}
		if seen[u.Name] {
			p = append(p, fmt.Sprintf("%s[%d]: %s given twice", field, i, u.Name))
		}
		seen[u.Name] = true
	}
	return p
}

// ParseUlimit parses Docker's --ulimit form: NAME=SOFT[:HARD] (one value
// sets both), -1 for unlimited; the result is checked with UlimitProblem.
func ParseUlimit(s string) (api.Ulimit, error) {
	name, vals, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return api.Ulimit{}, fmt.Errorf("%q: want NAME=SOFT[:HARD], e.g. nofile=1024:2048", s)
	}
	softS, hardS, two := strings.Cut(vals, ":")
	soft, err := strconv.ParseInt(strings.TrimSpace(softS), 10, 64)
	if err != nil {
		return api.Ulimit{}, fmt.Errorf("%q: soft limit %q: want a number (-1: unlimited)", s, softS)
	}
	hard := soft
	if two {
		if hard, err = strconv.ParseInt(strings.TrimSpace(hardS), 10, 64); err != nil {
			return api.Ulimit{}, fmt.Errorf("%q: hard limit %q: want a number (-1: unlimited)", s, hardS)
		}
	}
	u := api.Ulimit{Name: strings.TrimSpace(name), Soft: soft, Hard: hard}
	if p := UlimitProblem(u); p != "" {
		return api.Ulimit{}, fmt.Errorf("%q: %s", s, p)
	}
	return u, nil
}
