package writes

// A deploy's preflight: `shoal stack deploy` writes service by service,
// and a refusal that only the cluster state can tell (a network alias or
// a published port another service holds, a name taken, the level gate)
// came after earlier services of the same deploy were written. The
// handlers' dry run (node/handlers check.go) builds each planned write as
// its route would and hands it here, with a fork of the replica
// (consensus.Store.Fork) that already holds the deploy's earlier writes.

import (
	"fmt"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
)

// preflightKEKID marks the stand-in for a sealed secret in a preflight's
// fork: the dry run never seals (it holds no plaintext longer than the
// call, and a follower has no KEK), and the FSM only checks that sealed
// data is there (one byte) and the secret's size.
const preflightKEKID = "preflight"

// Preflight runs the admin write cmd against fork as the write path would
// run it — refused on a worker, authorized, encoded and decoded as the
// leader receives it, re-validated (checkAdmin), passed through the
// command gate of the members' protocol levels (raftnode.Raft.CheckCommand)
// and applied by the FSM — and leaves its effect in fork, so that the next
// write of the same deploy is checked against it. Nothing is proposed.
//
// It runs on the node whose API received the deploy, after its read index
// (the caller's SyncReplica): the replica then holds every write
// acknowledged before, and the checks are the code every replica's FSM and
// the leader run. In a rolling upgrade the leader may run another release
// whose rules differ; a refusal the preflight missed then arrives during
// the deploy, as before there was one.
func (w *Writer) Preflight(fork *consensus.Store, cmd command.Command) error {
	if fork.ReadOnly() {
		return fmt.Errorf("preflight on a read-only store: %w", consensus.ErrInvalid)
	}
	if err := w.LocalWriteAllowed(); err != nil {
		return err
	}
	enc, err := command.Encode(cmd)
	if err != nil {
		return fmt.Errorf("encode command: %w", err)
	}
	if cmd, err = command.Decode(enc); err != nil {
		return fmt.Errorf("decode command: %w", err)
	}
	c, _ := CallerOf(fork, authz.Admin, w.cfg.NodeID)
	if err := authz.Authorize(c, cmd, nil); err != nil {
		return err
	}
	if x, ok := cmd.(command.CreateSecret); ok {
		x.Secret.Sealed, x.Secret.KEKID, x.Plaintext = []byte{0}, preflightKEKID, nil
		cmd = x
	}
	if cmd, _, err = checkAdmin(fork, cmd, w.cfg.NodeID); err != nil {
		return err
	}
	if err := w.cfg.Raft.CheckCommand(cmd); err != nil {
		return err
	}
	return fsm.New(fork).ApplyCommand(fork.Index()+1, cmd).Err
}
