package overlay

// Rebuilding the address allocations from the kernel.
//
// ipam.json is written with an fsync, but a file torn anyway (a disk that
// lies, an edit) is set aside by ipam.Open, which starts empty. Starting
// empty is wrong while containers run: the agent re-adopts them, and the
// next container started could be handed an address one of them holds.
// The kernel still knows every attached container of this overlay: the
// host side of its veth is named vethName(VethPrefix, ID) and carries the
// full ID as its alias (Attach sets both), and the container side's MAC
// is containerMAC(IP), 0a:58 and the four bytes of its address. The
// container side lives in the container's namespace, which the agent has
// no path to here; the host side's link-netnsid names it, and RTM_GETLINK
// with IFLA_TARGET_NETNSID (Linux 4.20) reads a link in the namespace a
// netnsid names without entering it.

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/shoal-org/shoal/overlay/ipam"
	"github.com/shoal-org/shoal/overlay/linkutil"
)

// attachedInKernel returns the containers plugged into this overlay as the
// kernel shows them (container ID → address), and one error per veth of
// this overlay whose address could not be read.
func (o *Overlay) attachedInKernel() (map[string]netip.Addr, []error) {
	links, err := o.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, []error{fmt.Errorf("list links: %w", err)}
	}
	out := map[string]netip.Addr{}
	var errs []error
	for _, l := range links {
		attrs := l.Attrs()
		id := attrs.Alias
		if l.Type() != "veth" || id == "" || attrs.Name != vethName(o.cfg.VethPrefix, id) {
			continue
		}
		var mac []byte
		err := o.inNS(func() error {
			var err error
			mac, err = linkutil.LinkMAC(attrs.ParentIndex, attrs.NetNsID)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("container %s: read the address of %s's peer: %w", id, attrs.Name, err))
			continue
		}
		if len(mac) != 6 || mac[0] != 0x0a || mac[1] != 0x58 {
			errs = append(errs, fmt.Errorf("container %s: the peer of %s has MAC %x, not one Attach gives", id, attrs.Name, mac))
			continue
		}
		ip := netip.AddrFrom4([4]byte{mac[2], mac[3], mac[4], mac[5]})
		if !o.cfg.Subnet.Contains(ip) {
			errs = append(errs, fmt.Errorf("container %s: the peer of %s holds %s, outside %s", id, attrs.Name, ip, o.cfg.Subnet))
			continue
		}
		out[id] = ip
	}
	return out, errs
}

// restoreAllocations gives the ipam the containers attached in the kernel,
// after Open set a corrupt allocation file aside. It is best effort:
// what cannot be read is logged, and its address may be handed out again.
func (o *Overlay) restoreAllocations() {
	found, errs := o.attachedInKernel()
	if err := o.ipam.Restore(found); err != nil {
		errs = append(errs, err)
	}
	log := o.cfg.Logger.Info
	if len(errs) > 0 {
		log = o.cfg.Logger.Warn
	}
	log("overlay: address allocations rebuilt from the attached containers' veths",
		"containers", len(found), "err", errors.Join(errs...))
}

// pruneAllocationsLocked releases the addresses of containers whose veth
// is gone from the kernel (links and listErr are a link dump of the
// namespace): their container is gone too, since deleting either end of a
// veth deletes both and a container's namespace takes its end along. The
// runtime's cleanup of a container the agent finds half-made after a
// crash (killed between Attach and saving the container's record), or
// removes before the overlay is up again after a restart, detaches it
// while no overlay is open: the Detach reached nothing, and its address
// stayed allocated in ipam.json for good, one fewer for every such crash
// (of a network's share, 13 addresses at the smallest). Run's resync
// catches a veth that outlived its namespace for a moment.
//
// Only a complete dump is trusted, and a veth of the container's name
// counts whatever its alias: an address is never freed while a link might
// still carry it. Attach holds o.mu (shared) from the allocation until the
// veth exists; o.mu must be held exclusively here.
func (o *Overlay) pruneAllocationsLocked(links []netlink.Link, listErr error) {
	if listErr != nil {
		return
	}
	attached := o.ipam.All()
	if len(attached) == 0 {
		return
	}
	names := make(map[string]bool, len(links))
	for _, l := range links {
		names[l.Attrs().Name] = true
	}
	for _, id := range ipam.SortedIDs(attached) {
		if names[vethName(o.cfg.VethPrefix, id)] {
			continue
		}
		if err := o.ipam.Release(id); err != nil {
			o.cfg.Logger.Warn("overlay: releasing the address of a container without a veth", "container", id, "err", err)
			continue
		}
		o.cfg.Logger.Info("overlay: released the address of a container whose veth is gone", "container", id, "ip", attached[id].String())
	}
}
