package node

// Version is this binary's release, set at build time with
//
//	-ldflags "-X github.com/shoal-org/shoal/node.Version=v1.2.3"
//
// (the Makefile uses `git describe`). Nodes advertise it in gossip and
// `shoal node ls` shows it; it is for people. The upgrade gate compares
// consensus.ProtocolLevel instead, because release strings do not order
// (membership.Membership.CommandGate, set on Raft by instance.Open).
var Version = "dev"
