// Package wireguard is the node's WireGuard side of the encrypted
// networks: keys, the peers' UAPI configuration, and the handle of the
// device process (wgdevice) with its adoption decision. The routed
// networks that use it are the overlay's (wireguard_routed.go there).
package wireguard

// Encrypted networks: routed through WireGuard.
//
// Every node runs one WireGuard device, "shoal.wg", listening on UDP 51820
// of the underlay: the kernel's where the kernel has WireGuard (kernel.go),
// else userspace wireguard-go on a TUN device (this machine's kernel has
// neither WireGuard nor ESP crypto). Each node has a tunnel address derived from its
// /24 of the cluster CIDR (node 10.42.7.0/24 → 100.64.0.8; TunnelAddr), so
// nobody allocates anything and every node can compute every other node's.
// The TUN device holds the node's address with the whole tunnel prefix
// (100.64.0.8/16). WireGuard knows each peer by its public key, its
// underlay endpoint and its allowed IPs: its tunnel address /32 and its
// share of every encrypted network (WGPeer.Subnets).
//
// An encrypted network is an Overlay without VXLAN (Config.Routed,
// wireguard_routed.go): its bridge holds the node's share, and each peer's
// share is routed straight into shoal.wg, where WireGuard encrypts and
// authenticates it for the peer whose allowed IPs hold the destination.
// Only WireGuard's UDP leaves the node. (It used to be VXLAN inside the
// tunnel, at a twentieth of the plain overlay's throughput.)
//
// Injection: there is no VXLAN device for an encrypted network's VNI, so a
// forged VXLAN packet finds none; the load balancer's input filter still
// drops UDP EncryptedVXLANPort (the old inner VXLAN port) unless it
// arrives through shoal.wg, and its forward filter lets from shoal.wg only
// packets that stay inside one network. A peer can only send from its own
// shares: WireGuard drops a source outside the sender's allowed IPs.
//
// Keys: the private key is made on the node (crypto/ecdh X25519), kept in
// the data directory with mode 0600 and never sent anywhere; the public key
// goes into the node's record in Raft, from which every node builds its
// peer list (PeersConfig). A peer without a key yet is simply not a
// WireGuard peer: packets to its tunnel address are dropped by WireGuard
// ("no peer"), never sent in the clear.
//
// MTU: the TUN device gets the underlay link's MTU − 60, what WireGuard
// adds over IPv4 (20 IP + 8 UDP + 16 header + 16 tag; endpoints are IPv4
// only, PeersConfig), so an encrypted packet never needs fragmenting, and
// a jumbo-frame underlay gives jumbo packets inside. The encrypted
// networks' bridges and container veths take the TUN's MTU.
//
// Lifetime: the TUN device and wireguard-go run in a process of their own
// (package wgdevice; wgproc.go here is the agent's side), which outlives the
// agent as the containers do: while the agent restarts, the encrypted
// networks keep crossing hosts, and the next agent adopts the device,
// sessions included. It stops when no encrypted network is left (Close),
// when the node leaves the cluster (its socket goes with the cluster
// directory), and when its TUN device is removed.

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/shoal-org/shoal/overlay/linkutil"
	"github.com/shoal-org/shoal/overlay/overlayerr"
)

// Defaults of WireGuard. Every node of a cluster must agree on the port of
// the encrypted VXLAN devices and on the tunnel prefix.
const (
	DefaultWireGuardName = "shoal.wg"
	DefaultWireGuardPort = 51820
	// EncryptedVXLANPort was the VXLAN port of encrypted networks inside
	// the tunnel; the load balancer still drops it outside shoal.wg (see
	// the comment at the top of this file).
	EncryptedVXLANPort = 4800
	// DefaultTunnelCIDR holds the nodes' tunnel addresses (RFC 6598 shared
	// space: not a range users give their networks).
	DefaultTunnelCIDR = "100.64.0.0/16"
	// wireGuardOverhead is what WireGuard adds to a packet over an IPv4
	// underlay (wg-quick assumes 80, for IPv6).
	wireGuardOverhead = 60
	keyFileMode       = 0o600
)

// Sentinel errors of WireGuard.
var (
	// ErrBadKey: a WireGuard key is not 32 bytes of base64.
	ErrBadKey = errors.New("invalid WireGuard key")
	// ErrKeyFileMode: the private key file is readable by others than its
	// owner; it is refused, not silently fixed (it may have leaked).
	ErrKeyFileMode = errors.New("WireGuard private key file is readable by group or others")
	// ErrNoTunnelAddr: the node's subnet gives no address in the tunnel
	// prefix.
	ErrNoTunnelAddr = errors.New("no tunnel address for the node subnet")
)

// KeyPair is a node's WireGuard key pair. Private never leaves the node.
type KeyPair struct {
	Private [32]byte
	Public  [32]byte
}

// PublicKey is the public key in WireGuard's base64 form.
func (k KeyPair) PublicKey() string { return base64.StdEncoding.EncodeToString(k.Public[:]) }

// GenerateKeyPair makes a fresh X25519 key pair.
func GenerateKeyPair() (KeyPair, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate WireGuard key: %w", err)
	}
	return keyPairOf(priv.Bytes())
}

func keyPairOf(privBytes []byte) (KeyPair, error) {
	priv, err := ecdh.X25519().NewPrivateKey(privBytes)
	if err != nil {
		return KeyPair{}, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	var kp KeyPair
	copy(kp.Private[:], priv.Bytes())
	copy(kp.Public[:], priv.PublicKey().Bytes())
	return kp, nil
}

// ParseKey decodes a base64 WireGuard key (public or private).
func ParseKey(s string) ([32]byte, error) {
	var k [32]byte
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		return k, fmt.Errorf("%w: %q", ErrBadKey, s)
	}
	copy(k[:], b)
	return k, nil
}

// LoadOrCreateKeyPair reads the private key at path (LoadKeyPair) or,
// when there is none, generates one and writes it with mode 0600
// (WriteKeyPair). A file readable by group or others is refused
// (ErrKeyFileMode), a malformed one too (ErrBadKey); neither is
// overwritten.
func LoadOrCreateKeyPair(path string) (KeyPair, error) {
	kp, err := LoadKeyPair(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return kp, err
	}
	kp, err = GenerateKeyPair()
	if err != nil {
		return KeyPair{}, err
	}
	if err := WriteKeyPair(path, kp); err != nil {
		return KeyPair{}, err
	}
	return kp, nil
}

// LoadKeyPair reads the private key at path (base64, as `wg genkey`
// writes it). No file is an error wrapping fs.ErrNotExist; a file readable
// by group or others is refused (ErrKeyFileMode), a malformed one too
// (ErrBadKey).
func LoadKeyPair(path string) (KeyPair, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return KeyPair{}, fmt.Errorf("WireGuard key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return KeyPair{}, fmt.Errorf("WireGuard key %s: not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return KeyPair{}, fmt.Errorf("%w: %s has mode %04o, want 0600", ErrKeyFileMode, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return KeyPair{}, fmt.Errorf("read WireGuard key: %w", err)
	}
	priv, err := ParseKey(string(b))
	if err != nil {
		return KeyPair{}, fmt.Errorf("WireGuard key %s: %w", path, err)
	}
	return keyPairOf(priv[:])
}

// WriteKeyPair writes kp's private key to path with mode 0600, atomically:
// a crash leaves either the old file or the whole new one.
func WriteKeyPair(path string, kp KeyPair) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("WireGuard key directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".wgkey-*")
	if err != nil {
		return fmt.Errorf("write WireGuard key: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	err = tmp.Chmod(keyFileMode)
	if err == nil {
		_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(kp.Private[:]) + "\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write WireGuard key: %w", err)
	}
	return nil
}

// TunnelAddr is the tunnel address of the node owning nodeSubnet (a share
// of cluster): the tunnel prefix's address + 1 + the index of nodeSubnet
// in cluster. It is pure; every node computes every node's the same way.
func TunnelAddr(tunnel, cluster, nodeSubnet netip.Prefix) (netip.Addr, error) {
	bad := func(why string) (netip.Addr, error) {
		return netip.Addr{}, fmt.Errorf("%w: subnet %s of cluster %s in tunnel %s: %s", ErrNoTunnelAddr, nodeSubnet, cluster, tunnel, why)
	}
	if !tunnel.Addr().Is4() || !cluster.Addr().Is4() || !nodeSubnet.Addr().Is4() {
		return bad("not IPv4")
	}
	if nodeSubnet.Bits() < cluster.Bits() || !cluster.Contains(nodeSubnet.Addr()) {
		return bad("subnet outside the cluster")
	}
	idx := (u32(nodeSubnet.Masked().Addr()) - u32(cluster.Masked().Addr())) >> (32 - nodeSubnet.Bits())
	size := uint64(1) << (32 - tunnel.Bits())
	if uint64(idx)+2 >= size { // keep the prefix's last address (broadcast) free
		return bad("tunnel prefix too small")
	}
	return fromU32(u32(tunnel.Masked().Addr()) + 1 + idx), nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// WGPeer is another node as WireGuard sees it.
type WGPeer struct {
	NodeID string
	// PublicKey is the peer's key (base64), from its node record.
	PublicKey string
	// Endpoint is the peer's underlay address and WireGuard port.
	Endpoint netip.AddrPort
	// TunnelIP is the peer's tunnel address, one of its allowed IPs.
	TunnelIP netip.Addr
	// Subnets are the peer's shares of the encrypted networks: its other
	// allowed IPs, routed straight into WireGuard (wireguard_routed.go).
	Subnets []netip.Prefix
}

// PeersConfig is the wireguard-go configuration (UAPI "set" text) that
// makes the device's peers exactly peers: replace_peers, then per peer
// (sorted by node ID) its key, endpoint, and as allowed IPs its tunnel
// address /32 and its subnets. It is pure. Peers with this node's key, a
// malformed key, endpoint or subnet, or a key, tunnel address or subnet
// overlapping another peer's are left out and reported; the rest is
// configured.
func PeersConfig(self KeyPair, peers []WGPeer) (string, []error) {
	text, _, errs := PeersUpdate(self, peers, nil)
	return text, errs
}

// PeersUpdate is PeersConfig for a device whose peers are those with the
// keys current (planPeers: the gone peers removed, the others updated in
// place; current == nil: replace them all). It returns the keys of the
// peers configured after it. It is pure.
func PeersUpdate(self KeyPair, peers []WGPeer, current [][32]byte) (text string, keys [][32]byte, errs []error) {
	dc, errs := Desired(self, 0, peers)
	return planPeers(dc, current).uapiText(), dc.Keys(), errs
}

// checkPeerSubnets refuses subnets of p that are not IPv4 network
// prefixes, contain a tunnel address, or overlap one another or one that
// taken gives to another peer (WireGuard would silently move it).
func checkPeerSubnets(p WGPeer, taken map[netip.Prefix]string) error {
	for i, s := range p.Subnets {
		if !s.IsValid() || !s.Addr().Is4() || s != s.Masked() || s.Contains(p.TunnelIP) {
			return fmt.Errorf("%w: peer %s: subnet %q", overlayerr.ErrInvalidPeer, p.NodeID, s)
		}
		for _, o := range p.Subnets[:i] {
			if o.Overlaps(s) {
				return fmt.Errorf("%w: peer %s: subnets %s and %s overlap", overlayerr.ErrInvalidPeer, p.NodeID, o, s)
			}
		}
		for o, id := range taken {
			if o.Overlaps(s) {
				return fmt.Errorf("%w: peer %s: subnet %s overlaps %s of peer %s", overlayerr.ErrInvalidPeer, p.NodeID, s, o, id)
			}
		}
	}
	return nil
}

// WireGuardConfig configures a node's WireGuard device.
type WireGuardConfig struct {
	// Name of the TUN device (≤15 characters).
	Name string
	// Port is the UDP port WireGuard listens on.
	Port int
	// KeyFile holds the private key (LoadOrCreateKeyPair).
	KeyFile string
	// TunnelIP is this node's tunnel address, TunnelCIDR the prefix of all
	// of them (TunnelAddr).
	TunnelIP   netip.Addr
	TunnelCIDR netip.Prefix
	// MTU of the TUN device; 0 means the MTU of the link holding
	// UnderlayIP (1500 when it is not set or not found) minus WireGuard's
	// overhead.
	MTU int
	// UnderlayIP is the node's underlay address (optional, see MTU).
	UnderlayIP netip.Addr
	// NetNS is a network namespace path to create the device in (tests);
	// empty means the calling process's.
	NetNS string
	// Backend is BackendKernel, BackendUserspace, or "" for the kernel's
	// WireGuard where the kernel has it (KernelSupported), else userspace.
	Backend string
	// SocketDir holds the device process's UAPI socket (NAME.sock, 0600)
	// and log; it is made 0700. Empty means "device" beside KeyFile.
	SocketDir string
	Logger    *slog.Logger
}

// socketPath is the device's UAPI socket.
func (c *WireGuardConfig) socketPath() string {
	dir := c.SocketDir
	if dir == "" {
		dir = filepath.Join(filepath.Dir(c.KeyFile), "device")
	}
	return filepath.Join(dir, c.Name+".sock")
}

// DefaultWireGuardConfig returns the defaults; the caller sets KeyFile and
// TunnelIP.
func DefaultWireGuardConfig() WireGuardConfig {
	return WireGuardConfig{
		Name:       DefaultWireGuardName,
		Port:       DefaultWireGuardPort,
		TunnelCIDR: netip.MustParsePrefix(DefaultTunnelCIDR),
		Logger:     slog.Default(),
	}
}

// Validate checks the config without touching the host.
func (c *WireGuardConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{overlayerr.ErrInvalidConfig}, args...)...))
	}
	if err := linkutil.CheckIfName(c.Name); err != nil {
		bad("Name: %v", err)
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("Port must be in 1..65535, got %d", c.Port)
	}
	if c.KeyFile == "" || !filepath.IsAbs(c.KeyFile) {
		bad("KeyFile must be an absolute path, got %q", c.KeyFile)
	}
	if !c.TunnelCIDR.IsValid() || !c.TunnelCIDR.Addr().Is4() || !c.TunnelIP.Is4() || !c.TunnelCIDR.Contains(c.TunnelIP) {
		bad("TunnelIP %q must be an IPv4 address inside TunnelCIDR %q", c.TunnelIP, c.TunnelCIDR)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		bad("MTU must be 0 (derived) or in 576..65535, got %d", c.MTU)
	}
	if c.Backend != "" && c.Backend != BackendKernel && c.Backend != BackendUserspace {
		bad("Backend must be empty, %q or %q, got %q", BackendKernel, BackendUserspace, c.Backend)
	}
	if c.SocketDir != "" && !filepath.IsAbs(c.SocketDir) {
		bad("SocketDir must be empty or an absolute path, got %q", c.SocketDir)
	}
	if c.NetNS != "" && !filepath.IsAbs(c.NetNS) {
		bad("NetNS must be empty or an absolute path, got %q", c.NetNS)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return errors.Join(errs...)
}

// WireGuard is the agent's handle on the node's WireGuard device, which
// runs in a process of its own (package wgdevice, wgproc.go) so that it
// outlives the agent. Its methods are safe for concurrent use.
type WireGuard struct {
	cfg     WireGuardConfig
	keys    KeyPair
	sock    string // the device's UAPI socket
	adopted bool   // found running, not started
	backend string // BackendKernel or BackendUserspace
	// kops are the kernel path's host steps; nil on the userspace path.
	kops      kernelOps
	stopWatch func() // ends the kernel link's watch
	doneOnce  sync.Once

	mu       sync.Mutex
	closed   bool
	lastCfg  string     // the last UAPI text applied
	peerKeys [][32]byte // the peers configured; nil: unknown, replace all
	watch    net.Conn   // an idle UAPI connection: it ends with the device
	done     chan struct{}
}

// NewWireGuard loads (or creates) the node's key and makes sure the node's
// device runs with it: a device process that answers on the socket with
// this key, port and interface name is adopted as it is, peers and
// sessions included (the agent restarted; Decide); any other is stopped
// and a new one started, with the tunnel address on its TUN device and no
// peers until SetPeers. Release lets the device run on; Close stops it.
//
// The backend is the kernel's WireGuard where the kernel has it
// (KernelSupported, kernel.go), else userspace wireguard-go; the choice
// is logged and reported by Backend.
func NewWireGuard(cfg WireGuardConfig) (*WireGuard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Backend == "" {
		cfg.Backend = BackendUserspace
		if err := KernelSupported(cfg.NetNS); err == nil {
			cfg.Backend = BackendKernel
		} else {
			cfg.Logger.Info("wireguard: the kernel has no WireGuard; using userspace wireguard-go", "why", err)
		}
	}
	var kops kernelOps
	if cfg.Backend == BackendKernel {
		kops = nsKernelOps{nsPath: cfg.NetNS}
	}
	return newWireGuard(cfg, kops)
}

// newWireGuard is NewWireGuard with the backend chosen: kops, not nil,
// are the kernel path's steps (a fake in tests).
func newWireGuard(cfg WireGuardConfig, kops kernelOps) (*WireGuard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := LoadOrCreateKeyPair(cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	w := &WireGuard{cfg: cfg, keys: keys, sock: cfg.socketPath(), done: make(chan struct{}), backend: BackendUserspace, kops: kops}
	if kops != nil {
		w.backend = BackendKernel
	}
	inNS := func(fn func() error) error { return fn() }
	if cfg.NetNS != "" {
		ns, err := netns.GetFromPath(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("open network namespace %s: %w", cfg.NetNS, err)
		}
		defer ns.Close()
		inNS = func(fn func() error) error { return linkutil.DoInNS(ns, fn) }
	}
	up := w.up
	if kops != nil {
		up = w.upKernel
	}
	if err := up(inNS); err != nil {
		return nil, err
	}
	return w, nil
}

// closeDone closes Done, once.
func (w *WireGuard) closeDone() { w.doneOnce.Do(func() { close(w.done) }) }

// upKernel adopts or makes the kernel device (kernelUp) and watches it; a
// userspace device process an earlier agent left under the same socket is
// stopped first (the kernel's WireGuard appeared, say after a kernel
// upgrade), which also frees the name.
func (w *WireGuard) upKernel(inNS func(func() error) error) error {
	log := w.cfg.Logger
	if w.cfg.MTU == 0 {
		if err := inNS(func() error { w.cfg.MTU = underlayMTU(w.cfg.UnderlayIP) - wireGuardOverhead; return nil }); err != nil {
			return err
		}
	}
	if err := stopDevice(w.sock, deviceStopTimeout); err != nil {
		return fmt.Errorf("stop the userspace WireGuard device: %w", err)
	}
	adopted, peers, why, err := kernelUp(w.kops, w.cfg, w.keys)
	if err != nil {
		return err
	}
	if !adopted && why != "no device" {
		log.Warn("wireguard: replacing the kernel device", "device", w.cfg.Name, "why", why)
	}
	w.adopted, w.peerKeys = adopted, peers
	stop, err := w.kops.Watch(w.cfg.Name, w.closeDone)
	if err != nil {
		if !adopted {
			err = errors.Join(err, w.kops.LinkDel(w.cfg.Name))
		}
		return err
	}
	w.stopWatch = stop
	how := "started"
	if adopted {
		how = "adopted the running device"
	}
	log.Info("wireguard: "+how, "backend", w.backend, "device", w.cfg.Name, "port", w.cfg.Port, "tunnel_ip", w.cfg.TunnelIP.String(),
		"public_key", w.keys.PublicKey(), "mtu", w.cfg.MTU, "peers", len(w.peerKeys))
	return nil
}

// up adopts or starts the device and readies its link; inNS runs what
// must happen in the device's network namespace (the spawn included: the
// process is born there).
func (w *WireGuard) up(inNS func(func() error) error) error {
	log := w.cfg.Logger
	if w.cfg.MTU == 0 {
		if err := inNS(func() error { w.cfg.MTU = underlayMTU(w.cfg.UnderlayIP) - wireGuardOverhead; return nil }); err != nil {
			return err
		}
	}
	if text, err := UAPIGet(w.sock); err == nil {
		var link string
		_ = inNS(func() error { link = linkType(w.cfg.Name); return nil })
		running, perr := parseDeviceState(text)
		adopt, why := Decide(running, perr, link, w.keys, w.cfg.Port)
		if adopt {
			w.adopted = true
			w.peerKeys = running.Peers
			if w.peerKeys == nil {
				w.peerKeys = [][32]byte{}
			}
		} else {
			log.Warn("wireguard: replacing the running device", "device", w.cfg.Name, "why", why)
			if err := stopDevice(w.sock, deviceStopTimeout); err != nil {
				return err
			}
		}
	}
	if !w.adopted {
		if err := inNS(w.spawn); err != nil {
			return err
		}
		// The key over the socket: never in argv or the environment.
		if err := uapiSet(w.sock, "private_key="+hex.EncodeToString(w.keys.Private[:])+"\n"); err != nil {
			return errors.Join(fmt.Errorf("configure WireGuard: %w", err), stopDevice(w.sock, deviceStopTimeout))
		}
	}
	if err := inNS(w.linkUp); err != nil {
		if !w.adopted {
			err = errors.Join(err, stopDevice(w.sock, deviceStopTimeout))
		}
		return err
	}
	c, err := UAPIDial(w.sock)
	if err != nil {
		return fmt.Errorf("watch the WireGuard device: %w", err)
	}
	w.watch = c
	go func() {
		// The device's UAPI handler waits for a request that never comes;
		// the read ends when the device process does (or Release/Close).
		var b [1]byte
		_, _ = c.Read(b[:])
		w.closeDone()
	}()
	how := "started"
	if w.adopted {
		how = "adopted the running device"
	}
	log.Info("wireguard: "+how, "backend", w.backend, "device", w.cfg.Name, "port", w.cfg.Port, "tunnel_ip", w.cfg.TunnelIP.String(),
		"public_key", w.keys.PublicKey(), "mtu", w.cfg.MTU, "peers", len(w.peerKeys))
	return nil
}

// linkUp gives the TUN device its MTU and tunnel address and brings it up;
// it runs in the device's namespace and changes nothing that is right.
// Of the device's addresses only those inside TunnelCIDR are its own (an
// old tunnel address goes): the routed overlays put their networks'
// addresses on the device too (overlay/wireguard_routed.go), and an
// adopting agent that removed them dropped the masqueraded connections
// into encrypted networks until the network loop added them back.
func (w *WireGuard) linkUp() error {
	return setLinkUp(w.cfg.Name, w.cfg.MTU, netip.PrefixFrom(w.cfg.TunnelIP, w.cfg.TunnelCIDR.Bits()), w.cfg.TunnelCIDR)
}

// setLinkUp gives the link name its MTU and addr (the only address inside
// within) and brings it up, in the current namespace; both backends' links
// get it.
func setLinkUp(name string, mtu int, addr, within netip.Prefix) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("open netlink handle: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if l.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU of %s: %w", name, err)
		}
	}
	if err := linkutil.EnsureAddrIn(h, l, addr, within); err != nil {
		return err
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring %s up: %w", name, err)
		}
	}
	return nil
}

// underlayMTU is the MTU of the link holding ip in the current namespace,
// or 1500 when there is none.
func underlayMTU(ip netip.Addr) int {
	const fallback = 1500
	if !ip.IsValid() {
		return fallback
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return fallback
	}
	defer h.Close()
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fallback
	}
	for _, a := range addrs {
		if a.IP.Equal(ip.AsSlice()) {
			if l, err := h.LinkByIndex(a.LinkIndex); err == nil && l.Attrs().MTU >= 576+wireGuardOverhead {
				return l.Attrs().MTU
			}
		}
	}
	return fallback
}

// MTU is the TUN device's MTU, which the encrypted networks' bridges and
// veths take.
func (w *WireGuard) MTU() int { return w.cfg.MTU }

// PublicKey is this node's public key (base64), to publish.
func (w *WireGuard) PublicKey() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.keys.PublicKey()
}

// TunnelIP is this node's tunnel address.
func (w *WireGuard) TunnelIP() netip.Addr { return w.cfg.TunnelIP }

// Name is the TUN device's name.
func (w *WireGuard) Name() string { return w.cfg.Name }

// Adopted reports whether NewWireGuard found the device running (and kept
// it, sessions included) rather than starting it.
func (w *WireGuard) Adopted() bool { return w.adopted }

// Backend is the device's backend: BackendKernel or BackendUserspace.
func (w *WireGuard) Backend() string { return w.backend }

// Socket is the path of the device's UAPI socket (root only).
func (w *WireGuard) Socket() string { return w.sock }

// SetPeers makes the device's peers exactly peers (PeersConfig); it is
// idempotent and cheap when nothing changed. Peers that stay keep their
// sessions (PeersUpdate), also across an adoption; peers that are gone
// lose theirs at once. Malformed peers are left out and reported
// (overlayerr.ErrPartial); the others are configured.
func (w *WireGuard) SetPeers(peers []WGPeer) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("wireguard set peers: %w", overlayerr.ErrClosed)
	}
	return w.setPeersLocked(peers)
}

func (w *WireGuard) setPeersLocked(peers []WGPeer) error {
	dc, errs := Desired(w.keys, w.cfg.Port, peers)
	plan, keys := planPeers(dc, w.peerKeys), dc.Keys()
	if text := plan.uapiText(); text != w.lastCfg {
		if err := w.applyLocked(nil, plan); err != nil {
			// Partly applied, maybe: replace everything next time.
			w.peerKeys, w.lastCfg = nil, ""
			return fmt.Errorf("configure WireGuard peers: %w", err)
		}
		if keys == nil {
			keys = [][32]byte{} // known: no peers
		}
		w.peerKeys = keys
		// The next identical call yields only the update part (no
		// removals): remember that, so it is skipped.
		w.lastCfg = planPeers(dc, keys).uapiText()
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", overlayerr.ErrPartial, errors.Join(errs...))
	}
	return nil
}

// SwitchKey makes kp the device's key pair and peers its peers, in one
// configuration step, so that no packet leaves with the new key towards a
// peer still configured with another node's old key. wireguard-go expires
// every session made with the old key; the peers whose key changed are new
// peers to it and get a handshake at once (their keepalive is turned on),
// so traffic resumes as soon as both ends switched. It is idempotent.
// Malformed peers are left out and reported (overlayerr.ErrPartial), as in SetPeers.
func (w *WireGuard) SwitchKey(kp KeyPair, peers []WGPeer) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("wireguard switch key: %w", overlayerr.ErrClosed)
	}
	if kp == w.keys {
		return w.setPeersLocked(peers)
	}
	dc, errs := Desired(kp, w.cfg.Port, peers)
	keys := dc.Keys()
	if err := w.applyLocked(&kp, planPeers(dc, w.peerKeys)); err != nil {
		// The key may or may not have changed: find out, and replace every
		// peer next time.
		w.peerKeys, w.lastCfg = nil, ""
		if w.holdsKeyLocked(kp) {
			w.keys = kp
		}
		return fmt.Errorf("switch WireGuard key: %w", err)
	}
	w.keys = kp
	if keys == nil {
		keys = [][32]byte{}
	}
	w.peerKeys = keys
	w.lastCfg = planPeers(dc, keys).uapiText()
	w.cfg.Logger.Info("wireguard: key switched", "public_key", kp.PublicKey())
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", overlayerr.ErrPartial, errors.Join(errs...))
	}
	return nil
}

// applyLocked applies a peer plan, with the private key of kp in the same
// step when kp is not nil: as UAPI text to the device process, or through
// wgctrl to the kernel.
func (w *WireGuard) applyLocked(kp *KeyPair, plan peerPlan) error {
	if w.kops != nil {
		var key *[32]byte
		if kp != nil {
			key = &kp.Private
		}
		return w.kops.Configure(w.cfg.Name, plan.kernelConfig(key, 0))
	}
	text := plan.uapiText()
	if kp != nil {
		text = "private_key=" + hex.EncodeToString(kp.Private[:]) + "\n" + text
	}
	return uapiSet(w.sock, text)
}

// holdsKeyLocked reports whether the device holds kp's private key.
func (w *WireGuard) holdsKeyLocked(kp KeyPair) bool {
	if w.kops != nil {
		dev, err := w.kops.Device(w.cfg.Name)
		return err == nil && dev.PublicKey == wgtypes.Key(kp.Public)
	}
	got, err := UAPIGet(w.sock)
	if err != nil {
		return false
	}
	st, err := parseDeviceState(got)
	return err == nil && st.PrivateKey == clampKey(kp.Private)
}

// LastHandshakes returns, by public key (base64), the time of each
// configured peer's last completed handshake (zero: none yet). For tests
// and diagnostics.
func (w *WireGuard) LastHandshakes() (map[string]time.Time, error) {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("wireguard handshakes: %w", overlayerr.ErrClosed)
	}
	if w.kops != nil {
		dev, err := w.kops.Device(w.cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("read WireGuard state: %w", err)
		}
		return kernelHandshakes(dev), nil
	}
	text, err := UAPIGet(w.sock)
	if err != nil {
		return nil, fmt.Errorf("read WireGuard state: %w", err)
	}
	return parseHandshakes(text), nil
}

// parseHandshakes reads the peers' last handshake times out of UAPI "get"
// text.
func parseHandshakes(text string) map[string]time.Time {
	out := map[string]time.Time{}
	var key string
	var sec, nsec int64
	flush := func() {
		if key != "" {
			t := time.Time{}
			if sec != 0 || nsec != 0 {
				t = time.Unix(sec, nsec)
			}
			out[key] = t
		}
	}
	for _, line := range strings.Split(text, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "public_key":
			flush()
			key, sec, nsec = "", 0, 0
			if b, err := hex.DecodeString(v); err == nil && len(b) == 32 {
				key = base64.StdEncoding.EncodeToString(b)
			}
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
		case "last_handshake_time_nsec":
			nsec, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	flush()
	return out
}

// Done is closed when the device process ended (Close, its TUN device
// removed, killed), the kernel device was deleted, or this handle was
// released.
func (w *WireGuard) Done() <-chan struct{} { return w.done }

// Release lets go of the device and leaves it running, peers, sessions
// and all: the agent is stopping, and the next one adopts it
// (NewWireGuard). The handle is unusable afterwards. Safe to call twice.
func (w *WireGuard) Release() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		if w.kops != nil {
			w.stopWatch()
			w.closeDone()
		} else {
			_ = w.watch.Close()
		}
	}
	return nil
}

// StopLeftover stops a device process of cfg's name left running by an
// earlier agent (Release) that no handle holds now: the one case no handle
// can close, an encrypted network removed while the agent was down. No
// process answering on the socket is no error. A kernel device of the
// name is deleted too (the same case on the kernel path).
func StopLeftover(cfg WireGuardConfig) error {
	return errors.Join(stopDevice(cfg.socketPath(), deviceStopTimeout), DeleteKernelDevice(cfg.NetNS, cfg.Name))
}

// Close stops the device process, which removes its TUN device and with
// it the routes into it: no encrypted network is left on the node. Safe
// to call twice; a device already gone is no error.
func (w *WireGuard) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.kops != nil {
		w.stopWatch()
		err := w.kops.LinkDel(w.cfg.Name)
		w.closeDone()
		return err
	}
	err := stopDevice(w.sock, deviceStopTimeout)
	_ = w.watch.Close()
	return err
}
