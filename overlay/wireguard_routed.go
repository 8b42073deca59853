package overlay

// Routed overlays: an encrypted network's containers reach the other
// nodes through the WireGuard TUN device directly (Config.Routed), not
// through a VXLAN device inside the tunnel.
//
// WireGuard is a layer-3 device that already knows which node a packet is
// for: every peer's allowed IPs hold its share of each encrypted network
// (PeersConfig), so a route per peer share "via dev shoal.wg" is all the
// kernel needs. No VXLAN device, gateway, neighbour or FDB entry: there is
// no Ethernet inside the tunnel. What that buys is speed: the kernel hands
// TCP to the TUN device as 64 KiB segments (TSO, the TUN's virtio header)
// and wireguard-go takes them apart, encrypts and sends them in batches,
// and coalesces on the way in (GRO), where VXLAN inside WireGuard meant a
// system call per 1.4 KiB packet each way (README.md has the figures).
//
// Networks stay apart as they were: a peer can only send from its own
// shares (WireGuard drops a source outside the sender's allowed IPs), and
// the lb forward filter accepts from the route device only what stays
// inside one network's subnet (lb treats the device as the network's
// "VXLAN" device, node/netloop/lbsync.go).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/overlay/linkutil"
)

// setupRoutedLocked is Setup of a routed overlay: the bridge, forwarding,
// and one route per peer into the route device, which must exist (it
// belongs to WireGuard; Run re-applies when it comes back). o.mu must be
// held.
func (o *Overlay) setupRoutedLocked(ctx context.Context) error {
	dev, err := o.h.LinkByName(o.cfg.VXLANName)
	if err != nil {
		return fmt.Errorf("find %s, the device peers are routed through: %w", o.cfg.VXLANName, err)
	}
	mtu := o.cfg.MTU
	if mtu == 0 {
		mtu = dev.Attrs().MTU
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := o.ensureBridge(mtu); err != nil {
		return err
	}
	if err := o.setSysctls(); err != nil {
		return err
	}
	if err := o.ensureRoutedAddr(dev); err != nil {
		return err
	}
	o.mtu = mtu
	o.setUp = true
	errs := o.applyRoutedPeersLocked()
	links, listErr := o.h.LinkList()
	o.pruneAllocationsLocked(links, listErr)
	if err := o.guard.Sync(); err != nil { // before the veths go back
		errs = append(errs, err)
	}
	errs = append(errs, o.reattachVethsLocked(links, listErr)...)
	if len(errs) > 0 {
		return fmt.Errorf("setup: %w: %w", ErrPartial, errors.Join(errs...))
	}
	return nil
}

// routedAddr is the address the overlay puts on the route device: its
// subnet's network address (as the VXLAN device has it in a VXLAN
// overlay), with the length of the whole ClusterCIDR (the network) and no
// prefix route. It is what the kernel picks as source for packets the
// node itself sends into the network through the device, and what the load
// balancer's masquerade of mesh traffic picks (the address of the device
// whose mask covers the destination): an address inside the network, which
// the other nodes' filters and WireGuard let in, and which is routed back
// here. Each network's address matches only its own destinations.
func (o *Overlay) routedAddr() *netlink.Addr {
	_, network := u32Range(o.cfg.Subnet)
	return &netlink.Addr{
		IPNet: linkutil.PrefixToIPNet(netip.PrefixFrom(network, o.cfg.ClusterCIDR.Bits())),
		Flags: unix.IFA_F_NOPREFIXROUTE,
	}
}

// ensureRoutedAddr adds routedAddr to the route device unless it is there;
// the device's other addresses (the tunnel's, other networks') stay.
func (o *Overlay) ensureRoutedAddr(dev netlink.Link) error {
	want := o.routedAddr()
	addrs, err := o.h.AddrList(dev, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list addresses of %s: %w", o.cfg.VXLANName, err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == want.IPNet.String() {
			return nil
		}
	}
	if err := o.h.AddrReplace(dev, want); err != nil {
		return fmt.Errorf("add address %s to %s: %w", want.IPNet, o.cfg.VXLANName, err)
	}
	return nil
}

// teardownRoutedLocked removes what the overlay put on the route device:
// its routes and its address. The device itself belongs to WireGuard.
func (o *Overlay) teardownRoutedLocked() []error {
	o.peers = nil
	errs := o.applyRoutedPeersLocked()
	dev, err := o.h.LinkByName(o.cfg.VXLANName)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return errs
	}
	if err == nil {
		err = o.h.AddrDel(dev, o.routedAddr())
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			err = nil
		}
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("remove address %s from %s: %w", o.routedAddr().IPNet, o.cfg.VXLANName, err))
	}
	return errs
}

// applyRoutedPeersLocked makes the routes through the route device inside
// this overlay's ClusterCIDR exactly one per peer subnet: adds first, then
// deletes leftovers. Routes outside ClusterCIDR (the tunnel prefix, other
// networks') are not touched. A missing device with no peers wanted is
// fine (Teardown after WireGuard stopped). o.mu must be held.
func (o *Overlay) applyRoutedPeersLocked() []error {
	dev, err := o.h.LinkByName(o.cfg.VXLANName)
	if err != nil {
		if len(o.peers) == 0 && errors.As(err, &netlink.LinkNotFoundError{}) {
			return nil
		}
		return []error{fmt.Errorf("find %s, the device peers are routed through: %w", o.cfg.VXLANName, err)}
	}
	idx := dev.Attrs().Index
	var errs []error
	// Listed once: the routes in place are not written again (see
	// applyPeersLocked), and the same list gives the leftovers. A failed
	// listing writes every route and deletes only what it did list.
	routes, err := o.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: idx}, netlink.RT_FILTER_OIF)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		errs = append(errs, fmt.Errorf("list routes of %s: %w", o.cfg.VXLANName, err))
	}
	have := map[netip.Prefix]bool{}
	if err == nil {
		for _, r := range routes {
			if r.Dst == nil || r.Scope != netlink.SCOPE_LINK || r.Gw != nil {
				continue
			}
			if dst, ok := linkutil.IPNetToPrefix(r.Dst); ok {
				have[dst] = true
			}
		}
	}
	want := map[netip.Prefix]bool{}
	for _, p := range o.peers {
		want[p.Subnet] = true
		if have[p.Subnet] {
			continue
		}
		if err := o.h.RouteReplace(&netlink.Route{
			LinkIndex: idx,
			Dst:       linkutil.PrefixToIPNet(p.Subnet),
			Scope:     netlink.SCOPE_LINK,
		}); err != nil {
			errs = append(errs, fmt.Errorf("peer %s (%s): set route via %s: %w", p.NodeID, p.Subnet, o.cfg.VXLANName, err))
		}
	}
	return append(errs, o.deleteStaleRoutesLocked(routes, want)...)
}
