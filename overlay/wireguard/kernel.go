package wireguard

// Kernel WireGuard, where the kernel has it.
//
// Detection (KernelSupported): a throwaway link of type wireguard is made
// in the device's namespace, wgctrl reads it back over the kernel's
// generic netlink family "wireguard", and it is deleted. Both halves are
// needed (the link type from rtnetlink, the configuration from generic
// netlink), and making the link is what loads the module where it is one.
// The answer is cached per namespace for the process's life: a module
// loaded later is used by the next agent. A kernel without it answers
// EOPNOTSUPP ("Unknown device type"), as this machine's does, and the
// node runs userspace wireguard-go (wgproc.go) instead.
//
// The kernel path: the device is a link of type wireguard named like the
// TUN device (shoal.wg), configured through wgctrl with the same
// DeviceConfig (desired.go) the userspace path renders as UAPI text, and
// given the same MTU, tunnel address and routes (linkUp, the routed
// overlays). Kernel WireGuard needs no process: its sessions live in the
// kernel and outlive the agent by themselves. A new agent adopts a link
// that holds this node's key and port (DecideKernel, pure) and updates its
// peers in place; anything else under the name (a stale TUN device, a
// wireguard link with another key) is deleted and a new link made. Close
// and leaving the cluster (DeleteKernelDevice) delete the link, which
// removes the routes into it. Done closes when the link is deleted
// underneath (a netlink subscription), and the agent makes it again.
//
// The kernel path cannot run on this machine (no WireGuard module); its
// steps are tested with a fake kernelOps (the calls and their order), and
// the wgtypes configuration it sends is tested against a real wireguard-go
// device through wgctrl (overlay/README.md, "Kernel WireGuard").

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/shoal-org/shoal/overlay/linkutil"
)

// Backends of the WireGuard device (WireGuardConfig.Backend,
// WireGuard.Backend).
const (
	// BackendKernel is the kernel's WireGuard: a link of type wireguard.
	BackendKernel = "kernel"
	// BackendUserspace is wireguard-go on a TUN device, in the device
	// process (wgdevice).
	BackendUserspace = "userspace"
)

// kernelLinkType is the link type of kernel WireGuard devices.
const kernelLinkType = "wireguard"

// kernelOps are the host steps of the kernel path, in the device's
// namespace. The real ones are nsKernelOps; tests give a fake to check the
// calls and their order.
type kernelOps interface {
	// LinkType is the type of the link named name, "" when there is none.
	LinkType(name string) string
	// LinkAdd makes a link of type wireguard named name.
	LinkAdd(name string) error
	// LinkDel deletes the link named name (none: no error).
	LinkDel(name string) error
	// Device reads the WireGuard device name (key, port, peers).
	Device(name string) (*wgtypes.Device, error)
	// Configure applies cfg to the WireGuard device name.
	Configure(name string, cfg wgtypes.Config) error
	// LinkUp gives the link its MTU and addr (the only address inside
	// within) and brings it up.
	LinkUp(name string, mtu int, addr, within netip.Prefix) error
	// Watch calls gone (once) when the link named name is deleted, until
	// stop is called.
	Watch(name string, gone func()) (stop func(), err error)
}

// DecideKernel says whether a kernel WireGuard device found under the
// device's name is adopted (kept, peers and sessions included) or
// replaced, and why: link is the type of the link bearing the name (""
// none), dev what it reported (devErr an error reading it), want the
// node's key pair and port the wanted UDP port. It is pure.
func DecideKernel(link string, dev *wgtypes.Device, devErr error, want KeyPair, port int) (adopt bool, why string) {
	switch {
	case link == "":
		return false, "no device"
	case link != kernelLinkType:
		return false, "the device name is a " + link + " link, not kernel WireGuard"
	case devErr != nil || dev == nil:
		return false, fmt.Sprintf("unreadable device: %v", devErr)
	case dev.PublicKey != wgtypes.Key(want.Public):
		return false, "it holds another private key"
	case dev.ListenPort != port:
		return false, fmt.Sprintf("it listens on port %d, not %d", dev.ListenPort, port)
	}
	return true, "same key, port and interface"
}

// kernelUp adopts or makes the kernel device of cfg with the key pair
// keys: an adoptable link (DecideKernel) is kept and its peers' keys are
// returned (never nil); else whatever has the name is deleted, a link
// made and given its key and port with no peers. Then its MTU, tunnel
// address and state are set (linkUp's rules). A device it made is
// deleted again when a later step fails.
func kernelUp(ops kernelOps, cfg WireGuardConfig, keys KeyPair) (adopted bool, peers [][32]byte, why string, err error) {
	name := cfg.Name
	link := ops.LinkType(name)
	var dev *wgtypes.Device
	var devErr error
	if link == kernelLinkType {
		dev, devErr = ops.Device(name)
	}
	adopted, why = DecideKernel(link, dev, devErr, keys, cfg.Port)
	peers = [][32]byte{} // known: a new device has none
	if adopted {
		for _, p := range dev.Peers {
			peers = append(peers, [32]byte(p.PublicKey))
		}
	} else {
		if link != "" {
			if err := ops.LinkDel(name); err != nil {
				return false, nil, why, fmt.Errorf("delete %s (%s): %w", name, why, err)
			}
		}
		if err := ops.LinkAdd(name); err != nil {
			return false, nil, why, fmt.Errorf("create kernel WireGuard device %s: %w", name, err)
		}
		key, port := wgtypes.Key(keys.Private), cfg.Port
		if err := ops.Configure(name, wgtypes.Config{PrivateKey: &key, ListenPort: &port, ReplacePeers: true}); err != nil {
			return false, nil, why, errors.Join(fmt.Errorf("configure kernel WireGuard device %s: %w", name, err), ops.LinkDel(name))
		}
	}
	addr := netip.PrefixFrom(cfg.TunnelIP, cfg.TunnelCIDR.Bits())
	if err := ops.LinkUp(name, cfg.MTU, addr, cfg.TunnelCIDR); err != nil {
		if !adopted {
			err = errors.Join(err, ops.LinkDel(name))
		}
		return adopted, nil, why, err
	}
	return adopted, peers, why, nil
}

// nsKernelOps are the real kernelOps, each run in the namespace nsPath
// ("" the calling process's).
type nsKernelOps struct{ nsPath string }

func (o nsKernelOps) in(fn func() error) error {
	if o.nsPath == "" {
		return fn()
	}
	ns, err := netns.GetFromPath(o.nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", o.nsPath, err)
	}
	defer ns.Close()
	return linkutil.DoInNS(ns, fn)
}

func (o nsKernelOps) LinkType(name string) string {
	var t string
	_ = o.in(func() error { t = linkType(name); return nil })
	return t
}

func (o nsKernelOps) LinkAdd(name string) error {
	return o.in(func() error {
		return netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name}})
	})
}

func (o nsKernelOps) LinkDel(name string) error {
	return o.in(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return nil
			}
			return fmt.Errorf("find %s: %w", name, err)
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		return nil
	})
}

// client runs fn with a wgctrl client opened in the namespace: its
// generic netlink socket belongs to the namespace it was made in.
func (o nsKernelOps) client(fn func(*wgctrl.Client) error) error {
	return o.in(func() error {
		c, err := wgctrl.New()
		if err != nil {
			return fmt.Errorf("wgctrl: %w", err)
		}
		defer c.Close()
		return fn(c)
	})
}

func (o nsKernelOps) Device(name string) (*wgtypes.Device, error) {
	var dev *wgtypes.Device
	err := o.client(func(c *wgctrl.Client) (err error) { dev, err = c.Device(name); return err })
	return dev, err
}

func (o nsKernelOps) Configure(name string, cfg wgtypes.Config) error {
	return o.client(func(c *wgctrl.Client) error { return c.ConfigureDevice(name, cfg) })
}

func (o nsKernelOps) LinkUp(name string, mtu int, addr, within netip.Prefix) error {
	return o.in(func() error { return setLinkUp(name, mtu, addr, within) })
}

// Watch follows the link's deletion through a netlink subscription. A
// subscription that fails (its socket overflows: ENOBUFS) is made again,
// the link looked for meanwhile, rather than reported as a deletion: the
// agent closes a handle whose device went, which on this path deletes the
// link.
func (o nsKernelOps) Watch(name string, gone func()) (func(), error) {
	return o.watchLink(name, kernelLinkType, gone)
}

// watchLink is Watch for a link of type typ (tests watch a bridge: no
// wireguard link can be made on a kernel without WireGuard).
func (o nsKernelOps) watchLink(name, typ string, gone func()) (func(), error) {
	stop := make(chan struct{})
	subscribe := func() (<-chan netlink.LinkUpdate, func(), error) {
		ch, done := make(chan netlink.LinkUpdate, 16), make(chan struct{})
		opts := netlink.LinkSubscribeOptions{ErrorCallback: func(error) {}}
		if o.nsPath != "" {
			ns, err := netns.GetFromPath(o.nsPath)
			if err != nil {
				return nil, nil, fmt.Errorf("open network namespace %s: %w", o.nsPath, err)
			}
			defer ns.Close()
			opts.Namespace = &ns
		}
		if err := netlink.LinkSubscribeWithOptions(ch, done, opts); err != nil {
			return nil, nil, fmt.Errorf("watch %s: %w", name, err)
		}
		var once sync.Once
		end := func() {
			once.Do(func() {
				close(done)
				go func() {
					for range ch { // until netlink's reader ends
					}
				}()
			})
		}
		go func() {
			select {
			case <-stop:
				end()
			case <-done:
			}
		}()
		return ch, end, nil
	}
	ch, end, err := subscribe()
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			// Deleted before the subscription began: no event would come.
			if o.LinkType(name) != typ {
				end()
				gone()
				return
			}
			for u := range ch {
				if u.Header.Type == unix.RTM_DELLINK && u.Attrs().Name == name {
					end()
					gone()
					return
				}
			}
			end()
			for { // stopped, or the subscription failed: again
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
				var serr error
				if ch, end, serr = subscribe(); serr == nil {
					break
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(stop) }) }, nil
}

// ErrNoKernelWireGuard: the kernel has no WireGuard (no link type, or no
// generic netlink family to configure it).
var ErrNoKernelWireGuard = errors.New("no kernel WireGuard")

var kernelProbes = struct {
	sync.Mutex
	byNS map[string]error
}{byNS: map[string]error{}}

// KernelSupported reports whether the kernel can run WireGuard devices in
// the namespace nsPath ("" the calling process's): nil when it can, an
// error wrapping ErrNoKernelWireGuard when it cannot, another error when
// the probe itself failed (then the userspace path is used too). The
// first answer per namespace is kept for the process's life.
func KernelSupported(nsPath string) error {
	kernelProbes.Lock()
	defer kernelProbes.Unlock()
	if err, ok := kernelProbes.byNS[nsPath]; ok {
		return err
	}
	err := probeKernel(nsKernelOps{nsPath: nsPath}, fmt.Sprintf("shwgp%d", os.Getpid()%10_000_000))
	kernelProbes.byNS[nsPath] = err
	return err
}

// probeKernel makes a throwaway wireguard link named name, reads it back
// through the generic netlink API and deletes it.
func probeKernel(ops kernelOps, name string) error {
	if ops.LinkType(name) != "" {
		_ = ops.LinkDel(name) // a probe of a dead process with our pid
	}
	if err := ops.LinkAdd(name); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("%w: link type wireguard: %w", ErrNoKernelWireGuard, err)
		}
		return fmt.Errorf("probe kernel WireGuard: %w", err)
	}
	_, err := ops.Device(name)
	if derr := ops.LinkDel(name); derr != nil {
		err = errors.Join(err, derr)
	}
	if err != nil {
		return fmt.Errorf("%w: generic netlink: %w", ErrNoKernelWireGuard, err)
	}
	return nil
}

// DeleteKernelDevice deletes a kernel WireGuard link named name in the
// namespace nsPath ("" the calling process's), as leaving the cluster
// does: the device process of the userspace path stops by itself then,
// a kernel link does not. A link of another type, or none, is left alone.
func DeleteKernelDevice(nsPath, name string) error {
	ops := nsKernelOps{nsPath: nsPath}
	if ops.LinkType(name) != kernelLinkType {
		return nil
	}
	return ops.LinkDel(name)
}

// kernelHandshakes reads the peers' last handshakes of a kernel device,
// by public key (base64); zero when none yet.
func kernelHandshakes(dev *wgtypes.Device) map[string]time.Time {
	out := map[string]time.Time{}
	for _, p := range dev.Peers {
		t := p.LastHandshakeTime
		if t.Unix() <= 0 {
			t = time.Time{}
		}
		out[p.PublicKey.String()] = t
	}
	return out
}
