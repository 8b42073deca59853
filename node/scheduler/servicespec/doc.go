// Package servicespec holds the rules of a service spec that every side
// shares: Docker's defaults (Defaults), the checks run before a spec is
// stored (Validate, CheckPortClash), the disconnect grace a down node's
// tasks get (DisconnectGrace), and which changes replace tasks
// (MaterialEqual). The API routes, the leader's re-validation, each node's
// at-most-once fence and the planner use them; it is pure and imports only
// api and node/scheduler/placement. See README.md.
package servicespec
