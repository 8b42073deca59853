package raftnode

import (
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// SetCommandGate installs check, which Apply calls on the leader before it
// proposes a command; an error refuses the command and nothing is written.
// node installs command.CheckLevel over the protocol levels its members
// advertise in gossip (docs/upgrades.md). Safe to call at any time and from
// any goroutine; nil removes the gate. check must not block.
func (r *Raft) SetCommandGate(check func(command.Command) error) {
	if check == nil {
		r.cmdGate.Store(nil)
		return
	}
	r.cmdGate.Store(&check)
}

// checkGate runs the installed gate, if any.
func (r *Raft) checkGate(cmd command.Command) error {
	if g := r.cmdGate.Load(); g != nil {
		return (*g)(cmd)
	}
	return nil
}

// CheckCommand runs the installed gate on cmd without proposing it: for
// state installed without a command (a snapshot restore), which every
// member must be able to hold as a command that wrote it would have had to
// pass. nil when no gate is installed.
func (r *Raft) CheckCommand(cmd command.Command) error { return r.checkGate(cmd) }
