package placement

import (
	"fmt"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// Constraint operators.
const (
	OpEqual    = "=="
	OpNotEqual = "!="
)

// Constraint keys understood by Match. Labels use the prefix followed by the
// label name, e.g. node.labels.zone.
const (
	KeyNodeID       = "node.id"
	KeyNodeHostname = "node.hostname"
	KeyNodeRole     = "node.role"
	KeyNodeLabel    = "node.labels."
)

// Node roles as constraints see them: a voter is a "manager", as in Swarm.
const (
	RoleManager = "manager"
	RoleWorker  = "worker"
)

// Constraint is one parsed placement expression such as
// `node.labels.zone==a`. The zero value matches nothing useful; build
// constraints with ParseConstraint or ParseConstraints.
type Constraint struct {
	// Key is node.id, node.hostname, node.role or node.labels.NAME.
	Key string
	// Op is OpEqual or OpNotEqual.
	Op string
	// Value is compared case-insensitively, as Swarm does.
	Value string
}

// String renders the constraint in its canonical form (no spaces), which is
// also how refusal messages name it.
func (c Constraint) String() string { return c.Key + c.Op + c.Value }

// ParseConstraint parses one expression. Spaces around the key, operator and
// value are allowed.
func ParseConstraint(expr string) (Constraint, error) {
	op := OpEqual
	i := strings.Index(expr, OpEqual)
	if j := strings.Index(expr, OpNotEqual); j >= 0 && (i < 0 || j < i) {
		op, i = OpNotEqual, j
	}
	if i < 0 {
		return Constraint{}, fmt.Errorf("%w %q: want KEY==VALUE or KEY!=VALUE", ErrInvalidConstraint, expr)
	}
	key := strings.TrimSpace(expr[:i])
	value := strings.TrimSpace(expr[i+len(op):])
	if key == "" {
		return Constraint{}, fmt.Errorf("%w %q: empty key", ErrInvalidConstraint, expr)
	}
	if value == "" {
		return Constraint{}, fmt.Errorf("%w %q: empty value", ErrInvalidConstraint, expr)
	}
	if strings.ContainsAny(value, "=!") {
		return Constraint{}, fmt.Errorf("%w %q: value %q contains an operator", ErrInvalidConstraint, expr, value)
	}
	switch {
	case key == KeyNodeID, key == KeyNodeHostname:
	case key == KeyNodeRole:
		if !strings.EqualFold(value, RoleManager) && !strings.EqualFold(value, RoleWorker) {
			return Constraint{}, fmt.Errorf("%w %q: node.role is %s or %s", ErrInvalidConstraint, expr, RoleManager, RoleWorker)
		}
	case strings.HasPrefix(key, KeyNodeLabel):
		if len(key) == len(KeyNodeLabel) {
			return Constraint{}, fmt.Errorf("%w %q: empty label name", ErrInvalidConstraint, expr)
		}
	default:
		return Constraint{}, fmt.Errorf("%w %q: unknown key %q (want node.id, node.hostname, node.role or node.labels.NAME)", ErrInvalidConstraint, expr, key)
	}
	if strings.ContainsAny(key, " \t") {
		return Constraint{}, fmt.Errorf("%w %q: key %q contains spaces", ErrInvalidConstraint, expr, key)
	}
	return Constraint{Key: key, Op: op, Value: value}, nil
}

// ParseConstraints parses every expression and returns the first error.
// A nil or empty input gives a nil slice (no constraint).
func ParseConstraints(exprs []string) ([]Constraint, error) {
	if len(exprs) == 0 {
		return nil, nil
	}
	out := make([]Constraint, 0, len(exprs))
	for _, e := range exprs {
		c, err := ParseConstraint(e)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Match reports whether node satisfies the constraint. A missing label is
// never equal to anything, so `!=` on a missing label matches.
func (c Constraint) Match(node api.Node) bool {
	var have string
	var ok bool
	switch {
	case c.Key == KeyNodeID:
		have, ok = node.ID, true
	case c.Key == KeyNodeHostname:
		have, ok = node.Hostname, true
	case c.Key == KeyNodeRole:
		have, ok = RoleWorker, true
		if node.Voter {
			have = RoleManager
		}
	case strings.HasPrefix(c.Key, KeyNodeLabel):
		have, ok = node.Labels[c.Key[len(KeyNodeLabel):]]
	}
	eq := ok && strings.EqualFold(have, c.Value)
	if c.Op == OpNotEqual {
		return !eq
	}
	return eq
}

// MatchAll reports whether node satisfies every constraint, and if not, the
// first one it fails.
func MatchAll(cs []Constraint, node api.Node) (bool, Constraint) {
	for _, c := range cs {
		if !c.Match(node) {
			return false, c
		}
	}
	return true, Constraint{}
}
