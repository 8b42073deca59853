package wireguard

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// netnsForTest makes a network namespace that is deleted at cleanup, and
// returns its name and path.
func netnsForTest(t *testing.T, prefix string) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip")
	}
	name := fmt.Sprintf("%s%d", prefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return name, "/var/run/netns/" + name
}

// TestKernelDetection: the probe agrees with `ip link add ... type
// wireguard` in the same namespace, and NewWireGuard picks the backend it
// says. On this machine (no WireGuard module) that is "no kernel
// WireGuard" and the userspace device process, on a TUN device.
func TestKernelDetection(t *testing.T) {
	ns, nsPath := netnsForTest(t, "shwgdet")
	out, ipErr := exec.Command("ip", "-n", ns, "link", "add", "wgcheck", "type", "wireguard").CombinedOutput()
	kernelHas := ipErr == nil
	if kernelHas {
		_ = exec.Command("ip", "-n", ns, "link", "del", "wgcheck").Run()
	}
	t.Logf("ip link add type wireguard: %v %s", ipErr, out)

	err := KernelSupported(nsPath)
	if kernelHas != (err == nil) || !kernelHas && !errors.Is(err, ErrNoKernelWireGuard) {
		t.Fatalf("KernelSupported = %v, but ip link add type wireguard says %v", err, kernelHas)
	}
	if again := KernelSupported(nsPath); fmt.Sprint(again) != fmt.Sprint(err) {
		t.Fatalf("second answer %v differs from the first %v", again, err)
	}
	if links, _ := exec.Command("ip", "-n", ns, "-o", "link", "show", "type", "wireguard").Output(); len(links) != 0 {
		t.Fatalf("the probe left a link: %s", links)
	}

	cfg := DefaultWireGuardConfig()
	dir := t.TempDir()
	cfg.KeyFile, cfg.NetNS = filepath.Join(dir, "private.key"), nsPath
	cfg.TunnelIP = netip.MustParseAddr("100.64.0.2")
	w, err := NewWireGuard(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	want, wantLink := BackendUserspace, "tun"
	if kernelHas {
		want, wantLink = BackendKernel, "wireguard"
	}
	if w.Backend() != want {
		t.Fatalf("backend %s, want %s", w.Backend(), want)
	}
	links, err := exec.Command("ip", "-n", ns, "-d", "-o", "link", "show", cfg.Name).Output()
	if err != nil || !slices.Contains(strings.Fields(string(links)), wantLink) {
		t.Fatalf("link %s: %v %s, want a %s device", cfg.Name, err, links, wantLink)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("ip", "-n", ns, "link", "show", cfg.Name).Run(); err == nil {
		t.Fatal("the device outlived Close")
	}
}

// TestKernelConfigAgainstWireGuardGo sends the kernel path's
// configuration (kernelConfig, through wgctrl: the same calls nsKernelOps
// makes) to a real wireguard-go device, which wgctrl reaches through its
// UAPI socket in /var/run/wireguard, and reads it back: what the kernel
// would be told is what a WireGuard implementation takes for the desired
// peers. Also read back by the userspace path's own UAPI reader.
func TestKernelConfigAgainstWireGuardGo(t *testing.T) {
	_, nsPath := netnsForTest(t, "shwgctl")
	const runDir = "/var/run/wireguard" // where wgctrl looks for userspace devices
	if _, err := os.Stat(runDir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(runDir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.Remove(runDir) }) // only when empty
	}
	cfg := DefaultWireGuardConfig()
	cfg.Name = fmt.Sprintf("shwgc%d", os.Getpid()%10_000_000)
	cfg.KeyFile, cfg.NetNS, cfg.SocketDir = filepath.Join(t.TempDir(), "private.key"), nsPath, runDir
	cfg.TunnelIP, cfg.Backend = netip.MustParseAddr("100.64.0.2"), BackendUserspace
	w, err := NewWireGuard(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Close()
		_ = os.Remove(filepath.Join(runDir, cfg.Name+".sock"))
		_ = os.Remove(filepath.Join(runDir, DeviceLogFile))
	})
	ops := nsKernelOps{} // wgctrl from here: the socket is a file

	k := testKeys(t, 4)
	ep := netip.MustParseAddrPort
	peers := []WGPeer{
		{NodeID: "a", PublicKey: k[1].PublicKey(), Endpoint: ep("10.213.1.12:51820"), TunnelIP: netip.MustParseAddr("100.64.0.3"),
			Subnets: []netip.Prefix{netip.MustParsePrefix("10.44.0.128/25")}},
		{NodeID: "b", PublicKey: k[2].PublicKey(), Endpoint: ep("10.213.1.13:51820"), TunnelIP: netip.MustParseAddr("100.64.0.4")},
	}
	check := func(step string, self KeyPair, peers []WGPeer) {
		t.Helper()
		dc, errs := Desired(self, cfg.Port, peers)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		dev, err := ops.Device(cfg.Name)
		if err != nil {
			t.Fatalf("%s: read back: %v", step, err)
		}
		if dev.PublicKey != wgtypes.Key(self.Public) || dev.ListenPort != cfg.Port {
			t.Fatalf("%s: key %s port %d", step, dev.PublicKey, dev.ListenPort)
		}
		got := map[[32]byte]wgtypes.Peer{}
		for _, p := range dev.Peers {
			got[p.PublicKey] = p
		}
		if len(got) != len(dc.Peers) {
			t.Fatalf("%s: %d peers, want %d", step, len(got), len(dc.Peers))
		}
		for _, want := range dc.Peers {
			p, ok := got[want.PublicKey]
			var end netip.AddrPort
			if ok && p.Endpoint != nil {
				end = netip.AddrPortFrom(p.Endpoint.AddrPort().Addr().Unmap(), p.Endpoint.AddrPort().Port())
			}
			if !ok || end != want.Endpoint || p.PersistentKeepaliveInterval != want.Keepalive {
				t.Fatalf("%s: peer %s: %+v", step, want.NodeID, p)
			}
			var allowed []netip.Prefix
			for _, a := range p.AllowedIPs {
				ip, _ := netip.AddrFromSlice(a.IP)
				ones, _ := a.Mask.Size()
				allowed = append(allowed, netip.PrefixFrom(ip.Unmap(), ones))
			}
			if !reflect.DeepEqual(allowed, want.AllowedIPs) {
				t.Fatalf("%s: peer %s allowed %v, want %v", step, want.NodeID, allowed, want.AllowedIPs)
			}
		}
		text, err := UAPIGet(w.Socket())
		if err != nil {
			t.Fatal(err)
		}
		st, err := parseDeviceState(text)
		if err != nil || len(st.Peers) != len(dc.Peers) || st.PrivateKey != clampKey(self.Private) {
			t.Fatalf("%s: UAPI state %+v %v", step, st, err)
		}
	}

	// Replace with the key and port, as a new kernel device gets them.
	dc, _ := Desired(w.keys, cfg.Port, peers)
	if err := ops.Configure(cfg.Name, planPeers(dc, nil).kernelConfig(&w.keys.Private, cfg.Port)); err != nil {
		t.Fatal(err)
	}
	check("replace", w.keys, peers)

	// In place: a peer gone, one added, one updated; then a new key.
	peers2 := []WGPeer{peers[0], {NodeID: "c", PublicKey: k[3].PublicKey(), Endpoint: ep("10.213.1.14:51820"), TunnelIP: netip.MustParseAddr("100.64.0.5")}}
	peers2[0].Subnets = append(peers2[0].Subnets, netip.MustParsePrefix("10.45.0.0/25"))
	dc2, _ := Desired(w.keys, cfg.Port, peers2)
	if err := ops.Configure(cfg.Name, planPeers(dc2, dc.Keys()).kernelConfig(nil, 0)); err != nil {
		t.Fatal(err)
	}
	check("update in place", w.keys, peers2)
	next, _ := GenerateKeyPair()
	dc3, _ := Desired(next, cfg.Port, peers2)
	if err := ops.Configure(cfg.Name, planPeers(dc3, dc2.Keys()).kernelConfig(&next.Private, 0)); err != nil {
		t.Fatal(err)
	}
	check("new key", next, peers2)
}

// TestDeleteKernelDevice: leaving the cluster deletes a kernel WireGuard
// link of the name and leaves any other link (the userspace path's TUN
// device is its process's to remove) alone.
func TestDeleteKernelDevice(t *testing.T) {
	ns, nsPath := netnsForTest(t, "shwgdel")
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "shoal.wg", "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := DeleteKernelDevice(nsPath, "shoal.wg"); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("ip", "-n", ns, "link", "show", "shoal.wg").Run(); err != nil {
		t.Fatal("a bridge of the name was deleted")
	}
	if err := DeleteKernelDevice(nsPath, "none.wg"); err != nil {
		t.Fatalf("no link: %v", err)
	}
	if KernelSupported(nsPath) != nil {
		t.Log("no kernel WireGuard: the deletion of a wireguard link cannot run here")
		return
	}
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "kwg", "type", "wireguard").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := DeleteKernelDevice(nsPath, "kwg"); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("ip", "-n", ns, "link", "show", "kwg").Run(); err == nil {
		t.Fatal("the kernel WireGuard link is still there")
	}
}

// TestWatchLink: the kernel path's watch of its link (on a bridge here:
// no wireguard link can be made on this kernel) reports the link's
// deletion once, and nothing after it was stopped.
func TestWatchLink(t *testing.T) {
	ns, nsPath := netnsForTest(t, "shwgwat")
	add := func(name string) {
		t.Helper()
		if out, err := exec.Command("ip", "-n", ns, "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	ops := nsKernelOps{nsPath: nsPath}
	add("wa")
	add("wb")
	goneA, goneB := make(chan struct{}, 2), make(chan struct{}, 2)
	stopA, err := ops.watchLink("wa", "bridge", func() { goneA <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	stopB, err := ops.watchLink("wb", "bridge", func() { goneB <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	stopB()
	if out, err := exec.Command("ip", "-n", ns, "link", "del", "wb").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := exec.Command("ip", "-n", ns, "link", "del", "wa").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	select {
	case <-goneA:
	case <-time.After(10 * time.Second):
		t.Fatal("the deletion of wa was not seen")
	}
	// A report for the stopped watch of wb (deleted before wa) would be
	// in by the time a watch made later has seen a later deletion.
	add("wc")
	goneC := make(chan struct{}, 1)
	stopC, err := ops.watchLink("wc", "bridge", func() { goneC <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer stopC()
	_ = exec.Command("ip", "-n", ns, "link", "del", "wc").Run()
	<-goneC
	select {
	case <-goneB:
		t.Fatal("a stopped watch reported a deletion")
	default:
	}
	// A watch of a link that is already gone reports at once.
	goneD := make(chan struct{}, 1)
	stopD, err := ops.watchLink("wd", "bridge", func() { goneD <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer stopD()
	select {
	case <-goneD:
	case <-time.After(10 * time.Second):
		t.Fatal("a missing link was not reported")
	}
}
