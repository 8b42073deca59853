// Package linkutil holds the netlink and namespace steps both the overlay
// and its WireGuard side (overlay/wireguard) take on their devices:
// entering a network namespace on a thread of its own, making one address
// a link's only one (or its only one inside a prefix), and the rule for
// Linux interface names; and those the overlay shares with its other
// parts (sysctls, a link read in another namespace), so no part imports
// the overlay.
package linkutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	goruntime "runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// MaxIfName is IFNAMSIZ-1, the longest Linux interface name.
const MaxIfName = 15

// DoInNS runs fn on a fresh OS thread that entered ns, and waits for it. The
// thread goes back to its original namespace afterwards; if that fails, the
// goroutine exits still locked, which makes the Go runtime discard the
// thread rather than reuse it in the wrong namespace.
func DoInNS(ns netns.NsHandle, fn func() error) error {
	errCh := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			errCh <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			goruntime.UnlockOSThread()
			errCh <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errCh <- errors.Join(ferr, fmt.Errorf("return to original network namespace: %w", err))
			return // thread stays locked and is destroyed
		}
		goruntime.UnlockOSThread()
		errCh <- ferr
	}()
	return <-errCh
}

// EnsureAddr makes want the only IPv4 address of l: it adds want first, then
// removes the others (a subnet change leaves the old one behind).
func EnsureAddr(h *netlink.Handle, l netlink.Link, want netip.Prefix) error {
	return ensureAddr(h, l, want, netip.Prefix{})
}

// EnsureAddrIn makes want the only IPv4 address of l inside within: it
// adds want first, then removes the other addresses inside within. The
// addresses outside within are others' and stay (the WireGuard device
// owns its tunnel address, the routed overlays theirs on the same link).
func EnsureAddrIn(h *netlink.Handle, l netlink.Link, want, within netip.Prefix) error {
	return ensureAddr(h, l, want, within.Masked())
}

// ensureAddr is EnsureAddr limited to the addresses inside within (all
// when within is the zero Prefix).
func ensureAddr(h *netlink.Handle, l netlink.Link, want, within netip.Prefix) error {
	name := l.Attrs().Name
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list addresses of %s: %w", name, err)
	}
	have := false
	for _, a := range addrs {
		if p, ok := IPNetToPrefix(a.IPNet); ok && a.IP.Equal(net.IP(want.Addr().AsSlice())) && p.Bits() == want.Bits() {
			have = true
		}
	}
	if !have {
		if err := h.AddrReplace(l, &netlink.Addr{IPNet: &net.IPNet{
			IP: net.IP(want.Addr().AsSlice()), Mask: net.CIDRMask(want.Bits(), 32),
		}}); err != nil {
			return fmt.Errorf("add address %s to %s: %w", want, name, err)
		}
	}
	var errs []error
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if a.IP.Equal(net.IP(want.Addr().AsSlice())) && ones == want.Bits() {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP); within.IsValid() && (!ok || !within.Contains(ip.Unmap())) {
			continue
		}
		if err := h.AddrDel(l, &a); err != nil {
			errs = append(errs, fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, name, err))
		}
	}
	return errors.Join(errs...)
}

// IPNetToPrefix converts a netlink IPv4 network back to a prefix.
func IPNetToPrefix(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones).Masked(), true
}

// PrefixToIPNet converts an IPv4 prefix to the form netlink wants.
func PrefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// CheckIfName reports whether name is usable as a Linux interface name.
func CheckIfName(name string) error {
	if name == "" || len(name) > MaxIfName {
		return fmt.Errorf("interface name %q must have 1..%d characters", name, MaxIfName)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("interface name %q is reserved", name)
	}
	for _, r := range name {
		if r <= ' ' || r == '/' || r == ':' || r > '~' {
			return fmt.Errorf("interface name %q contains %q", name, r)
		}
	}
	return nil
}

// LinkMAC reads the MAC of link index in the namespace netnsid names (as
// seen from the calling thread's namespace; -1: that namespace itself):
// RTM_GETLINK with IFLA_TARGET_NETNSID (Linux 4.20) reads a veth's peer
// without a path to its namespace and without entering it.
func LinkMAC(index, netnsid int) ([]byte, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	if netnsid >= 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_TARGET_NETNSID, nl.Uint32Attr(uint32(netnsid))))
	}
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("%d answers for link %d", len(msgs), index)
	}
	l, err := netlink.LinkDeserialize(nil, msgs[0])
	if err != nil {
		return nil, err
	}
	return l.Attrs().HardwareAddr, nil
}
