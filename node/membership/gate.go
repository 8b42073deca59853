package membership

import "github.com/shoal-org/shoal/consensus"

// CommandGate returns the check the leader runs before proposing a command
// (consensus.Raft.SetCommandGate): every member of r's Raft configuration,
// voter or not, must advertise in gossip a protocol level that can apply
// it (PeerLevels keeps a dead member's level). Commands every release
// applies skip the lookup.
func (m *Membership) CommandGate(r *consensus.Raft) func(consensus.Command) error {
	return m.LevelGate(r, consensus.SinceLevel)
}

// LevelGate is CommandGate with the command levels from since (tests
// raise them above this binary's).
func (m *Membership) LevelGate(r *consensus.Raft, since func(consensus.Command) int) func(consensus.Command) error {
	return func(cmd consensus.Command) error {
		need := since(cmd)
		if need <= consensus.BaseProtocolLevel {
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
		return consensus.CheckLevel(cmd.Type(), need, m.PeerLevels(ids))
	}
}
