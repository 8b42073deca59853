// Package fsm is the replicated state's one writer: the FSM that applies
// committed log entries (consensus/fsm/command) to a consensus.Store
// (raft.FSM). It imports consensus for the store and its types;
// consensus/raftnode drives it.
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
	"reflect"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
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
	cmd, err := command.Decode(l.Data)
	if err != nil {
		panic(fmt.Sprintf("consensus: cannot decode committed log entry %d: %v", l.Index, err))
	}
	res := f.ApplyCommand(l.Index, cmd)
	return res
}

// ApplyCommand applies one decoded command as the entry at index and
// notifies subscribers. It exists for Apply and for tests that drive the FSM
// without Raft; it must not be called concurrently with Apply.
func (f *FSM) ApplyCommand(index uint64, cmd command.Command) Result {
	var res Result
	if b, ok := deref(cmd).(command.Batch); ok {
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

func (f *FSM) applyOne(index uint64, cmd command.Command) Result {
	cmd = deref(cmd)
	if cmd == nil {
		return Result{Err: fmt.Errorf("nil command: %w", consensus.ErrInvalid)}
	}
	if cmd.Type() == command.TypeBatch {
		return Result{Err: fmt.Errorf("nested batch: %w", consensus.ErrInvalid)}
	}
	tx := f.store.BeginWrite(index)
	v, err := apply(tx, cmd)
	if err != nil {
		tx.Abort()
		return Result{Err: err}
	}
	tx.Commit()
	return Result{Value: v}
}

// deref returns the command a pointer points to, and nil for a nil
// interface or pointer: proposers and tests hand commands by value or by
// pointer (both implement command.Command), and the switch in apply
// matches values.
func deref(cmd command.Command) command.Command {
	v := reflect.ValueOf(cmd)
	if v.Kind() != reflect.Pointer {
		return cmd
	}
	if v.IsNil() {
		return nil
	}
	c, _ := v.Elem().Interface().(command.Command)
	return c
}

// apply performs cmd, which is neither nil nor a batch, inside the write
// transaction w. A returned error is a business refusal: the caller aborts
// the transaction and the error goes back to the proposer.
func apply(w *consensus.WriteTxn, cmd command.Command) (any, error) {
	switch c := cmd.(type) {
	case command.BootstrapCluster:
		return applyBootstrapCluster(w, c)
	case command.UpsertNode:
		return applyUpsertNode(w, c)
	case command.UpdateOwnNode:
		return applyUpdateOwnNode(w, c)
	case command.UpdateNode:
		return applyUpdateNode(w, c)
	case command.SetNodeStatus:
		return applySetNodeStatus(w, c)
	case command.SetNodeVoter:
		return applySetNodeVoter(w, c)
	case command.RemoveNode:
		return applyRemoveNode(w, c)
	case command.RotateToken:
		return applyRotateToken(w, c)
	case command.SetGossipKeys:
		return applySetGossipKeys(w, c)
	case command.CreateService:
		return applyCreateService(w, c)
	case command.UpdateService:
		return applyUpdateService(w, c)
	case command.DeleteService:
		return applyDeleteService(w, c)
	case command.UpsertTasks:
		return applyUpsertTasks(w, c)
	case command.TaskStatus:
		return applyTaskStatus(w, c)
	case command.DeleteTasks:
		return applyDeleteTasks(w, c)
	case command.UpsertImage:
		return applyUpsertImage(w, c)
	case command.SetImageNode:
		return applySetImageNode(w, c)
	case command.DeleteImage:
		return applyDeleteImage(w, c)
	case command.TrimTasks:
		return applyTrimTasks(w)
	case command.RevokeCert:
		return applyRevokeCert(w, c)
	case command.SetVoterTarget:
		return applySetVoterTarget(w, c)
	case command.SetClusterEpoch:
		return applySetClusterEpoch(w, c)
	case command.SealClusterKeys:
		return applySealClusterKeys(w, c)
	case command.RotateCA:
		return applyRotateCA(w, c)
	case command.FinishCARotation:
		return applyFinishCARotation(w, c)
	case command.SetNodeCert:
		return applySetNodeCert(w, c)
	case command.StageNodeCert:
		return applyStageNodeCert(w, c)
	case command.ConfirmNodeCert:
		return applyConfirmNodeCert(w, c)
	case command.RecordCertExpiry:
		return applyRecordCertExpiry(w, c)
	case command.TrimRevoked:
		return applyTrimRevoked(w, c)
	case command.CreateNetwork:
		return applyCreateNetwork(w, c)
	case command.DeleteNetwork:
		return applyDeleteNetwork(w, c)
	case command.ClaimNetworkShare:
		return applyClaimNetworkShare(w, c)
	case command.SetRunAttachments:
		return applySetRunAttachments(w, c)
	case command.CreateSecret:
		return applyCreateSecret(w, c)
	case command.DeleteSecret:
		return applyDeleteSecret(w, c)
	case command.CreateConfig:
		return applyCreateConfig(w, c)
	case command.DeleteConfig:
		return applyDeleteConfig(w, c)
	}
	// Unreachable: TestEveryCommandApplies gives every type the codec
	// decodes a case above.
	return nil, fmt.Errorf("command type %d (%T): no applier: %w", cmd.Type(), cmd, consensus.ErrInvalid)
}
