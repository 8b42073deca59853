// Package lin checks histories of operations on a Shoal cluster for
// linearizability with porcupine (github.com/anishathalye/porcupine), the
// checker etcd uses beside Jepsen.
//
// Why a model of our own state. Shoal's claims — no acknowledged write is
// lost, reads with ?consistent=1 see every write acknowledged before them,
// no slot is doubled — are properties of histories under faults, not of any
// one example. A test (test/lin_e2e_test.go) runs concurrent clients on
// different nodes while a nemesis kills, partitions and pauses them, records
// every operation as an invocation and a completion time with its result,
// and hands the history to Check. Check decides whether some total order of
// the operations, consistent with their real-time order, explains every
// result under the sequential model below.
//
// The model is partitioned by key, so each key is checked alone (porcupine
// checks the partitions in parallel, and a history is linearizable iff each
// partition is):
//
//   - "svc/NAME": a service by name. State: exists, replicas, image.
//     create, rm, scale (replicas), update (image) and read.
//   - "node/ID": one label of one node, a register. set and read.
//
// Outcomes. A definite refusal (the name is taken, no such service, version
// mismatch, any other 4xx) changes nothing. An operation whose outcome is
// unknown — a timeout, a 5xx such as "no quorum", a reset connection after
// the request was sent — may have been applied at any point after its
// invocation, or never: its Return is set to infinity (math.MaxInt64), so
// porcupine may linearize it anywhere after its call, the end of the history
// included, where it is indistinguishable from never applied.
//
// Reads. Only consistent reads (?consistent=1: the node first catches up
// with the leader's barrier index) are claimed linearizable and enter the
// porcupine check. Plain reads are served from the node's local replica,
// which may trail the leader: they are checked by CheckMonotonic against the
// weaker guarantee the replica gives — per node and per agent incarnation,
// reads never go back in time (the version of what they return never
// decreases). An agent restart starts a new incarnation: its replica is
// rebuilt from a snapshot and may start older than what it served before.
package lin

import (
	"fmt"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation does.
type Kind uint8

// Operation kinds.
const (
	Create   Kind = iota + 1 // service create with Replicas and Image
	Remove                   // service rm
	Scale                    // service scale to Replicas
	Update                   // service update to Image (read-modify-write with the version)
	Read                     // service inspect
	LabelSet                 // node label set to Value
	LabelGet                 // node inspect, the label's value
)

var kindNames = map[Kind]string{Create: "create", Remove: "rm", Scale: "scale", Update: "update",
	Read: "read", LabelSet: "label-set", LabelGet: "label-get"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", k)
}

// IsRead reports whether an operation of kind k changes nothing.
func (k Kind) IsRead() bool { return k == Read || k == LabelGet }

// Result is how an operation ended.
type Result uint8

// Results. Every Fail* is a definite refusal that changed nothing.
const (
	OK           Result = iota + 1
	FailExists          // create: a service of that name exists
	FailNotFound        // rm, scale, update, read: no such service
	FailConflict        // the version changed under a read-modify-write
	FailRefused         // any other definite refusal
	Unknown             // may or may not have been applied
)

var resultNames = map[Result]string{OK: "ok", FailExists: "exists", FailNotFound: "not-found",
	FailConflict: "conflict", FailRefused: "refused", Unknown: "unknown"}

func (r Result) String() string {
	if s, ok := resultNames[r]; ok {
		return s
	}
	return fmt.Sprintf("result(%d)", r)
}

// Input is what a client asked, and where.
type Input struct {
	Kind Kind   `json:"kind"`
	Key  string `json:"key"` // "svc/NAME" or "node/ID"
	// Replicas of a create or scale; Image of a create or update; Value of
	// a label set.
	Replicas uint64 `json:"replicas,omitempty"`
	Image    string `json:"image,omitempty"`
	Value    string `json:"value,omitempty"`
	// Node is the host whose API served the operation, Epoch the agent
	// incarnation there (bumped on every restart; -1 when it changed during
	// the operation). Consistent marks a ?consistent=1 read.
	Node       string `json:"node"`
	Epoch      int    `json:"epoch"`
	Consistent bool   `json:"consistent,omitempty"`
}

// Output is what the client got back. For reads of an existing service,
// Exists, Replicas, Image and Version; for a label read, Value and Version.
type Output struct {
	Result   Result `json:"result"`
	Exists   bool   `json:"exists,omitempty"`
	Replicas uint64 `json:"replicas,omitempty"`
	Image    string `json:"image,omitempty"`
	Value    string `json:"value,omitempty"`
	Version  uint64 `json:"version,omitempty"`
	Err      string `json:"err,omitempty"`
}

// State is the model's state of one key. It is comparable, so porcupine's
// default equality (==) applies.
type State struct {
	Exists   bool
	Replicas uint64
	Image    string
	Value    string
}

func (s State) String() string {
	if s.Value != "" {
		return fmt.Sprintf("label=%q", s.Value)
	}
	if !s.Exists {
		return "absent"
	}
	return fmt.Sprintf("replicas=%d image=%s", s.Replicas, s.Image)
}

// apply returns the state after in succeeds on s, and whether it can
// succeed there at all.
func apply(s State, in Input) (State, bool) {
	switch in.Kind {
	case Create:
		if s.Exists {
			return s, false
		}
		return State{Exists: true, Replicas: in.Replicas, Image: in.Image}, true
	case Remove:
		if !s.Exists {
			return s, false
		}
		return State{}, true
	case Scale:
		if !s.Exists {
			return s, false
		}
		s.Replicas = in.Replicas
		return s, true
	case Update:
		if !s.Exists {
			return s, false
		}
		s.Image = in.Image
		return s, true
	case LabelSet:
		s.Value = in.Value
		return s, true
	}
	return s, false
}

// Step is the sequential specification: whether the operation (in, out)
// can happen in state s, and the state after it.
func Step(s State, in Input, out Output) (bool, State) {
	switch in.Kind {
	case Read:
		switch out.Result {
		case OK:
			if !out.Exists {
				return !s.Exists, s
			}
			return s.Exists && s.Replicas == out.Replicas && s.Image == out.Image, s
		case FailNotFound:
			return !s.Exists, s
		default: // a failed read says nothing
			return true, s
		}
	case LabelGet:
		if out.Result != OK {
			return true, s
		}
		return s.Value == out.Value, s
	}
	next, legal := apply(s, in)
	switch out.Result {
	case OK:
		return legal, next
	case Unknown:
		// Applied here if it could be; "never applied" is the same
		// operation linearized after everything else.
		if legal {
			return true, next
		}
		return true, s
	case FailExists:
		return in.Kind == Create && s.Exists, s
	case FailNotFound:
		return in.Kind != Create && in.Kind != LabelSet && !s.Exists, s
	case FailConflict, FailRefused:
		return true, s
	}
	return false, s
}

// Model is the porcupine model of the cluster's service and label state,
// partitioned by key.
var Model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(Input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return State{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		return Step(state.(State), input.(Input), output.(Output))
	},
	DescribeOperation: func(input, output interface{}) string {
		return Describe(input.(Input), output.(Output))
	},
	DescribeState: func(state interface{}) string { return state.(State).String() },
}

// Describe renders one operation for the visualization and for reports:
// "h2 scale(2) -> ok", "h1 read* -> replicas=2 image=bb:1 v=41".
func Describe(in Input, out Output) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", in.Node, in.Kind)
	if in.Kind.IsRead() && in.Consistent {
		b.WriteString("*")
	}
	switch in.Kind {
	case Create:
		fmt.Fprintf(&b, "(%d,%s)", in.Replicas, in.Image)
	case Scale:
		fmt.Fprintf(&b, "(%d)", in.Replicas)
	case Update:
		fmt.Fprintf(&b, "(%s)", in.Image)
	case LabelSet:
		fmt.Fprintf(&b, "(%s)", in.Value)
	}
	b.WriteString(" -> ")
	switch {
	case in.Kind == Read && out.Result == OK && out.Exists:
		fmt.Fprintf(&b, "replicas=%d image=%s v=%d", out.Replicas, out.Image, out.Version)
	case in.Kind == Read && out.Result == OK:
		b.WriteString("absent")
	case in.Kind == LabelGet && out.Result == OK:
		fmt.Fprintf(&b, "%q v=%d", out.Value, out.Version)
	default:
		b.WriteString(out.Result.String())
	}
	return b.String()
}
