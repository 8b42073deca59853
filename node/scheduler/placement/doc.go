// Package placement answers which node may take a task, and why not: the
// constraints of a spec (ParseConstraints, MatchAll), the filter pipeline
// that refuses nodes and explains the refusals (Pipeline, Explain), and the
// heap that spreads a service's new tasks over the nodes that passed
// (Spread). It is pure and imports only api; the planner (node/scheduler)
// builds the NodeInfos from its snapshot and applies the answers. See
// README.md.
package placement
