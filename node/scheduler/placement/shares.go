package placement

import (
	"net/netip"

	"github.com/shoal-org/shoal/api"
)

// Networks too small for index-derived node shares (api.Network.ShareBits)
// hand each node a share of their subnet when the first task of the
// network is assigned to it (consensus/fsm shares.go). A network of /24
// has 8, so a task of such a network can go to a node that holds a share,
// or to any node while one is free; the state machine refuses an
// assignment beyond that. A plan places many tasks at once, so the count
// of free shares is the plan's, shared by every request that names the
// network and lowered as the plan gives a node its first task there
// (NetShares.Take).

// SharesLevel is the protocol level that knows allocated node shares
// (command.SharesLevel, restated: this package imports only api): an older
// agent finds no share for itself on such a network and could not run the
// task.
const SharesLevel = 6

// NetShares is one allocated-share network during a plan: the nodes that
// hold a share of it (or got one earlier in the plan) and how many shares
// are free. One value per network, shared by every Request naming it.
type NetShares struct {
	Name    string
	Holders map[string]bool
	Free    int
}

// NewNetShares returns the plan's view of n's shares, or nil when n's
// shares are index-derived (every node has one).
func NewNetShares(n *api.Network) *NetShares {
	if n.ShareBits == 0 {
		return nil
	}
	s := &NetShares{Name: n.Name, Holders: make(map[string]bool, len(n.Shares))}
	for id := range n.Shares {
		s.Holders[id] = true
	}
	if subnet, err := netip.ParsePrefix(n.Subnet); err == nil {
		s.Free = max(len(api.ShareSlots(subnet, n.ShareBits))-len(n.Shares), 0)
	}
	return s
}

// Admits reports whether node id may take a task of the network: it holds
// a share, or one is free.
func (s *NetShares) Admits(id string) bool {
	return s.Holders[id] || s.Free > 0
}

// Take records that node id got a task of the network: it takes a free
// share unless it holds one. The caller checked Admits.
func (s *NetShares) Take(id string) {
	if !s.Holders[id] {
		s.Holders[id] = true
		s.Free--
	}
}

// ShareFilter refuses a node that holds no share of an allocated-share
// network of the request while none is free: "with no address space left
// on network X".
type ShareFilter struct{}

// Check implements Filter.
func (ShareFilter) Check(n *NodeInfo, r *Request) (bool, string) {
	for _, s := range r.Shares {
		if !s.Admits(n.Node.ID) {
			return false, "with no address space left on network " + s.Name
		}
	}
	return true, ""
}
