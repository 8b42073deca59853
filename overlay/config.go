package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/shoal-org/shoal/overlay/ipam"
	"github.com/shoal-org/shoal/overlay/linkutil"
	"github.com/shoal-org/shoal/overlay/overlayerr"
)

// Sentinel errors of the overlay. Callers test them with errors.Is.
var (
	// ErrInvalidConfig: Config.Validate refused the configuration.
	ErrInvalidConfig = overlayerr.ErrInvalidConfig
	// ErrNoUnderlay: no link in the namespace carries Config.UnderlayIP.
	ErrNoUnderlay = errors.New("underlay address not found on any link")
	// ErrNotSetUp: Attach was called before Setup created the bridge.
	ErrNotSetUp = errors.New("overlay not set up")
	// ErrSubnetFull: every address of the node's subnet is allocated.
	ErrSubnetFull = ipam.ErrSubnetFull
	// ErrConflict: the host-side veth name derived from a container ID is
	// already used by another container (an ID prefix collision).
	ErrConflict = errors.New("veth name already used by another container")
	// ErrInvalidPeer: a peer given to SetPeers is malformed (its subnet is
	// outside the cluster CIDR, overlaps ours or another peer's, or its
	// underlay address is not IPv4).
	ErrInvalidPeer = overlayerr.ErrInvalidPeer
	// ErrPartial: SetPeers could program only part of the desired state; the
	// joined errors name the peers and the entries that failed.
	ErrPartial = overlayerr.ErrPartial
	// ErrClosed: the Overlay was closed.
	ErrClosed = overlayerr.ErrClosed
)

// Defaults of the overlay. Every node of a cluster must agree on VNI and Port.
const (
	DefaultBridgeName  = "shoal0"
	DefaultVXLANName   = "shoal.vx"
	DefaultVNI         = 4242
	DefaultVethPrefix  = "sh"
	DefaultPort        = 4789 // IANA VXLAN port
	DefaultClusterCIDR = "10.42.0.0/16"
	// vxlanOverhead is what VXLAN over IPv4 adds to every frame: outer IPv4
	// (20) + UDP (8) + VXLAN (8) + inner Ethernet (14).
	vxlanOverhead = 50
	// maxIfName is IFNAMSIZ-1, the longest Linux interface name.
	maxIfName = linkutil.MaxIfName
)

// Config configures an Overlay. Build it from DefaultConfig; it must not be
// changed after New.
type Config struct {
	// NodeID is this node's ID; it derives the VTEP MAC (see VTEPMAC) and lets
	// SetPeers skip this node in the peer list.
	NodeID string
	// UnderlayIP is the node's advertise address; the link that carries it is
	// the VXLAN device's underlay (dev) and its MTU bounds the overlay MTU.
	UnderlayIP netip.Addr
	// Subnet is this node's share of ClusterCIDR (e.g. 10.42.3.0/24), given by
	// the leader at join. The bridge gets its first host address (.1), the
	// VXLAN device its network address (.0/32) and containers the rest.
	Subnet netip.Prefix
	// ClusterCIDR contains every node's subnet; only peer routes inside it are
	// ever removed by SetPeers.
	ClusterCIDR netip.Prefix
	// BridgeName and VXLANName are the devices the overlay owns (≤15 chars).
	BridgeName string
	VXLANName  string
	// Routed means VXLANName is not a VXLAN device of ours but an existing
	// layer-3 device that carries the peers' subnets by itself (an
	// encrypted network's WireGuard TUN, overlay/wireguard): the overlay
	// creates no VXLAN device and routes each peer's subnet straight into
	// that device (no gateway, neighbour or FDB entry), never deletes it,
	// and takes MTU (or, when 0, the device's MTU) for its bridge and veths.
	Routed bool
	// VNI is the VXLAN network identifier, Port the UDP destination port.
	VNI  int
	Port int
	// VethPrefix starts the host-side name of every container veth of this
	// overlay (see VethName); each overlay of a node needs its own. 1-7
	// characters.
	VethPrefix string
	// MTU of the VXLAN device, the bridge and every container veth; 0 means
	// the underlay link's MTU minus the 50 bytes of VXLAN encapsulation.
	MTU int
	// StateDir holds the address allocations (ipam.json) so that an agent
	// restart neither hands an address out twice nor renumbers a container.
	StateDir string
	// NetNS is the path of the network namespace to program (e.g.
	// /var/run/netns/h1). Empty means the namespace of the calling process,
	// which is what the agent uses; tests drive throwaway namespaces with it.
	NetNS string
	// ResyncInterval is how often Run re-applies the whole state even
	// without netlink events; 0 disables the timer.
	ResyncInterval time.Duration
	// ResyncTicks, when set, gives the ticks of that resync (the agent's
	// aligned tickers, node/resync, so that it shares a wake-up with the
	// agent's other periodic work); nil: a time.Ticker of its own.
	ResyncTicks func(period time.Duration) (ticks <-chan time.Time, stop func())
	// Logger receives the overlay's logs.
	Logger *slog.Logger
}

// DefaultConfig returns a config with the defaults filled in; the caller sets
// NodeID, UnderlayIP, Subnet and StateDir.
func DefaultConfig() Config {
	return Config{
		ClusterCIDR:    netip.MustParsePrefix(DefaultClusterCIDR),
		BridgeName:     DefaultBridgeName,
		VXLANName:      DefaultVXLANName,
		VNI:            DefaultVNI,
		Port:           DefaultPort,
		VethPrefix:     DefaultVethPrefix,
		ResyncInterval: 30 * time.Second,
		Logger:         slog.Default(),
	}
}

// Validate checks the config; it touches neither the filesystem nor the
// network. A nil Logger is replaced by slog.Default().
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.NodeID == "" {
		bad("NodeID is required")
	}
	if !c.UnderlayIP.Is4() || c.UnderlayIP.IsUnspecified() {
		bad("UnderlayIP must be a usable IPv4 address, got %q", c.UnderlayIP)
	}
	if !c.ClusterCIDR.IsValid() || !c.ClusterCIDR.Addr().Is4() || c.ClusterCIDR != c.ClusterCIDR.Masked() {
		bad("ClusterCIDR must be an IPv4 network prefix, got %q", c.ClusterCIDR)
	}
	switch {
	case !c.Subnet.IsValid() || !c.Subnet.Addr().Is4():
		bad("Subnet must be an IPv4 prefix, got %q", c.Subnet)
	case c.Subnet != c.Subnet.Masked():
		bad("Subnet %s has host bits set", c.Subnet)
	case c.Subnet.Bits() > 30:
		bad("Subnet %s is too small (at most /30)", c.Subnet)
	case c.ClusterCIDR.IsValid() && (c.Subnet.Bits() < c.ClusterCIDR.Bits() || !c.ClusterCIDR.Contains(c.Subnet.Addr())):
		bad("Subnet %s is not inside ClusterCIDR %s", c.Subnet, c.ClusterCIDR)
	}
	if c.ClusterCIDR.IsValid() && c.UnderlayIP.IsValid() && c.ClusterCIDR.Contains(c.UnderlayIP) {
		bad("UnderlayIP %s is inside ClusterCIDR %s", c.UnderlayIP, c.ClusterCIDR)
	}
	for _, n := range []struct{ field, name string }{{"BridgeName", c.BridgeName}, {"VXLANName", c.VXLANName}} {
		if err := linkutil.CheckIfName(n.name); err != nil {
			bad("%s: %v", n.field, err)
		}
	}
	if c.VethPrefix == "" || len(c.VethPrefix) > 7 || linkutil.CheckIfName(c.VethPrefix) != nil {
		bad("VethPrefix must have 1-7 interface-name characters, got %q", c.VethPrefix)
	}
	if c.BridgeName != "" && c.BridgeName == c.VXLANName {
		bad("BridgeName and VXLANName must differ")
	}
	if c.VNI < 1 || c.VNI > 1<<24-1 {
		bad("VNI must be in 1..16777215, got %d", c.VNI)
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("Port must be in 1..65535, got %d", c.Port)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		bad("MTU must be 0 (derived) or in 576..65535, got %d", c.MTU)
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		bad("StateDir must be an absolute path, got %q", c.StateDir)
	}
	if c.NetNS != "" && !filepath.IsAbs(c.NetNS) {
		bad("NetNS must be empty or an absolute path, got %q", c.NetNS)
	}
	if c.ResyncInterval < 0 {
		bad("ResyncInterval must not be negative")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return errors.Join(errs...)
}
