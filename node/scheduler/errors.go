package scheduler

import "errors"

// Sentinel errors of the scheduler. Callers match them with errors.Is; the
// wrapped message names the offending field or service.
var (
	// ErrInvalidSpec is returned by ValidateSpec; the message lists every
	// problem found, each prefixed by the field it concerns.
	ErrInvalidSpec = errors.New("invalid service spec")
	// ErrInvalidConstraint is returned by ParseConstraints for an expression
	// that is not KEY==VALUE or KEY!=VALUE over a known key.
	ErrInvalidConstraint = errors.New("invalid constraint")
	// ErrPortInUse is returned by CheckPortClash when another service
	// already publishes the same port and protocol.
	ErrPortInUse = errors.New("published port already in use")
	// ErrNotIdempotent is returned by FakeCluster.Step (with
	// CheckIdempotent) and Converge when planning again right after applying
	// a plan still changes something: a planner bug.
	ErrNotIdempotent = errors.New("plan not idempotent")
)
