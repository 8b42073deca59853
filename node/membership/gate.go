package membership

import (
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
)

// CommandGate returns the check the leader runs before proposing a command
// (raftnode.Raft.SetCommandGate): every member of r's Raft configuration,
// voter or not, must advertise in gossip a protocol level that can apply
// it (PeerLevels keeps a dead member's level). Commands every release
// applies skip the lookup.
func (m *Membership) CommandGate(r *raftnode.Raft) func(command.Command) error {
	return m.LevelGate(r, command.SinceLevel)
}

// LevelGate is CommandGate with the command levels from since (tests
// raise them above this binary's).
func (m *Membership) LevelGate(r *raftnode.Raft, since func(command.Command) int) func(command.Command) error {
	return func(cmd command.Command) error {
		need := since(cmd)
		if need <= command.BaseProtocolLevel {
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
		return command.CheckLevel(cmd.Type(), need, m.PeerLevels(ids))
	}
}
