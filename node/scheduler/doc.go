// Package scheduler is Shoal's orchestrator and scheduler: pure functions
// that turn a snapshot of nodes, services and tasks plus the time into a
// plan of task writes (Planner.Plan), and the checks run before a service
// spec is stored (ValidateSpec, Defaults, CheckPortClash).
//
// It imports only api and the standard library. The leader owns the loop:
// it reads a snapshot, calls Plan, writes the plan to Raft in batches, and
// plans again on state changes, at Plan.NextWake and on a resync timer.
// FakeCluster is the in-memory harness that applies plans the way the FSM
// does and simulates nodes; the leader's tests may use it. See README.md.
package scheduler
