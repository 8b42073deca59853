package node

import (
	"github.com/shoal-org/shoal/node/agentconfig"
	"github.com/shoal-org/shoal/node/profile"
)

// Config configures an agent (node/agentconfig). Derive it from
// DefaultConfig; it is not mutated after Run starts.
type Config = agentconfig.Config

// DefaultConfig returns the settings of a production agent.
func DefaultConfig() Config { return agentconfig.Default() }

// ProfileByName and CheckGossipProfile are node/profile's ByName and
// Check for cmd/shoal, which may import only node and api.
func ProfileByName(name string) (profile.Profile, error) { return profile.ByName(name) }

// CheckGossipProfile reports whether name is a profile an agent can run
// with ("" is the default, "fast").
func CheckGossipProfile(name string) error { return profile.Check(name) }
