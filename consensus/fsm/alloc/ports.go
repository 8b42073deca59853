package alloc

import (
	"fmt"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// PublishedPorts returns ports with every port that has no published port
// (0) given one of api.AutoPortMin-AutoPortMax: free for its protocol on
// every node, that is published by no service but self (ingress or host
// mode alike: both take the port on a node) and not a node's cluster or
// gossip port. ports is not modified; it is returned as is when no port
// asks for one. A range without a free port is ErrInUse (a conflict, as a taken port is), and the
// caller stores nothing.
func PublishedPorts(w *consensus.WriteTxn, self string, ports []api.PortConfig) ([]api.PortConfig, error) {
	need := false
	for _, p := range ports {
		need = need || p.Published == 0
	}
	if !need {
		return ports, nil
	}
	used := map[string]map[int]bool{"tcp": {}, "udp": {}}
	for _, s := range consensus.All[api.Service](w, consensus.TableServices, consensus.IndexID) {
		if s.ID == self {
			continue // its old ports are free unless the new spec keeps them
		}
		for _, p := range s.Spec.Ports {
			markPort(used, p)
		}
	}
	for _, n := range consensus.All[api.Node](w, consensus.TableNodes, consensus.IndexID) {
		for _, port := range []int{n.ClusterPort, n.GossipPort} {
			if port > 0 {
				used["tcp"][port] = true
				used["udp"][port] = true
			}
		}
	}
	return FillPorts(ports, used)
}

// FillPorts gives each port of ports without a published port the lowest
// port of api.AutoPortMin-AutoPortMax that used (port numbers by protocol,
// "tcp" and "udp") does not hold, nor ports itself publishes or was given
// already. Pure: ports and used are not modified.
func FillPorts(ports []api.PortConfig, used map[string]map[int]bool) ([]api.PortConfig, error) {
	taken := map[string]map[int]bool{}
	for proto, m := range used {
		taken[proto] = map[int]bool{}
		for port, ok := range m {
			taken[proto][port] = ok
		}
	}
	for _, p := range ports {
		markPort(taken, p)
	}
	out := make([]api.PortConfig, len(ports))
	copy(out, ports)
	for i, p := range out {
		if p.Published != 0 {
			continue
		}
		proto := protoOf(p)
		port, ok := FreePort(taken[proto])
		if !ok {
			return nil, fmt.Errorf("no free published port for target %d/%s: every port of %d-%d is published by a service or used by the cluster; give one (PUBLISHED:TARGET) outside the range, or remove a service: %w",
				p.Target, proto, api.AutoPortMin, api.AutoPortMax, consensus.ErrInUse)
		}
		out[i].Published = port
		markPort(taken, out[i])
	}
	return out, nil
}

// FreePort returns the lowest port of api.AutoPortMin-AutoPortMax that
// used does not hold, and false when it holds all of them. The lowest, not
// a random one: every replica must choose the same from the same state.
func FreePort(used map[int]bool) (int, bool) {
	for port := api.AutoPortMin; port <= api.AutoPortMax; port++ {
		if !used[port] {
			return port, true
		}
	}
	return 0, false
}

// markPort records p's published port under its protocol.
func markPort(used map[string]map[int]bool, p api.PortConfig) {
	if p.Published == 0 {
		return
	}
	proto := protoOf(p)
	if used[proto] == nil {
		used[proto] = map[int]bool{}
	}
	used[proto][p.Published] = true
}

// protoOf is a port's protocol, "tcp" when empty (the API's default).
func protoOf(p api.PortConfig) string {
	if p.Protocol == "" {
		return "tcp"
	}
	return p.Protocol
}
