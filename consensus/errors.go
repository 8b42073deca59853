// Package consensus holds Shoal's replicated state: the in-memory state
// store (go-memdb) that every node reads, its record types, snapshots of it
// and the sentinel errors of the whole consensus tree. Its subpackages do
// the rest, each importing it and never the other way round: consensus/fsm
// is the store's one writer (the commands and the FSM that applies them
// from the Raft log), consensus/raftnode the Raft wiring (the bbolt log
// store in consensus/logstore, file snapshots, a transport over the stream
// layer that node provides), consensus/snapshotfile the backup files and
// consensus/autopilot the pure logic that decides which nodes vote.
//
// It never imports node: node wires it to the network, to membership health
// and to the leader loops. See README.md for the command format.
package consensus

import (
	"errors"

	"github.com/shoal-org/shoal/consensus/logstore"
)

// Sentinel errors, one block for the consensus tree so that callers test
// one set with errors.Is. Business refusals of the FSM (consensus/fsm) wrap
// one of these and travel back to the proposer through Raft's apply
// response; the Raft ones below come from consensus/raftnode.
var (
	// ErrNotFound: the named object does not exist in the store.
	ErrNotFound = errors.New("not found")
	// ErrAmbiguous: an ID prefix or name matches more than one object.
	ErrAmbiguous = errors.New("ambiguous reference")
	// ErrNameTaken: a service with this name already exists.
	ErrNameTaken = errors.New("name already in use")
	// ErrExists: an object with this ID already exists.
	ErrExists = errors.New("already exists")
	// ErrVersionMismatch: an update was based on a stale version of the object.
	ErrVersionMismatch = errors.New("version mismatch (object changed since it was read)")
	// ErrInvalid: the command carries an invalid value.
	ErrInvalid = errors.New("invalid value")
	// ErrNotBootstrapped: the command needs the cluster record, which does not exist yet.
	ErrNotBootstrapped = errors.New("cluster not bootstrapped")
	// ErrAlreadyBootstrapped: BootstrapCluster on a store that already has a cluster.
	ErrAlreadyBootstrapped = errors.New("cluster already bootstrapped")
	// ErrExhausted: an address pool (VIPs, node subnets) has no free entry left.
	ErrExhausted = errors.New("address pool exhausted")
	// ErrMalformed: bytes that are not a valid encoded command.
	ErrMalformed = errors.New("malformed command")
	// ErrInUse: the command claims something another object holds and only
	// one may: a published port (protocol + port), a service VIP, a node
	// subnet.
	ErrInUse = errors.New("already in use")

	// ErrNotLeader: this node is not (or no longer) the Raft leader; forward
	// the write to Leader() and retry.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrShutdown: Raft has been shut down.
	ErrShutdown = errors.New("raft is shut down")
	// ErrTimeout: Raft did not accept or commit the operation in time. The
	// entry may still be committed later.
	ErrTimeout = errors.New("raft operation timed out")
	// ErrLogUnreadable: this node's raft log (or the raft-wal it is migrated
	// from) cannot be read back. raftnode.New quarantines it and rejoins
	// (see logstore/rejoin.go); callers see it only when that failed too.
	ErrLogUnreadable = logstore.ErrLogUnreadable
)
