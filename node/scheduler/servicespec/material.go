package servicespec

import "github.com/shoal-org/shoal/api"

// MaterialEqual is api.MaterialEqual, the planner's test of an outdated
// task. It lives in api so that the CLI, which waits for an update to
// converge (cmd/shoal/progress), judges a task current by the same rule:
// an update that changes no material field replaces no task, and the wait
// must not hold out for replacements that never come.
func MaterialEqual(a, b *api.ServiceSpec) bool { return api.MaterialEqual(a, b) }
