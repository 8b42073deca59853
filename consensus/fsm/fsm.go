// Package fsm is the replicated state's one writer: the commands (a type
// byte, a version byte, a JSON body; command.go), the FSM that applies
// committed log entries to a consensus.Store (raft.FSM), and the version
// skew gate over the commands' protocol levels. It imports consensus for
// the store and its types; consensus/raftnode drives it.
package fsm

// Why this file looks the way it does: the FSM is a pure function of the
// log. Every apply runs in one memdb write transaction that is committed on
// success and aborted on a business refusal, so a refused command leaves no
// trace. Stored objects are never mutated in place: apply clones, changes the
// clone and inserts it, which keeps readers' snapshots stable. Nothing here
// reads the clock or a random source; timestamps and IDs come in commands.

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus"
)

// MaxTerminalTasks is how many terminal tasks are kept per replicated slot
// (service, slot) or per global task group (service, node; Slot 0). Older
// ones, by CreatedAt then ID, are deleted when their group changes.
const MaxTerminalTasks = 5

// Result is what FSM.Apply returns for every entry (raft's future.Response).
// Err is a business refusal; Value is the command's answer (the stored
// object for creates and updates, a []Result for a Batch).
type Result struct {
	Value any
	Err   error
}

// FSM applies committed log entries to a Store. It implements raft.FSM and
// must be driven by one goroutine (raft's FSM goroutine).
type FSM struct {
	store *consensus.Store
}

// New returns an FSM that writes into store. The store must not be a
// Snapshot view.
func New(store *consensus.Store) *FSM {
	if store.ReadOnly() {
		panic("consensus/fsm: New on a read-only store snapshot")
	}
	return &FSM{store: store}
}

// Store returns the store the FSM writes into.
func (f *FSM) Store() *consensus.Store { return f.store }

var _ raft.FSM = (*FSM)(nil)

// Apply implements raft.FSM. It panics on an entry that cannot be decoded:
// a committed entry that this binary does not understand means the replicas
// would diverge, which is worse than stopping.
func (f *FSM) Apply(l *raft.Log) any {
	cmd, err := DecodeCommand(l.Data)
	if err != nil {
		panic(fmt.Sprintf("consensus: cannot decode committed log entry %d: %v", l.Index, err))
	}
	res := f.ApplyCommand(l.Index, cmd)
	return res
}

// ApplyCommand applies one decoded command as the entry at index and
// notifies subscribers. It exists for Apply and for tests that drive the FSM
// without Raft; it must not be called concurrently with Apply.
func (f *FSM) ApplyCommand(index uint64, cmd Command) Result {
	var res Result
	if p, ok := cmd.(*Batch); ok && p != nil {
		cmd = *p
	}
	if b, ok := cmd.(Batch); ok {
		results := make([]Result, 0, len(b.Commands))
		var errs []error
		for i, c := range b.Commands {
			r := f.applyOne(index, c)
			if r.Err != nil {
				errs = append(errs, fmt.Errorf("batch command %d: %w", i, r.Err))
			}
			results = append(results, r)
		}
		res = Result{Value: results, Err: errors.Join(errs...)}
	} else {
		res = f.applyOne(index, cmd)
	}
	f.store.Applied(index)
	return res
}

func (f *FSM) applyOne(index uint64, cmd Command) Result {
	if isNil(cmd) {
		return Result{Err: fmt.Errorf("nil command: %w", consensus.ErrInvalid)}
	}
	if cmd.Type() == TypeBatch {
		return Result{Err: fmt.Errorf("nested batch: %w", consensus.ErrInvalid)}
	}
	tx := f.store.BeginWrite(index)
	v, err := cmd.apply(tx)
	if err != nil {
		tx.Abort()
		return Result{Err: err}
	}
	tx.Commit()
	return Result{Value: v}
}

// Batch is applied by FSM.ApplyCommand; this method only refuses nesting.
func (Batch) apply(*consensus.WriteTxn) (any, error) {
	return nil, fmt.Errorf("nested batch: %w", consensus.ErrInvalid)
}
