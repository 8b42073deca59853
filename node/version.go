package node

import (
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/membership"
)

// Version is this binary's release, set at build time with
//
//	-ldflags "-X github.com/shoal-org/shoal/node.Version=v1.2.3"
//
// (the Makefile uses `git describe`). Nodes advertise it in gossip and
// `shoal node ls` shows it; it is for people. The upgrade gate compares
// fsm.ProtocolLevel instead, because release strings do not order.
var Version = "dev"

// commandGate returns the check the leader runs before proposing a command
// (raftnode.Raft.SetCommandGate): every member of the Raft configuration,
// voter or not, must advertise a protocol level that can apply it. Commands
// every release applies skip the lookup.
func commandGate(r *raftnode.Raft, m *membership.Membership) func(fsm.Command) error {
	return levelGate(r, m, fsm.SinceLevel)
}

// levelGate is commandGate with the command levels from since (tests
// raise them above this binary's).
func levelGate(r *raftnode.Raft, m *membership.Membership, since func(fsm.Command) int) func(fsm.Command) error {
	return func(cmd fsm.Command) error {
		need := since(cmd)
		if need <= fsm.BaseProtocolLevel {
			return nil
		}
		servers, err := r.Servers()
		if err != nil {
			return err
		}
		ids := make([]string, 0, len(servers))
		for _, s := range servers {
			ids = append(ids, s.ID)
		}
		return fsm.CheckLevel(cmd.Type(), need, m.PeerLevels(ids))
	}
}
