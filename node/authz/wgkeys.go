package authz

import (
	"fmt"

	"github.com/shoal-org/shoal/api"
)

// WireGuardKeyTaken returns why node n may not publish the WireGuard keys
// in its record, or "": a key another node's record holds (current or
// next). Every node configures one peer per public key, for the first node
// that holds it, so a member that copied another node's public key (they
// are public, in Raft) into its own record cut that node off every
// encrypted network cluster-wide.
func WireGuardKeyTaken(nodes []*api.Node, n api.Node) string {
	for _, k := range []string{n.WireGuardKey, n.WireGuardNextKey} {
		if k == "" {
			continue
		}
		for _, o := range nodes {
			if o.ID != n.ID && (o.WireGuardKey == k || o.WireGuardNextKey == k) {
				return fmt.Sprintf("WireGuard key %s is node %s's", k, api.ShortID(o.ID))
			}
		}
	}
	return ""
}
