package overlay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/shoal-org/shoal/overlay/guard"
	"github.com/shoal-org/shoal/overlay/ipam"
	"github.com/shoal-org/shoal/overlay/linkutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// containerIfName is the name of the container's side of its veth on its
// first network.
const containerIfName = "eth0"

// VethName returns the name of the host side of a container's veth: "sh"
// plus the first 10 characters of the ID when it is made of letters, digits,
// '-' and '_' (so `ip link` shows which container it is), else "sh" plus 10
// hex digits of its SHA-256. The full ID is also set as the link's alias,
// which Attach uses to detect a prefix collision.
func VethName(containerID string) string { return vethName(DefaultVethPrefix, containerID) }

// vethName is VethName with another prefix; the ID part is shortened so the
// name fits in 15 characters.
func vethName(prefix, containerID string) string {
	n := maxIfName - len(prefix)
	plain := containerID != ""
	for _, r := range containerID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			plain = false
			break
		}
	}
	n = min(n, 10)
	if plain {
		return prefix + containerID[:min(n, len(containerID))]
	}
	sum := sha256.Sum256([]byte(containerID))
	return prefix + hex.EncodeToString(sum[:5])[:n]
}

// AttachOptions say how a container joins this overlay when it is on
// several networks.
type AttachOptions struct {
	// IfName is the interface in the container ("eth0" when empty).
	IfName string
	// Primary gives the container its default route through this overlay
	// (the first network of a container is its primary one).
	Primary bool
	// Routes are sent through this overlay's bridge when it is not the
	// primary one: the network's whole subnet (other nodes' containers and
	// the VIPs), and for the default network the VIP range.
	Routes []netip.Prefix
}

// containerMAC derives the container's MAC from its IP (0a:58:a.b.c.d, as
// the CNI bridge plugin does): when an address is reused, neighbour caches
// elsewhere that still map it to a MAC stay right.
func containerMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, b[0], b[1], b[2], b[3]}
}

// Attach plugs the container whose network namespace is bind-mounted at
// netnsPath into the bridge and returns its IP: a veth pair whose host side
// (VethName) joins the bridge with the overlay MTU and the hairpin flag on
// (same-host and hairpin service traffic needs it), and whose other side
// becomes eth0 in the container with the allocated address, its derived MAC
// (containerMAC), the overlay MTU and a default route via the bridge; lo is
// brought up too. The bridge takes from that port only IPv4 and ARP sent
// from that MAC and address (overlay/guard).
//
// Attach is idempotent: for an attached container it repairs what drifted
// and returns the same IP, which also survives agent restarts (the
// allocation is persisted). It needs a successful Setup first (ErrNotSetUp).
// If it fails for a container it had just allocated an address to, it
// removes what it created and releases the address.
func (o *Overlay) Attach(ctx context.Context, containerID, netnsPath string) (string, error) {
	return o.AttachWith(ctx, containerID, netnsPath, AttachOptions{Primary: true})
}

// AttachWith is Attach with the container's interface name and routes
// chosen by the caller (a container on several networks has one interface
// per network, and only the first carries the default route).
func (o *Overlay) AttachWith(ctx context.Context, containerID, netnsPath string, opts AttachOptions) (string, error) {
	if opts.IfName == "" {
		opts.IfName = containerIfName
	}
	if containerID == "" || netnsPath == "" {
		return "", fmt.Errorf("attach container %q at %q: container ID and namespace path are required", containerID, netnsPath)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	// Shared: attaches of different containers run in parallel (each
	// only touches its own veth and the ipam, which has its own lock); a
	// burst of starts used to queue here one veth at a time. The caller
	// (the runtime, one lifecycle lock per container) never attaches or
	// detaches one container twice at once.
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.h == nil {
		return "", fmt.Errorf("attach container %s: %w", containerID, ErrClosed)
	}
	if !o.setUp {
		return "", fmt.Errorf("attach container %s: %w", containerID, ErrNotSetUp)
	}
	br, err := o.h.LinkByName(o.cfg.BridgeName)
	if err != nil {
		return "", fmt.Errorf("attach container %s: find bridge %s: %w (%w)", containerID, o.cfg.BridgeName, err, ErrNotSetUp)
	}
	ip, fresh, err := o.ipam.Allocate(containerID)
	if err != nil {
		return "", fmt.Errorf("attach container %s: %w", containerID, err)
	}
	if err := o.plugLocked(containerID, netnsPath, ip, br, opts); err != nil {
		if fresh {
			err = errors.Join(err, o.deleteVethLocked(containerID),
				o.guard.Remove(o.guardPort(containerID, ip)), o.ipam.Release(containerID))
		}
		return "", fmt.Errorf("attach container %s: %w", containerID, err)
	}
	return ip.String(), nil
}

// plugLocked creates or repairs the veth of a container. o.mu must be held
// (shared is enough).
func (o *Overlay) plugLocked(id, netnsPath string, ip netip.Addr, br netlink.Link, opts AttachOptions) error {
	ifName := opts.IfName
	cns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", netnsPath, err)
	}
	defer cns.Close()
	ch, err := netlink.NewHandleAt(cns)
	if err != nil {
		return fmt.Errorf("open netlink handle in %s: %w", netnsPath, err)
	}
	defer ch.Close()

	name := vethName(o.cfg.VethPrefix, id)
	host, err := o.h.LinkByName(name)
	switch {
	case err == nil:
		if alias := host.Attrs().Alias; alias != "" && alias != id {
			return fmt.Errorf("%w: %s belongs to container %s", ErrConflict, name, alias)
		}
		// Adopt it only if its peer is the eth0 of this namespace.
		if eth0, err := ch.LinkByName(ifName); err != nil || eth0.Attrs().Index != host.Attrs().ParentIndex {
			if err := o.h.LinkDel(host); err != nil {
				return fmt.Errorf("delete stale veth %s: %w", name, err)
			}
			host = nil
		}
	case errors.As(err, &netlink.LinkNotFoundError{}):
		host = nil
	default:
		return fmt.Errorf("find veth %s: %w", name, err)
	}

	// The port carries only this container's frames from its first one
	// (overlay/guard): its entries go in before the veth exists.
	if err := o.guard.Add(o.guardPort(id, ip)); err != nil {
		return err
	}

	if host == nil {
		if stale, err := ch.LinkByName(ifName); err == nil {
			if err := ch.LinkDel(stale); err != nil {
				return fmt.Errorf("delete stale %s in %s: %w", ifName, netnsPath, err)
			}
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.MasterIndex = name, o.mtu, br.Attrs().Index
		veth := &netlink.Veth{
			LinkAttrs:        attrs,
			PeerName:         ifName,
			PeerNamespace:    netlink.NsFd(cns),
			PeerMTU:          uint32(o.mtu),
			PeerHardwareAddr: containerMAC(ip),
		}
		if err := o.h.LinkAdd(veth); err != nil {
			return fmt.Errorf("create veth %s: %w", name, err)
		}
		if host, err = o.h.LinkByName(name); err != nil {
			return fmt.Errorf("find new veth %s: %w", name, err)
		}
	}

	// Host side.
	if host.Attrs().Alias != id {
		if err := o.h.LinkSetAlias(host, id); err != nil {
			return fmt.Errorf("set alias of %s: %w", name, err)
		}
	}
	if host.Attrs().MTU != o.mtu {
		if err := o.h.LinkSetMTU(host, o.mtu); err != nil {
			return fmt.Errorf("set MTU of %s: %w", name, err)
		}
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		if err := o.h.LinkSetMasterByIndex(host, br.Attrs().Index); err != nil {
			return fmt.Errorf("attach %s to %s: %w", name, o.cfg.BridgeName, err)
		}
	}
	if err := o.h.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("set hairpin on %s: %w", name, err)
	}
	if err := o.h.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}

	// Container side.
	eth0, err := ch.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", ifName, netnsPath, err)
	}
	if eth0.Attrs().MTU != o.mtu {
		if err := ch.LinkSetMTU(eth0, o.mtu); err != nil {
			return fmt.Errorf("set MTU of %s in %s: %w", ifName, netnsPath, err)
		}
	}
	// The guard lets the port carry this MAC only.
	if mac := containerMAC(ip); eth0.Attrs().HardwareAddr.String() != mac.String() {
		if err := ch.LinkSetHardwareAddr(eth0, mac); err != nil {
			return fmt.Errorf("set MAC %s of %s in %s: %w", mac, ifName, netnsPath, err)
		}
	}
	if err := linkutil.EnsureAddr(ch, eth0, netip.PrefixFrom(ip, o.cfg.Subnet.Bits())); err != nil {
		return fmt.Errorf("in %s: %w", netnsPath, err)
	}
	if err := ch.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("bring %s up in %s: %w", ifName, netnsPath, err)
	}
	if lo, err := ch.LinkByName("lo"); err != nil {
		return fmt.Errorf("find lo in %s: %w", netnsPath, err)
	} else if err := ch.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up in %s: %w", netnsPath, err)
	}
	if opts.Primary {
		if err := ch.RouteReplace(&netlink.Route{
			LinkIndex: eth0.Attrs().Index,
			Gw:        o.BridgeIP(),
			Scope:     netlink.SCOPE_UNIVERSE,
		}); err != nil {
			return fmt.Errorf("set default route via %s in %s: %w", o.BridgeIP(), netnsPath, err)
		}
		return nil
	}
	for _, p := range opts.Routes {
		if err := ch.RouteReplace(&netlink.Route{
			LinkIndex: eth0.Attrs().Index,
			Dst:       linkutil.PrefixToIPNet(p.Masked()),
			Gw:        o.BridgeIP(),
			Scope:     netlink.SCOPE_UNIVERSE,
		}); err != nil {
			return fmt.Errorf("set route %s via %s in %s: %w", p, o.BridgeIP(), netnsPath, err)
		}
	}
	return nil
}

// Detach unplugs a container: it deletes the host side of its veth (the
// kernel deletes the other side), takes its MAC and address off the
// anti-spoofing table and releases its address. It is idempotent and
// succeeds for an unknown container; netnsPath is not needed (the
// namespace may already be gone) and may be empty.
func (o *Overlay) Detach(ctx context.Context, containerID, netnsPath string) error {
	if containerID == "" {
		return errors.New("detach: container ID is required")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.RLock() // shared, as in AttachWith
	defer o.mu.RUnlock()
	if o.h == nil {
		return fmt.Errorf("detach container %s: %w", containerID, ErrClosed)
	}
	if err := o.deleteVethLocked(containerID); err != nil {
		return fmt.Errorf("detach container %s: %w", containerID, err)
	}
	// Before the address goes: a failed removal is retried by the next
	// Detach, which needs the address to name the entries.
	if ip, ok := o.ipam.Lookup(containerID); ok {
		if err := o.guard.Remove(o.guardPort(containerID, ip)); err != nil {
			return fmt.Errorf("detach container %s: %w", containerID, err)
		}
	}
	if err := o.ipam.Release(containerID); err != nil {
		return fmt.Errorf("detach container %s: %w", containerID, err)
	}
	return nil
}

// deleteVethLocked deletes the host side of a container's veth, if it exists
// and belongs to that container. o.mu must be held (shared is enough).
func (o *Overlay) deleteVethLocked(id string) error {
	name := vethName(o.cfg.VethPrefix, id)
	l, err := o.h.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find veth %s: %w", name, err)
	}
	if alias := l.Attrs().Alias; alias != "" && alias != id {
		return nil // another container's (prefix collision): not ours to delete
	}
	if err := o.h.LinkDel(l); err != nil && !errors.As(err, &netlink.LinkNotFoundError{}) {
		return fmt.Errorf("delete veth %s: %w", name, err)
	}
	return nil
}

// guardPort is the guard's view of a container's port (overlay/guard).
func (o *Overlay) guardPort(id string, ip netip.Addr) guard.Port {
	return guard.Port{IfName: vethName(o.cfg.VethPrefix, id), MAC: containerMAC(ip), IP: ip}
}

// guardPortsLocked lists the ports the guard table holds when it is
// rebuilt: one per container with an address, unless its veth name
// belongs to another container (a prefix collision). A container whose
// veth does not exist yet (an Attach under way) or any more (a Detach to
// come) is included: its entries name a port only it can have. o.mu must
// be held: the guard calls it from Sync (Setup) and from an Add that
// rebuilds (Attach), both under o.mu.
func (o *Overlay) guardPortsLocked() ([]guard.Port, error) {
	attached := o.ipam.All()
	links, err := o.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list links: %w", err)
	}
	aliasOf := make(map[string]string, len(links))
	for _, l := range links {
		aliasOf[l.Attrs().Name] = l.Attrs().Alias
	}
	var ports []guard.Port
	for _, id := range ipam.SortedIDs(attached) {
		p := o.guardPort(id, attached[id])
		if alias := aliasOf[p.IfName]; alias != "" && alias != id {
			continue
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// Attached returns the containers that hold an address (container ID →
// IP), so the agent can Detach those that no longer exist after a crash.
func (o *Overlay) Attached() map[string]netip.Addr { return o.ipam.All() }

// AddressOf returns the address of an attached container on this overlay.
func (o *Overlay) AddressOf(containerID string) (netip.Addr, bool) { return o.ipam.Lookup(containerID) }
