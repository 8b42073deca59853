package lin

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Options of Check.
type Options struct {
	// Timeout bounds porcupine's search (NP-hard in general); a search that
	// runs out is reported as Unknown, not as a pass.
	Timeout time.Duration
	// PlainReadsLinearizable feeds plain (non-consistent) reads to porcupine
	// as if they were linearizable. That is false, so it exists only to show
	// the checker failing on a real history: a node cut off from the leader
	// serves stale reads.
	PlainReadsLinearizable bool
	// Dir receives the history (history.json) and porcupine's visualization
	// (visualization.html) when the check does not pass. Empty: not written.
	Dir string
}

// Report is the outcome of Check.
type Report struct {
	Result porcupine.CheckResult
	// Ops is the number of operations checked by porcupine; Keys the
	// partitions; Unknown the writes with an unknown outcome; PlainReads the
	// reads checked by CheckMonotonic instead.
	Ops, Keys, Unknown, PlainReads int
	// Counts by "kind/result".
	Counts map[string]int
	// Monotonic lists violations of monotonic reads per node incarnation.
	Monotonic []string
	// Written is the directory the history and visualization went to.
	Written string
}

// OK reports whether the history passed every check.
func (r Report) OK() bool { return r.Result == porcupine.Ok && len(r.Monotonic) == 0 }

func (r Report) String() string {
	kinds := make([]string, 0, len(r.Counts))
	for k := range r.Counts {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, 0, len(kinds))
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r.Counts[k]))
	}
	return fmt.Sprintf("%s: %d operations over %d keys (%d unknown outcomes), %d plain reads (%d monotonic-read violations); %s",
		r.Result, r.Ops, r.Keys, r.Unknown, r.PlainReads, len(r.Monotonic), strings.Join(parts, " "))
}

// Split separates the operations porcupine checks (writes and consistent
// reads) from plain reads.
func Split(ops []porcupine.Operation, plainLinearizable bool) (lin, plain []porcupine.Operation) {
	for _, op := range ops {
		in := op.Input.(Input)
		if in.Kind.IsRead() && !in.Consistent {
			plain = append(plain, op)
			if !plainLinearizable {
				continue
			}
		}
		lin = append(lin, op)
	}
	return lin, plain
}

// Check checks a history: writes and consistent reads for linearizability
// under Model, plain reads with CheckMonotonic. When it does not pass and
// opts.Dir is set, it writes the history and the visualization there.
func Check(ops []porcupine.Operation, opts Options) (Report, error) {
	lin, plain := Split(ops, opts.PlainReadsLinearizable)
	rep := Report{Ops: len(lin), PlainReads: len(plain), Counts: map[string]int{}}
	keys := map[string]bool{}
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		keys[in.Key] = true
		name := in.Kind.String()
		if in.Kind.IsRead() && in.Consistent {
			name += "*"
		}
		rep.Counts[name+"/"+out.Result.String()]++
		if out.Result == Unknown {
			rep.Unknown++
		}
	}
	rep.Keys = len(keys)
	res, info := porcupine.CheckOperationsVerbose(Model, lin, opts.Timeout)
	rep.Result = res
	rep.Monotonic = CheckMonotonic(plain)
	if rep.OK() || opts.Dir == "" {
		return rep, nil
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return rep, fmt.Errorf("history dir: %w", err)
	}
	rep.Written = opts.Dir
	if err := WriteHistory(filepath.Join(opts.Dir, "history.json"), ops); err != nil {
		return rep, err
	}
	if err := porcupine.VisualizePath(Model, info, filepath.Join(opts.Dir, "visualization.html")); err != nil {
		return rep, fmt.Errorf("visualize: %w", err)
	}
	if len(rep.Monotonic) > 0 {
		if err := os.WriteFile(filepath.Join(opts.Dir, "monotonic.txt"), []byte(strings.Join(rep.Monotonic, "\n")+"\n"), 0o644); err != nil {
			return rep, fmt.Errorf("write monotonic violations: %w", err)
		}
	}
	return rep, nil
}

// opJSON is one operation as written to history.json.
type opJSON struct {
	Client int    `json:"client"`
	Call   int64  `json:"call_ns"`
	Return int64  `json:"return_ns"` // Never for an unknown outcome
	Input  Input  `json:"input"`
	Output Output `json:"output"`
	Text   string `json:"text"`
}

// WriteHistory writes ops as a JSON array, one object per operation.
func WriteHistory(path string, ops []porcupine.Operation) error {
	out := make([]opJSON, 0, len(ops))
	for _, op := range ops {
		in, o := op.Input.(Input), op.Output.(Output)
		out = append(out, opJSON{Client: op.ClientId, Call: op.Call, Return: op.Return, Input: in, Output: o, Text: Describe(in, o)})
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return fmt.Errorf("encode history: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

// ReadHistory reads what WriteHistory wrote, to re-check a kept history.
func ReadHistory(path string) ([]porcupine.Operation, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	var in []opJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("decode history %s: %w", path, err)
	}
	ops := make([]porcupine.Operation, 0, len(in))
	for _, o := range in {
		ops = append(ops, porcupine.Operation{ClientId: o.Client, Input: o.Input, Call: o.Call, Output: o.Output, Return: o.Return})
	}
	return ops, nil
}

// CheckMonotonic checks plain reads against what a local replica
// guarantees: per node and agent incarnation (Input.Node, Input.Epoch) and
// key, a read that starts after another one returned never returns an
// older version of the object (a service or node record: its Version is
// the Raft index of its last write). Reads of an absent service carry no
// version and are not compared; reads whose incarnation changed under them
// (Epoch -1) are skipped. It returns one line per violation.
func CheckMonotonic(plain []porcupine.Operation) []string {
	type group struct {
		node  string
		epoch int
		key   string
	}
	groups := map[group][]porcupine.Operation{}
	for _, op := range plain {
		in, out := op.Input.(Input), op.Output.(Output)
		if out.Result != OK || in.Epoch < 0 || (in.Kind == Read && !out.Exists) || out.Version == 0 {
			continue
		}
		g := group{in.Node, in.Epoch, in.Key}
		groups[g] = append(groups[g], op)
	}
	var bad []string
	for g, ops := range groups {
		// Sorted by return, a running maximum over the reads that
		// returned before each read's call is all a read must reach.
		byRet := append([]porcupine.Operation(nil), ops...)
		sort.Slice(byRet, func(i, j int) bool { return byRet[i].Return < byRet[j].Return })
		for _, b := range ops {
			var maxV uint64
			var maxOp porcupine.Operation
			for _, a := range byRet {
				if a.Return >= b.Call {
					break
				}
				if v := a.Output.(Output).Version; v > maxV {
					maxV, maxOp = v, a
				}
			}
			if v := b.Output.(Output).Version; v < maxV {
				bad = append(bad, fmt.Sprintf("%s (epoch %d) %s: read at %s returned version %d after a read that returned %s had seen version %d (%s)",
					g.node, g.epoch, g.key, dur(b.Call), v, dur(maxOp.Return), maxV,
					Describe(b.Input.(Input), b.Output.(Output))))
			}
		}
	}
	sort.Strings(bad)
	return bad
}

func dur(ns int64) string { return time.Duration(ns).Round(time.Millisecond).String() }
