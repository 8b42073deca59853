package placement

import "errors"

// Sentinel errors of placement. Callers match them with errors.Is; the
// wrapped message names the offending expression.
var (
	// ErrInvalidConstraint is returned by ParseConstraints for an expression
	// that is not KEY==VALUE or KEY!=VALUE over a known key.
	ErrInvalidConstraint = errors.New("invalid constraint")
)

// ErrInvalidPreference is returned by ParsePreferences for a placement
// preference other than spread=node.labels.NAME.
var ErrInvalidPreference = errors.New("invalid placement preference")
