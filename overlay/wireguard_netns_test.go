package overlay

// Real data-plane tests of routed overlays through WireGuard (as root, in
// throwaway namespaces; see netns_test.go): two hosts, each with a
// wireguard-go device and an overlay whose peers' subnets are routed into
// it, containers pinging and streaming TCP across.

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/overlay/wireguard"
)

// wgHost is a test host with its WireGuard device.
type wgHost struct {
	*testHost
	wg    *wireguard.WireGuard
	wgCfg wireguard.WireGuardConfig // what wg was made with
	ul    netip.Addr                // underlay address
}

// newWGHosts builds two hosts (newHosts) with WireGuard up in each and a
// routed overlay config (Setup left to the caller); the devices have no
// peers yet.
func newWGHosts(t *testing.T) []*wgHost {
	t.Helper()
	var out []*wgHost
	for i, h := range newHosts(t, 2) {
		cfg := wireguard.DefaultWireGuardConfig()
		cfg.KeyFile = filepath.Join(t.TempDir(), "private.key")
		cfg.TunnelIP = netip.AddrFrom4([4]byte{100, 64, 0, byte(2 + i)})
		cfg.NetNS, cfg.UnderlayIP = h.nsPath, h.cfg.UnderlayIP
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
		wg, err := wireguard.NewWireGuard(cfg)
		if err != nil {
			t.Fatalf("NewWireGuard on %s: %v", h.ns, err)
		}
		t.Cleanup(func() {
			if t.Failed() || os.Getenv("SHOAL_WG_VERBOSE") != "" {
				state, err := wireguard.UAPIGet(wg.Socket())
				log, _ := os.ReadFile(filepath.Join(filepath.Dir(wg.Socket()), wireguard.DeviceLogFile))
				t.Logf("%s: device state (%v):\n%s\ndevice log:\n%s", h.ns, err, state, log)
			}
			_ = wg.Close()
		})
		ul := h.cfg.UnderlayIP
		h.cfg.VXLANName, h.cfg.Routed, h.cfg.UnderlayIP = cfg.Name, true, cfg.TunnelIP
		out = append(out, &wgHost{testHost: h, wg: wg, wgCfg: cfg, ul: ul})
	}
	return out
}

// wgPeersOf lists hosts as WireGuard peers, each allowed its subnet.
func wgPeersOf(hosts ...*wgHost) []wireguard.WGPeer {
	var ps []wireguard.WGPeer
	for _, h := range hosts {
		ps = append(ps, wireguard.WGPeer{NodeID: h.cfg.NodeID, PublicKey: h.wg.PublicKey(),
			Endpoint: netip.AddrPortFrom(h.ul, wireguard.DefaultWireGuardPort), TunnelIP: h.wg.TunnelIP(),
			Subnets: []netip.Prefix{h.cfg.Subnet}})
	}
	return ps
}

// connectWG sets every host's WireGuard and overlay peers to the others.
func connectWG(t testing.TB, hosts []*wgHost) {
	t.Helper()
	for _, h := range hosts {
		var others []*wgHost
		var ovPeers []Peer
		for _, o := range hosts {
			if o != h {
				others = append(others, o)
				ovPeers = append(ovPeers, Peer{NodeID: o.cfg.NodeID, Subnet: o.cfg.Subnet, UnderlayIP: o.wg.TunnelIP()})
			}
		}
		if err := h.wg.SetPeers(wgPeersOf(others...)); err != nil {
			t.Fatalf("WireGuard SetPeers on %s: %v", h.cfg.NodeID, err)
		}
		if err := h.ov.SetPeers(ovPeers); err != nil {
			t.Fatalf("overlay SetPeers on %s: %v", h.cfg.NodeID, err)
		}
	}
}

// iperf runs one iperf3 TCP stream from client to server (namespaces) for
// the given flags and returns the receiver's Gbit/s.
func iperf(t testing.TB, server, client, ip string, flags ...string) float64 {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", server, "iperf3", "-s")
	var srvOut strings.Builder
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	type result struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var res result // fresh: Unmarshal leaves fields the output lacks, such as an earlier error
		args := append([]string{"netns", "exec", client, "timeout", "60", "iperf3", "-c", ip, "-J"}, flags...)
		out, err := exec.Command("ip", args...).Output()
		jerr := json.Unmarshal(out, &res)
		if err == nil && jerr == nil && res.Error == "" {
			return res.End.SumReceived.BitsPerSecond / 1e9
		}
		if time.Now().After(deadline) || !strings.Contains(res.Error, "connect") {
			_ = srv.Process.Kill()
			_ = srv.Wait()
			t.Fatalf("iperf3 %s -> %s: %v %v %q; server: %s", client, ip, err, jerr, res.Error, srvOut.String())
		}
		time.Sleep(100 * time.Millisecond) // the server is not listening yet
	}
}

func requireIperf(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Skipf("needs iperf3: %v", err)
	}
}

// TestWireGuardRoutedTwoHosts: containers on two hosts reach each other
// through WireGuard with their subnets routed into the TUN (no VXLAN),
// bulk TCP flows (the TUN's segmentation offloads), a peer removed from
// WireGuard can no longer reach anything, and tearing the overlay down
// removes its routes but leaves WireGuard's device alone.
func TestWireGuardRoutedTwoHosts(t *testing.T) {
	requireNetAdmin(t)
	requireIperf(t)
	hosts := newWGHosts(t)
	a, b := hosts[0], hosts[1]
	for _, h := range hosts {
		h.start(t, t)
	}
	connectWG(t, hosts)

	if got := a.ov.MTU(); got != 1440 || a.wg.MTU() != 1440 {
		t.Fatalf("MTU = %d (WireGuard's %d), want 1440 (1500 underlay - 60)", got, a.wg.MTU())
	}
	if got := sh(t, "ip", "-n", a.ns, "route", "show", "dev", a.cfg.VXLANName); !strings.Contains(got, "10.42.2.0/24 scope link") {
		t.Fatalf("no route of b's subnet into WireGuard on a:\n%s", got)
	}
	if got := sh(t, "ip", "-n", a.ns, "-d", "link", "show"); strings.Contains(got, "vxlan") {
		t.Fatalf("a routed overlay made a VXLAN device:\n%s", got)
	}
	if got := sh(t, "ip", "-n", a.ns, "-4", "addr", "show", a.cfg.BridgeName); !strings.Contains(got, "inet 10.42.1.1/24") {
		t.Errorf("bridge address:\n%s", got)
	}

	ctx := t.Context()
	c1, c1Path := newNetns(t, "c1")
	c2, c2Path := newNetns(t, "c2")
	t.Cleanup(func() {
		_ = a.ov.Detach(ctx, "c1", c1Path)
		_ = b.ov.Detach(ctx, "c2", c2Path)
	})
	ip1, err := a.ov.Attach(ctx, "c1", c1Path)
	if err != nil {
		t.Fatal(err)
	}
	ip2, err := b.ov.Attach(ctx, "c2", c2Path)
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c1, ip2)
	ping(t, c2, ip1)
	// The node itself reaches the other node's containers from its
	// address on the device (the network address of its subnet, masked
	// like the whole network), which the other side routes back: what the
	// load balancer's masquerade relies on.
	if got := sh(t, "ip", "-n", a.ns, "-4", "addr", "show", a.cfg.VXLANName); !strings.Contains(got, "inet 10.42.1.0/16") || !strings.Contains(got, "noprefixroute") {
		t.Fatalf("no network address on the WireGuard device:\n%s", got)
	}
	ping(t, a.ns, ip2)
	// 16 MiB of one TCP stream each way: with the virtio header, segments
	// of up to 64 KiB cross the TUN; a broken offload path stalls here.
	for _, dir := range [][3]string{{c2, c1, ip2}, {c1, c2, ip1}} {
		if g := iperf(t, dir[0], dir[1], dir[2], "-n", "16M"); g <= 0 {
			t.Fatalf("iperf3 %s -> %s: %.3f Gbit/s", dir[1], dir[2], g)
		}
	}
	hs, err := a.wg.LastHandshakes()
	if err != nil || hs[b.wg.PublicKey()].IsZero() {
		t.Fatalf("a's handshake with b: %v %v", hs, err)
	}

	// Changing a peer (one more allowed subnet, as a new encrypted
	// network gives) keeps its session: no new handshake is needed.
	more := wgPeersOf(b)
	more[0].Subnets = append(more[0].Subnets, netip.MustParsePrefix("10.77.2.0/24"))
	if err := a.wg.SetPeers(more); err != nil {
		t.Fatal(err)
	}
	ping(t, c1, ip2)
	if hs2, err := a.wg.LastHandshakes(); err != nil || !hs2[b.wg.PublicKey()].Equal(hs[b.wg.PublicKey()]) {
		t.Fatalf("updating peer b made a new session: handshakes %v, before %v (%v)", hs2, hs, err)
	}

	// b removed as a's peer: nothing crosses either way any more.
	if err := a.wg.SetPeers(nil); err != nil {
		t.Fatal(err)
	}
	noPing(t, c2, ip1)
	noPing(t, c1, ip2)
	if hs, _ := a.wg.LastHandshakes(); len(hs) != 0 {
		t.Fatalf("a still has WireGuard peers: %v", hs)
	}

	// Routes follow the overlay's peers; Teardown leaves WireGuard's
	// device and its tunnel route.
	if err := a.ov.SetPeers(nil); err != nil {
		t.Fatal(err)
	}
	if got := sh(t, "ip", "-n", a.ns, "route", "show", "dev", a.cfg.VXLANName); strings.Contains(got, "10.42.2.0") {
		t.Fatalf("route of a removed peer remains:\n%s", got)
	}
	_ = a.ov.Detach(ctx, "c1", c1Path)
	if err := a.ov.Teardown(); err != nil {
		t.Fatal(err)
	}
	if got := sh(t, "ip", "-n", a.ns, "route", "show", "dev", a.cfg.VXLANName); !strings.Contains(got, "100.64.0.0/16") {
		t.Fatalf("Teardown touched WireGuard's device:\n%s", got)
	}
	if got := sh(t, "ip", "-n", a.ns, "-4", "addr", "show", a.cfg.VXLANName); strings.Contains(got, "10.42.1.0") || !strings.Contains(got, "100.64.0.2/16") {
		t.Fatalf("Teardown left its address on (or took the tunnel's off) the WireGuard device:\n%s", got)
	}
}

// TestWireGuardRoutedThroughput reports (never asserts) the throughput of
// one TCP stream across the routed WireGuard overlay; it runs only with
// SHOAL_WG_THROUGHPUT set, for profiling (go test -cpuprofile).
func TestWireGuardRoutedThroughput(t *testing.T) {
	requireNetAdmin(t)
	requireIperf(t)
	if os.Getenv("SHOAL_WG_THROUGHPUT") == "" {
		t.Skip("a measurement, not a test: set SHOAL_WG_THROUGHPUT=1")
	}
	_, c1, c2, ip2 := wgPair(t)
	ping(t, c1, ip2)
	t.Logf("one TCP stream through WireGuard: %.2f Gbit/s", iperf(t, c2, c1, ip2, "-t", "5"))
}

// linkCounters reads /proc/net/dev in namespace ns: per interface its
// {rx bytes, rx packets, tx bytes, tx packets}.
func linkCounters(t testing.TB, ns string) map[string][4]uint64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/proc/net/dev").Output()
	if err != nil {
		t.Fatalf("read /proc/net/dev in %s: %v", ns, err)
	}
	m := map[string][4]uint64{}
	for _, line := range strings.Split(string(out), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		f := strings.Fields(rest)
		if !ok || len(f) < 10 {
			continue
		}
		var c [4]uint64
		for i, j := range []int{0, 1, 8, 9} {
			c[i], _ = strconv.ParseUint(f[j], 10, 64)
		}
		m[strings.TrimSpace(name)] = c
	}
	return m
}

// TestWireGuardOffloads: bulk TCP through the routed WireGuard path crosses
// the TUN device and the underlay as super-packets, not MTU-sized ones.
// Without the offloads the encrypted path is five times slower (measured
// with TSO turned off on shoal.wg: 0.17 against 0.92 Gbit/s), and nothing
// else would notice: the other tests only check that bytes arrive. Checked
// on the interface counters of both hosts during 64 MiB of one stream:
//   - the sender's TUN "transmits" (what wireguard-go reads) TSO segments
//     far above the MTU (virtio header, tun.CreateTUN);
//   - its underlay link sends UDP GSO batches (conn.StdNetBind with
//     UDP_SEGMENT), each several WireGuard packets;
//   - the receiver's underlay takes them whole (UDP_GRO on the socket) and
//     its TUN "receives" (what wireguard-go writes) TCP coalesced by
//     wireguard-go's GRO.
//
// The bounds are a fraction of what is seen (64 KB, 34 KB, 34 KB, 50-59
// KB), so load on the machine (smaller TSO segments at lower rates) does
// not make it fail; without offloads every figure is about the MTU.
func TestWireGuardOffloads(t *testing.T) {
	requireNetAdmin(t)
	requireIperf(t)
	hosts, c1, c2, ip2 := wgPair(t)
	// The first ping starts the handshake; under load (-race, the whole
	// package at once) it can take longer than ping's 5 s, which is also
	// WireGuard's retry interval when an initiation is lost.
	pingWithin(t, c1, ip2, 30*time.Second)
	snd, rcv := hosts[0], hosts[1]
	sb, rb := linkCounters(t, snd.ns), linkCounters(t, rcv.ns)
	gbit := iperf(t, c2, c1, ip2, "-n", "64M")
	sa, ra := linkCounters(t, snd.ns), linkCounters(t, rcv.ns)
	mtu := uint64(snd.wg.MTU())
	for _, c := range []struct {
		what      string
		before    map[string][4]uint64
		after     map[string][4]uint64
		link      string
		dir       int // 0: rx, 2: tx
		min, data uint64
	}{
		{"sender's TUN reads (TSO)", sb, sa, snd.wg.Name(), 2, 8 * mtu, 48 << 20},
		{"sender's underlay sends (UDP GSO)", sb, sa, "ul0", 2, 4 * mtu, 48 << 20},
		{"receiver's underlay receives (UDP GRO)", rb, ra, "ul0", 0, 4 * mtu, 48 << 20},
		{"receiver's TUN writes (TCP GRO)", rb, ra, rcv.wg.Name(), 0, 4 * mtu, 48 << 20},
	} {
		bytes := c.after[c.link][c.dir] - c.before[c.link][c.dir]
		pkts := c.after[c.link][c.dir+1] - c.before[c.link][c.dir+1]
		if bytes < c.data || pkts == 0 {
			t.Fatalf("%s: %d bytes in %d packets on %s, want ≥ %d bytes (of 64 MiB sent)", c.what, bytes, pkts, c.link, c.data)
		}
		t.Logf("%s: %d packets of %d bytes on average", c.what, pkts, bytes/pkts)
		if bytes/pkts < c.min {
			t.Errorf("%s: %d bytes per packet on %s, want ≥ %d (MTU %d): offload not in play", c.what, bytes/pkts, c.link, c.min, mtu)
		}
	}
	t.Logf("64 MiB at %.2f Gbit/s", gbit)
}

// pingWithin is ping with a deadline of d.
func pingWithin(t *testing.T, ns, ip string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, err := exec.Command("ip", "netns", "exec", ns, "/bin/busybox", "ping", "-c1", "-W1", ip).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping %s from %s for %s: %v\n%s", ip, ns, d, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wgPair starts two routed WireGuard hosts with one container each (c1 on
// the first, c2 on the second) and returns c2's address.
func wgPair(t *testing.T) (hosts []*wgHost, c1, c2, ip2 string) {
	t.Helper()
	hosts = newWGHosts(t)
	for _, h := range hosts {
		h.start(t, t)
	}
	connectWG(t, hosts)
	ctx := t.Context()
	var c1Path, c2Path string
	c1, c1Path = newNetns(t, "c1")
	c2, c2Path = newNetns(t, "c2")
	t.Cleanup(func() {
		_ = hosts[0].ov.Detach(ctx, "c1", c1Path)
		_ = hosts[1].ov.Detach(ctx, "c2", c2Path)
	})
	if _, err := hosts[0].ov.Attach(ctx, "c1", c1Path); err != nil {
		t.Fatal(err)
	}
	ip2, err := hosts[1].ov.Attach(ctx, "c2", c2Path)
	if err != nil {
		t.Fatal(err)
	}
	return hosts, c1, c2, ip2
}

// TestWireGuardSwitchKey: both hosts switch to new keys, each in one step
// with the other's new key (as every node does at a rotation's cutover):
// traffic resumes on sessions of the new keys, and the old keys are gone
// from both devices.
func TestWireGuardSwitchKey(t *testing.T) {
	requireNetAdmin(t)
	hosts := newWGHosts(t)
	a, b := hosts[0], hosts[1]
	for _, h := range hosts {
		h.start(t, t)
	}
	connectWG(t, hosts)
	ctx := t.Context()
	c1, c1Path := newNetns(t, "c1")
	c2, c2Path := newNetns(t, "c2")
	t.Cleanup(func() {
		_ = a.ov.Detach(ctx, "c1", c1Path)
		_ = b.ov.Detach(ctx, "c2", c2Path)
	})
	ip1, err := a.ov.Attach(ctx, "c1", c1Path)
	if err != nil {
		t.Fatal(err)
	}
	ip2, err := b.ov.Attach(ctx, "c2", c2Path)
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c1, ip2)
	oldA, oldB := a.wg.PublicKey(), b.wg.PublicKey()

	ka, err := wireguard.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	kb, err := wireguard.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	peerA, peerB := wgPeersOf(a), wgPeersOf(b)
	peerA[0].PublicKey, peerB[0].PublicKey = ka.PublicKey(), kb.PublicKey()
	if err := a.wg.SwitchKey(ka, peerB); err != nil {
		t.Fatal(err)
	}
	if err := a.wg.SwitchKey(ka, peerB); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := b.wg.SwitchKey(kb, peerA); err != nil {
		t.Fatal(err)
	}
	if a.wg.PublicKey() != ka.PublicKey() || b.wg.PublicKey() != kb.PublicKey() {
		t.Fatalf("public keys after the switch: %s %s", a.wg.PublicKey(), b.wg.PublicKey())
	}
	ping(t, c1, ip2)
	ping(t, c2, ip1)
	for _, x := range []struct {
		h        *wgHost
		old, new string
	}{{a, oldB, kb.PublicKey()}, {b, oldA, ka.PublicKey()}} {
		hs, err := x.h.wg.LastHandshakes()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := hs[x.old]; ok || hs[x.new].IsZero() || len(hs) != 1 {
			t.Fatalf("%s: handshakes %v, want one with %s only", x.h.cfg.NodeID, hs, x.new)
		}
	}
}

// devicePid is the pid of the device process answering on sock.
func devicePid(t *testing.T, sock string) int {
	t.Helper()
	c, err := wireguard.UAPIDial(sock)
	if err != nil {
		t.Fatalf("device socket %s: %v", sock, err)
	}
	defer c.Close()
	pid, err := wireguard.PeerPid(c)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestWireGuardDeviceOutlivesAgent: the device is a process of its own.
// The agent's handle released (an agent stopping or killed), traffic keeps
// crossing (pinged every 100 ms, none lost); a new handle with the same
// key adopts the same process, keeps its session (no new handshake) and
// updates its peers in place; a handle with another key replaces it; and
// the device stops when its socket directory goes (the node left the
// cluster) and on Close.
func TestWireGuardDeviceOutlivesAgent(t *testing.T) {
	requireNetAdmin(t)
	hosts, c1, _, ip2 := wgPair(t)
	a, b := hosts[0], hosts[1]
	pingWithin(t, c1, ip2, 30*time.Second)
	hs, err := a.wg.LastHandshakes()
	if err != nil {
		t.Fatal(err)
	}
	first := hs[b.wg.PublicKey()]
	if first.IsZero() {
		t.Fatalf("no handshake with b after a ping: %v", hs)
	}
	pid := devicePid(t, b.wg.Socket())
	if pid == os.Getpid() {
		t.Fatalf("the device runs in the test process (pid %d)", pid)
	}
	if st, err := os.Stat(filepath.Dir(b.wg.Socket())); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory: %v %v, want mode 0700", st, err)
	}
	if st, err := os.Stat(b.wg.Socket()); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want mode 0600", st, err)
	}
	kp, err := wireguard.LoadKeyPair(b.wgCfg.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err != nil || bytes.Contains(cmdline, []byte(hex.EncodeToString(kp.Private[:]))) || bytes.Contains(cmdline, []byte(base64.StdEncoding.EncodeToString(kp.Private[:]))) {
		t.Fatalf("device command line %q (%v) holds the private key", cmdline, err)
	}

	// The agent goes: traffic goes on.
	if err := b.wg.Release(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.wg.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after Release")
	}
	for i := 0; i < 20; i++ {
		out, err := exec.Command("ip", "netns", "exec", c1, "/bin/busybox", "ping", "-c1", "-W1", ip2).CombinedOutput()
		if err != nil {
			t.Fatalf("ping %d of 20 with the agent's handle released: %v\n%s", i+1, err, out)
		}
		time.Sleep(100 * time.Millisecond) // the interval of the probe, not a wait for a condition
	}

	// The next agent adopts it: same process, same session, peers in place.
	again, err := wireguard.NewWireGuard(b.wgCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Close() })
	if !again.Adopted() {
		t.Fatal("the running device was not adopted")
	}
	if p := devicePid(t, again.Socket()); p != pid {
		t.Fatalf("device process %d after adoption, want %d", p, pid)
	}
	if err := again.SetPeers(wgPeersOf(a)); err != nil {
		t.Fatal(err)
	}
	pingWithin(t, c1, ip2, 5*time.Second)
	for _, w := range []*wireguard.WireGuard{a.wg, again} {
		hs, err := w.LastHandshakes()
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 1 {
			t.Fatalf("handshakes %v, want one peer", hs)
		}
		for k, at := range hs {
			if w == a.wg && !at.Equal(first) {
				t.Fatalf("a handshook with b again (%s, first %s): the session was dropped", at, first)
			}
			if at.IsZero() {
				t.Fatalf("peer %s has no session on the adopted device", k)
			}
		}
	}

	// Another key: the device is replaced (a new process).
	other := b.wgCfg
	other.KeyFile = filepath.Join(t.TempDir(), "private.key")
	other.SocketDir = filepath.Dir(b.wg.Socket())
	replaced, err := wireguard.NewWireGuard(other)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replaced.Close() })
	if replaced.Adopted() {
		t.Fatal("a device with another key was adopted")
	}
	select {
	case <-again.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced device's Done not closed")
	}
	newPid := devicePid(t, replaced.Socket())
	if newPid == pid {
		t.Fatal("the device with another key kept its process")
	}

	// The socket's directory goes (the node left the cluster): the device
	// stops by itself, its TUN device with it.
	if err := os.RemoveAll(filepath.Dir(replaced.Socket())); err != nil {
		t.Fatal(err)
	}
	select {
	case <-replaced.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the device runs on after its socket was removed")
	}
	waitFor(t, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", newPid))
		out, _ := exec.Command("ip", "-n", b.ns, "link", "show", b.wgCfg.Name).CombinedOutput()
		return err != nil && !strings.Contains(string(out), b.wgCfg.Name+":")
	}, "the device process and its TUN device gone")
}

// waitFor polls cond until it holds (a copy of overlay/ipam's test helper,
// which went with the IPAM tests).
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
