package consensus

// Why this file looks the way it does: the FSM is a pure function of the
// log. Every apply runs in one memdb write transaction that is committed on
// success and aborted on a business refusal, so a refused command leaves no
// trace. Stored objects are never mutated in place: apply clones, changes the
// clone and inserts it, which keeps readers' snapshots stable. Nothing here
// reads the clock or a random source; timestamps and IDs come in commands.

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
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
	store *Store
}

// NewFSM returns an FSM that writes into store. The store must not be a
// Snapshot view.
func NewFSM(store *Store) *FSM {
	if store.readOnly {
		panic("consensus: NewFSM on a read-only store snapshot")
	}
	return &FSM{store: store}
}

// Store returns the store the FSM writes into.
func (f *FSM) Store() *Store { return f.store }

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
	f.store.notify(index)
	return res
}

func (f *FSM) applyOne(index uint64, cmd Command) Result {
	if isNil(cmd) {
		return Result{Err: fmt.Errorf("nil command: %w", ErrInvalid)}
	}
	if cmd.Type() == TypeBatch {
		return Result{Err: fmt.Errorf("nested batch: %w", ErrInvalid)}
	}
	tx := &writeTxn{tx: f.store.db.Load().Txn(true), index: index}
	v, err := cmd.apply(tx)
	if err != nil {
		tx.tx.Abort()
		return Result{Err: err}
	}
	tx.tx.Commit()
	return Result{Value: v}
}

// writeTxn is a memdb write transaction plus the log index being applied.
type writeTxn struct {
	tx    *memdb.Txn
	index uint64
}

func (w *writeTxn) insert(table string, obj any) error {
	if err := w.tx.Insert(table, obj); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

func (w *writeTxn) delete(table string, obj any) error {
	if err := w.tx.Delete(table, obj); err != nil {
		return fmt.Errorf("delete from %s: %w", table, err)
	}
	return nil
}

// first returns the stored object (not a copy: do not mutate) or nil.
func first[T any](w *writeTxn, table, index string, args ...any) *T {
	raw, err := w.tx.First(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("consensus: memdb first %s.%s: %v", table, index, err))
	}
	if raw == nil {
		return nil
	}
	return raw.(*T)
}

// all returns the stored objects (not copies) of an index lookup.
func all[T any](w *writeTxn, table, index string, args ...any) []*T {
	it, err := w.tx.Get(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("consensus: memdb get %s.%s: %v", table, index, err))
	}
	var out []*T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*T))
	}
	return out
}

// cluster returns a mutable copy of the cluster record or ErrNotBootstrapped.
func (w *writeTxn) cluster() (*ClusterState, error) {
	c := getCluster(w.tx)
	if c == nil {
		return nil, ErrNotBootstrapped
	}
	return cloneCluster(c), nil
}

func (w *writeTxn) putCluster(c *ClusterState) error {
	return w.insert(tableCluster, &clusterRow{ID: clusterRowID, State: c})
}

// Batch is applied by FSM.ApplyCommand; this method only refuses nesting.
func (Batch) apply(*writeTxn) (any, error) {
	return nil, fmt.Errorf("nested batch: %w", ErrInvalid)
}
