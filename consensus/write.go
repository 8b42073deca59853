package consensus

// Why this file exists: the Store is written by one writer, the FSM in
// consensus/fsm, and read by everyone. The FSM lives in a package of its
// own (the commands and their apply code were half of consensus), so the
// store opens its memdb to it here and nowhere else: one write transaction
// per command (BeginWrite, then Commit or Abort), with the schema's table
// and index names exported in store.go, and Applied once an entry is done. Readers never
// need any of it; they use the Store's methods, which return copies.

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
	"github.com/shoal-org/shoal/api"
)

// WriteTxn is a memdb write transaction plus the log index being applied.
// Objects it returns are the stored ones, not copies: clone before
// changing anything (CloneNode and the others) and insert the clone.
type WriteTxn struct {
	tx    *memdb.Txn
	index uint64
}

// BeginWrite opens the write transaction of the entry at index. The caller
// (the FSM, on raft's FSM goroutine) ends it with Commit or Abort before it
// opens the next one; memdb allows one writer at a time.
func (s *Store) BeginWrite(index uint64) *WriteTxn {
	return &WriteTxn{tx: s.db.Load().Txn(true), index: index}
}

// Commit makes the transaction's changes visible to readers.
func (w *WriteTxn) Commit() { w.tx.Commit() }

// Abort drops the transaction's changes (a business refusal).
func (w *WriteTxn) Abort() { w.tx.Abort() }

// Index is the log index of the entry being applied (the version of what
// it writes).
func (w *WriteTxn) Index() uint64 { return w.index }

// Txn is the underlying memdb transaction, for lookups the helpers here do
// not cover.
func (w *WriteTxn) Txn() *memdb.Txn { return w.tx }

// Insert inserts or replaces obj in table.
func (w *WriteTxn) Insert(table string, obj any) error {
	if err := w.tx.Insert(table, obj); err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	return nil
}

// Delete removes obj from table.
func (w *WriteTxn) Delete(table string, obj any) error {
	if err := w.tx.Delete(table, obj); err != nil {
		return fmt.Errorf("delete from %s: %w", table, err)
	}
	return nil
}

// First returns the stored object (not a copy: do not mutate) or nil.
func First[T any](w *WriteTxn, table, index string, args ...any) *T {
	raw, err := w.tx.First(table, index, args...)
	if err != nil {
		panic(fmt.Sprintf("consensus: memdb first %s.%s: %v", table, index, err))
	}
	if raw == nil {
		return nil
	}
	return raw.(*T)
}

// All returns the stored objects (not copies) of an index lookup.
func All[T any](w *WriteTxn, table, index string, args ...any) []*T {
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

// Cluster returns a mutable copy of the cluster record or ErrNotBootstrapped.
func (w *WriteTxn) Cluster() (*ClusterState, error) {
	c := getCluster(w.tx)
	if c == nil {
		return nil, ErrNotBootstrapped
	}
	return CloneCluster(c), nil
}

// Bootstrapped reports whether the cluster record exists.
func (w *WriteTxn) Bootstrapped() bool { return getCluster(w.tx) != nil }

// PutCluster stores c as the cluster record.
func (w *WriteTxn) PutCluster(c *ClusterState) error {
	return w.Insert(tableCluster, &clusterRow{ID: clusterRowID, State: c})
}

// Network returns the stored network called name, the default network
// included (derived from the cluster record), or nil.
func (w *WriteTxn) Network(name string) *api.Network {
	return networkByName(w.tx, name)
}

// Applied records index as applied and wakes every subscriber without
// blocking (Subscribe). The FSM calls it after every entry.
func (s *Store) Applied(index uint64) { s.notify(index) }

// ReadOnly reports whether s is a Snapshot view, which no FSM may write.
func (s *Store) ReadOnly() bool { return s.readOnly }
