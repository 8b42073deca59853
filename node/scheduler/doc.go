// Package scheduler is Shoal's orchestrator: a pure function that turns a
// snapshot of nodes, services and tasks plus the time into a plan of task
// writes (Planner.Plan) — slots, restarts, disconnects, rebalancing,
// rolling updates.
//
// It imports api, the filter pipeline and constraints of
// node/scheduler/placement (which node may take a task) and the spec rules
// of node/scheduler/servicespec (defaults, validation, the disconnect
// grace), the restart decision of node/scheduler/restartpolicy, the
// failure monitor of node/scheduler/updatemonitor and its memory of first
// sights, node/scheduler/sightings; none reaches back into it. The leader owns the loop: it reads
// a snapshot, calls Plan, writes the plan to Raft in batches, and plans
// again on state changes, at Plan.NextWake and on a resync timer.
// node/scheduler/simcluster is the in-memory cluster that applies plans the
// way the FSM does and simulates nodes, for this package's tests and
// benchmarks. See README.md.
package scheduler
