package lin

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Never is the Return of an operation whose outcome is unknown: porcupine
// may linearize it at any point after its call, or after everything else.
const Never = int64(math.MaxInt64)

// Recorder collects a history from concurrent clients. Times are
// nanoseconds of the monotonic clock since the recorder was made. It is
// safe for concurrent use.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
}

// NewRecorder starts a history now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the recorder's clock.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Pending is an invoked operation waiting for its completion.
type Pending struct {
	r      *Recorder
	client int
	in     Input
	call   int64
}

// Invoke records the call of in by client (numbered from 0) and returns
// the handle to complete it with. Take the time before sending anything.
func (r *Recorder) Invoke(client int, in Input) *Pending {
	return &Pending{r: r, client: client, in: in, call: r.Now()}
}

// Input returns the operation's input, which the caller may still amend
// (the epoch at completion) before Complete.
func (p *Pending) Input() *Input { return &p.in }

// Complete records the operation's outcome now. An Unknown outcome gets
// Return = Never; a failed read is dropped (it observed nothing).
func (p *Pending) Complete(out Output) {
	ret := p.r.Now()
	if out.Result == Unknown {
		if p.in.Kind.IsRead() {
			return
		}
		ret = Never
	}
	op := porcupine.Operation{ClientId: p.client, Input: p.in, Call: p.call, Output: out, Return: ret}
	p.r.mu.Lock()
	p.r.ops = append(p.r.ops, op)
	p.r.mu.Unlock()
}

// Operations returns the history so far, ordered by call time.
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	ops := append([]porcupine.Operation(nil), r.ops...)
	r.mu.Unlock()
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	return ops
}
