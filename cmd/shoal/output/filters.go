package output

// The --filter rules and the task rows that `service ps`, `stack ps` and
// `node ps` share: they live here, next to the table they feed, so that the
// three commands filter and print tasks the same way (they are in three
// packages that may not import each other).

import (
	"io"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// ParseFilters splits --filter k=v values and checks the keys against
// allowed; a bad value or key is a usage error that names the allowed keys.
func ParseFilters(values []string, allowed ...string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, f := range values {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return nil, specflags.UsageErrorf("invalid --filter %q: want KEY=VALUE", f)
		}
		known := false
		for _, a := range allowed {
			known = known || a == k
		}
		if !known {
			return nil, specflags.UsageErrorf("invalid --filter key %q: want one of %s", k, strings.Join(allowed, ", "))
		}
		out[k] = append(out[k], v)
	}
	return out, nil
}

// MatchAny reports whether no values were given or f matches one of them:
// values of one key are ORed, keys are ANDed, as docker's filters are.
func MatchAny(values []string, f func(string) bool) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		if f(v) {
			return true
		}
	}
	return false
}

// TaskFilterUsage is the --filter usage text of the task lists.
const TaskFilterUsage = "desired-state=running|shutdown|complete|accepted, node=NODE, name=TASK, id=PREFIX"

// ParseTaskFilters reads the --filter values of the task lists (service ps,
// stack ps, node ps).
func ParseTaskFilters(values []string) (map[string][]string, error) {
	filters, err := ParseFilters(values, "desired-state", "node", "name", "id")
	if err != nil {
		return nil, err
	}
	for _, d := range filters["desired-state"] {
		switch d {
		// complete: a finished task of a job (node/scheduler/jobs).
		case "running", "shutdown", "complete", "accepted", "ready":
		default:
			return nil, specflags.UsageErrorf("invalid desired-state filter %q: want running, shutdown, complete or accepted", d)
		}
	}
	return filters, nil
}

// TaskMatches applies task list filters; "accepted" and "ready" mean the
// task is meant to run, as in docker.
func TaskMatches(t api.Task, f map[string][]string) bool {
	return MatchAny(f["desired-state"], func(v string) bool {
		if v == "accepted" || v == "ready" {
			v = api.TaskRunning
		}
		return t.DesiredState == v
	}) &&
		MatchAny(f["node"], func(v string) bool { return t.Node == v || strings.HasPrefix(t.NodeID, v) }) &&
		MatchAny(f["name"], func(v string) bool { return t.Name == v || strings.HasPrefix(t.Name, v+".") }) &&
		MatchAny(f["id"], func(v string) bool { return strings.HasPrefix(t.ID, v) })
}

// TaskView is a task as `service ps --format json` prints it: error and
// ip are always there (empty when there is none), as DESIGN.md lists them
// among the fields scripts rely on; api.Task leaves them out when empty.
type TaskView struct {
	api.Task
	Error string `json:"error"`
	IP    string `json:"ip"`
}

// TaskViews keeps the tasks that match filters, in table order, as views.
func TaskViews(tasks []api.Task, filters map[string][]string) []TaskView {
	var kept []api.Task
	for _, t := range tasks {
		if TaskMatches(t, filters) {
			kept = append(kept, t)
		}
	}
	SortTasks(kept)
	out := make([]TaskView, len(kept))
	for i, t := range kept {
		out[i] = TaskView{Task: t, Error: t.Error, IP: t.IP}
	}
	return out
}

// RenderTaskViews is RenderTasks for views.
func RenderTaskViews(w io.Writer, tasks []TaskView, noTrunc bool, now time.Time) error {
	plain := make([]api.Task, len(tasks))
	for i, t := range tasks {
		plain[i] = t.Task
	}
	return RenderTasks(w, plain, noTrunc, now)
}
