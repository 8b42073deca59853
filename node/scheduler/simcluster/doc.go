// Package simcluster is the planner's side-effect-free test harness: an
// in-memory cluster (Cluster) that applies scheduler plans the way the FSM
// does, simulates nodes reporting on their tasks, and checks at every Step
// that planning again right after applying changes nothing. Only tests and
// benchmarks use it. See README.md.
package simcluster
