package lb

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/shoal-org/shoal/api"
)

// Sentinel errors of the package. Callers match them with errors.Is.
var (
	// ErrInvalidConfig is returned by Config.Validate and New for a config
	// that cannot produce a working rule set.
	ErrInvalidConfig = errors.New("lb: invalid config")
	// ErrInvalidState is wrapped by Set's error when parts of the State
	// cannot be programmed: a bad VIP, port, protocol or backend address, or
	// two services claiming one name, VIP or published port (a state the
	// cluster refuses today, but an older log may hold). Those parts are left
	// out and named in the error; everything else IS programmed. One bad
	// service must not freeze every other service's rules.
	ErrInvalidState = errors.New("lb: invalid state")
	// ErrClosed is returned by Set after Close or Teardown.
	ErrClosed = errors.New("lb: closed")
)

// Config tells an LB where it runs and which devices it may name in rules.
// It is read once by New and must not be changed afterwards.
type Config struct {
	// TableName is the nftables table (family ip) the LB owns entirely:
	// every sync makes its whole content the compiled State.
	TableName string
	// NodeIPs are the addresses published ports answer on. Empty means
	// every local address (`fib daddr type local`), loopback excluded.
	NodeIPs []net.IP
	// BridgeName is the node's container bridge. Connections DNATed from a
	// container on it to a backend on it (same host, hairpin) are
	// masqueraded so the reply comes back through the node.
	BridgeName string
	// VXLANName is the overlay device. Connections from outside the
	// cluster DNATed to a remote backend are masqueraded as they leave
	// through it, so the reply returns through the node that took them.
	VXLANName string
	// ClusterCIDR is the container address range (10.42.0.0/16).
	ClusterCIDR *net.IPNet
	// NetNSPath, when set, is a network namespace file (/var/run/netns/X)
	// the LB programs instead of the current one. Tests use it; the agent
	// leaves it empty.
	NetNSPath string
	// MasqueradeEgress masquerades connections from containers to
	// addresses outside ClusterCIDR (Docker's bridge masquerade), so
	// containers reach the underlay and beyond, and another node's
	// published port sees a node address it can answer. On by default.
	MasqueradeEgress bool
	// VXLANPort is the overlay's UDP port; with State.Peers set, VXLAN
	// packets to it are accepted only from the peers. 0 means 4789.
	VXLANPort int
	// EncryptedVXLANPort is the UDP port of the encrypted networks' VXLAN
	// devices, which run inside the WireGuard tunnel; with State.Peers set,
	// VXLAN packets to it are accepted only from WireGuardName, so nothing
	// injected on the underlay reaches an encrypted network. 0 means no
	// such rule.
	EncryptedVXLANPort int
	// WireGuardName is the node's WireGuard device (see EncryptedVXLANPort).
	WireGuardName string
	// GossipPort (memberlist, TCP and UDP), ClusterPort (raft and RPC,
	// TCP) and WireGuardPort (UDP) are the agent's ports. With
	// State.Networks, containers reach none of the cluster's ports: not on
	// their own node, and not on the other nodes (State.Peers), whatever
	// address they use. VXLANPort and EncryptedVXLANPort are closed to
	// containers towards every address outside the container networks,
	// since a node takes VXLAN on all its addresses from any peer's address,
	// and a container's egress leaves with its node's address. 0 means
	// 7946, 2377 and 51820.
	GossipPort, ClusterPort, WireGuardPort int
	// MeshMasquerade restores the routing mesh of older versions: a
	// connection DNATed to a backend on another node is masqueraded to this
	// node's VXLAN address, so that backend sees the node instead of the
	// client. Off by default: the backend's node routes the replies back
	// through this node instead (overlay's mesh return rules), and the
	// client's address is kept. Turn it on while nodes without those rules
	// (older agents) may hold backends.
	MeshMasquerade bool
	// KeepBridgeNetfilter leaves net.bridge.bridge-nf-call-iptables alone.
	// By default New sets it to 0 in the namespace, the setting the
	// data-plane recipe proved for same-host and hairpin traffic.
	KeepBridgeNetfilter bool
	// Logger receives sync and error reports; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the names and ranges DESIGN.md gives a node.
func DefaultConfig() Config {
	_, cluster, _ := net.ParseCIDR("10.42.0.0/16")
	return Config{
		TableName:        "shoal",
		BridgeName:       "shoal0",
		VXLANName:        "shoal.vx",
		ClusterCIDR:      cluster,
		MasqueradeEgress: true,
		VXLANPort:        4789,
		// overlay/wireguard's EncryptedVXLANPort and DefaultWireGuardName
		// (lb does not import overlay).
		EncryptedVXLANPort: 4800,
		WireGuardName:      "shoal.wg",
		GossipPort:         7946,
		ClusterPort:        2377,
		WireGuardPort:      51820,
	}
}

// Validate reports the first problem of c, wrapped in ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.TableName == "" || len(c.TableName) > 64:
		return bad("table name %q must be 1-64 bytes", c.TableName)
	case !validIfName(c.BridgeName):
		return bad("bridge name %q is not an interface name", c.BridgeName)
	case !validIfName(c.VXLANName):
		return bad("vxlan name %q is not an interface name", c.VXLANName)
	case c.ClusterCIDR == nil || c.ClusterCIDR.IP.To4() == nil:
		return bad("cluster CIDR must be an IPv4 network")
	case c.VXLANPort < 0 || c.VXLANPort > 65535:
		return bad("VXLAN port %d out of range", c.VXLANPort)
	case c.EncryptedVXLANPort < 0 || c.EncryptedVXLANPort > 65535:
		return bad("encrypted VXLAN port %d out of range", c.EncryptedVXLANPort)
	case c.EncryptedVXLANPort != 0 && !validIfName(c.WireGuardName):
		return bad("WireGuard device name %q is not an interface name", c.WireGuardName)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"gossip", c.GossipPort}, {"cluster", c.ClusterPort}, {"WireGuard", c.WireGuardPort}} {
		if p.port < 0 || p.port > 65535 {
			return bad("%s port %d out of range", p.name, p.port)
		}
	}
	for _, ip := range c.NodeIPs {
		if ip.To4() == nil {
			return bad("node IP %v is not IPv4", ip)
		}
	}
	return nil
}

func validIfName(s string) bool { return s != "" && len(s) < 16 }

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// State is the complete desired load-balancing picture of one node. Set
// replaces whatever was programmed before with exactly this.
//
// Services are in precedence order: when two claim the same name, VIP or
// published port, the earlier one keeps it and the later one is programmed
// without it. The agent lists services oldest first, so a service that
// slipped in on a port already taken never steals it.
type State struct {
	Services []Service
	// Networks are the node's container networks, the default one first.
	// Empty means one network made of Config's bridge, VXLAN device and
	// cluster CIDR, with no filtering (the rule set of a single flat
	// overlay). With networks, the table also keeps them apart and closes
	// them to the outside (see README.md): a VIP is balanced only for
	// sources on its service's network, containers reach only containers of
	// their own networks, and from anywhere else containers and VIPs are
	// reachable only through published ports.
	Networks []Network
	// Peers are the underlay addresses of the other nodes. When not nil,
	// VXLAN (Config.VXLANPort) is accepted from them only.
	Peers []net.IP
	// PeerPorts are the cluster and gossip ports the other nodes advertise
	// (each node's own flags: they may differ from Config's). With
	// Networks, containers reach none of them, TCP or UDP, on any peer:
	// Config's ports alone left a peer whose agent listens elsewhere (say
	// --cluster-port 2400 beside a Docker Swarm on 2377) open to every
	// other node's containers. No service publishes them
	// (node/authz.ReservedPorts), so closing them on all peers costs none.
	PeerPorts []int
	// DNS is the embedded DNS server's address. When set, DNS to it is
	// accepted only from the networks' bridges (containers) and loopback.
	DNS net.IP
}

// Network is one container network as the data plane sees it.
type Network struct {
	// Name matches Service.Network.
	Name string
	// Subnet is the whole network: every node's share and, for networks
	// other than the default one, their VIPs.
	Subnet *net.IPNet
	// VIPs is a VIP range outside Subnet (the default network's
	// 10.43.0.0/16), or nil.
	VIPs *net.IPNet
	// Bridge and VXLAN are the network's devices on this node.
	Bridge, VXLAN string
	// Internal networks have no way out of the cluster: no egress
	// masquerade, and forwarding from their bridge to anything but their
	// own subnet is dropped.
	Internal bool
	// Routed networks (encrypted ones: routed into WireGuard, no inner
	// Ethernet frame) carry no VTEP MAC to tell the ingress node by, so
	// the routing mesh masquerades connections to their remote backends,
	// as MeshMasquerade does for every network: the backend sees the
	// ingress node's address.
	Routed bool
}

// Service is one service as the data plane sees it.
type Service struct {
	// Name is the service name; it only labels chains and maps.
	Name string
	// VIP is the service's virtual IPv4 address. Every port of the VIP is
	// balanced over the backends (Swarm VIP mode), the target ports of
	// Ports included. Nil means no VIP (published ports only).
	VIP net.IP
	// Ports are published on every node: Published → backend:Target. A
	// port of Mode api.PublishHost is published only where the service has
	// local backends, balanced over those only, and never masqueraded: the
	// backend sees the client's address.
	Ports []api.PortConfig
	// Backends are the running, healthy tasks. Empty means connections are
	// refused (TCP reset, ICMP port unreachable) instead of blackholed.
	Backends []Backend
	// Network is the network whose containers may use the VIP (with
	// State.Networks; empty means the first). A service on several
	// networks is one Service per network, each with that network's VIP and
	// its tasks' addresses there.
	Network string
}

// Backend is one task address of a service.
type Backend struct {
	IP net.IP
	// Local is true when the task sits on this node's bridge.
	Local bool
}

// resolve returns the part of st that can be programmed and one error
// (wrapping ErrInvalidState) per part it left out. It is pure and
// deterministic: the same State always keeps the same parts. A service
// without a name, or with the name of an earlier one, is left out whole; a
// bad or taken VIP, a bad or taken published port and a bad backend address
// are left out alone, and the rest of their service is kept.
func (st State) resolve() (State, []error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", ErrInvalidState, fmt.Sprintf(format, args...)))
	}
	out := State{Services: make([]Service, 0, len(st.Services)), Peers: st.Peers, PeerPorts: st.PeerPorts, DNS: st.DNS}
	netNames := map[string]bool{}
	for _, n := range st.Networks {
		switch {
		case n.Name == "" && len(st.Networks) > 1:
			bad("network #%d has no name: left out", len(out.Networks))
		case netNames[n.Name]:
			bad("network %s appears twice: the later one is left out", n.Name)
		case n.Subnet == nil || n.Subnet.IP.To4() == nil || (n.VIPs != nil && n.VIPs.IP.To4() == nil):
			bad("network %s: subnet or VIP range is not IPv4: left out", n.Name)
		case !validIfName(n.Bridge) || !validIfName(n.VXLAN):
			bad("network %s: bridge %q or VXLAN device %q is not an interface name: left out", n.Name, n.Bridge, n.VXLAN)
		default:
			netNames[n.Name] = true
			out.Networks = append(out.Networks, n)
		}
	}
	names := map[string]bool{}
	vips := map[string]string{}
	published := map[string]string{}
	for i, s := range st.Services {
		if s.Name == "" {
			bad("service #%d has no name: left out", i)
			continue
		}
		if names[s.Name] {
			bad("service %s appears twice: the later one is left out", s.Name)
			continue
		}
		names[s.Name] = true
		c := Service{Name: s.Name, Network: s.Network}
		if s.VIP != nil && len(out.Networks) > 0 && s.Network != "" && !netNames[s.Network] {
			bad("service %s: network %s is unknown: served without a VIP", s.Name, s.Network)
			s.VIP = nil
		}
		if s.VIP != nil {
			if s.VIP.To4() == nil {
				bad("service %s: VIP %v is not IPv4: served without a VIP", s.Name, s.VIP)
			} else if other, ok := vips[s.VIP.To4().String()]; ok {
				bad("services %s and %s share VIP %v: %s keeps it, %s is served without a VIP", other, s.Name, s.VIP, other, s.Name)
			} else {
				vips[s.VIP.To4().String()] = s.Name
				c.VIP = s.VIP
			}
		}
		for _, p := range s.Ports {
			if _, err := protoNumber(p.Protocol); err != nil {
				bad("service %s: port %d: %v: left out", s.Name, p.Published, err)
				continue
			}
			if p.Mode != "" && p.Mode != api.PublishIngress && p.Mode != api.PublishHost {
				bad("service %s: port %d: mode %q is neither ingress nor host: left out", s.Name, p.Published, p.Mode)
				continue
			}
			if p.Published < 1 || p.Published > 65535 || p.Target < 1 || p.Target > 65535 {
				bad("service %s: port %d:%d out of range: left out", s.Name, p.Published, p.Target)
				continue
			}
			key := fmt.Sprintf("%s/%d", protoName(p.Protocol), p.Published)
			if other, ok := published[key]; ok {
				if other == s.Name {
					bad("service %s publishes %s twice: the later one is left out", s.Name, key)
				} else {
					bad("services %s and %s both publish %s: %s keeps it, %s's is left out", other, s.Name, key, other, s.Name)
				}
				continue
			}
			published[key] = s.Name
			c.Ports = append(c.Ports, p)
		}
		for _, b := range s.Backends {
			if b.IP.To4() == nil {
				bad("service %s: backend %v is not IPv4: left out", s.Name, b.IP)
				continue
			}
			c.Backends = append(c.Backends, b)
		}
		out.Services = append(out.Services, c)
	}
	return out, errs
}

// protoName normalises a PortConfig protocol ("" means tcp).
func protoName(p string) string {
	if p == "" {
		return "tcp"
	}
	return p
}

func protoNumber(p string) (byte, error) {
	switch protoName(p) {
	case "tcp":
		return 6, nil
	case "udp":
		return 17, nil
	}
	return 0, fmt.Errorf("protocol %q is neither tcp nor udp", p)
}
