package placement

import (
	"fmt"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// A host-mode published port (`--publish mode=host,...`) is bound on the
// node that runs the task, so, as in Swarm (swarmkit's HostPortFilter), it
// is a node resource: a node where a task already holds port P/protocol in
// host mode cannot take another task that needs P/protocol, whichever
// service either belongs to. Two tasks told to bind one host port would
// leave one of them without it.

// HostPort is one host-mode published port, e.g. "8080/tcp".
type HostPort string

// HostPortsOf returns the host-mode published ports of spec (nil: none).
// An empty protocol is tcp, as the API defaults it.
func HostPortsOf(spec *api.ServiceSpec) []HostPort {
	var out []HostPort
	for _, p := range spec.Ports {
		if p.Mode != api.PublishHost || p.Published == 0 {
			continue
		}
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, HostPort(fmt.Sprintf("%d/%s", p.Published, proto)))
	}
	return out
}

// HoldPorts records that n runs a task holding ports.
func (n *NodeInfo) HoldPorts(ports []HostPort) {
	if len(ports) == 0 {
		return
	}
	if n.HostPorts == nil {
		n.HostPorts = make(map[HostPort]bool, len(ports))
	}
	for _, p := range ports {
		n.HostPorts[p] = true
	}
}

// HostPortFilter refuses nodes where a task already holds one of the
// request's host-mode ports, naming the first one.
type HostPortFilter struct{}

// Check implements Filter.
func (HostPortFilter) Check(n *NodeInfo, r *Request) (bool, string) {
	for _, p := range r.HostPorts {
		if n.HostPorts[p] {
			return false, "with host-mode port " + string(p) + " already in use"
		}
	}
	return true, ""
}
