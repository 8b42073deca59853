package wireguard

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// fakeKernel is a kernelOps that records the calls and keeps a device's
// state as the kernel would.
type fakeKernel struct {
	mu    sync.Mutex
	calls []string
	link  string // type of the link under the name, "" none
	dev   wgtypes.Device
	fail  map[string]error // by call name
	gone  func()
}

func (f *fakeKernel) call(name, detail string) error {
	f.calls = append(f.calls, strings.TrimSpace(name+" "+detail))
	return f.fail[name]
}

func (f *fakeKernel) LinkType(string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.call("linktype", "")
	return f.link
}

func (f *fakeKernel) LinkAdd(string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("linkadd", ""); err != nil {
		return err
	}
	f.link, f.dev = kernelLinkType, wgtypes.Device{}
	return nil
}

func (f *fakeKernel) LinkDel(string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("linkdel", ""); err != nil {
		return err
	}
	f.link, f.dev = "", wgtypes.Device{}
	return nil
}

func (f *fakeKernel) Device(string) (*wgtypes.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("device", ""); err != nil {
		return nil, err
	}
	d := f.dev
	return &d, nil
}

// Configure applies cfg as the kernel does, and records what it set.
func (f *fakeKernel) Configure(_ string, cfg wgtypes.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var what []string
	if cfg.PrivateKey != nil {
		what = append(what, "key")
		f.dev.PrivateKey, f.dev.PublicKey = *cfg.PrivateKey, cfg.PrivateKey.PublicKey()
	}
	if cfg.ListenPort != nil {
		what = append(what, fmt.Sprintf("port=%d", *cfg.ListenPort))
		f.dev.ListenPort = *cfg.ListenPort
	}
	if cfg.ReplacePeers {
		what = append(what, "replace")
		f.dev.Peers = nil
	}
	for _, p := range cfg.Peers {
		if p.Remove {
			what = append(what, "-"+p.PublicKey.String()[:4])
			for i, q := range f.dev.Peers {
				if q.PublicKey == p.PublicKey {
					f.dev.Peers = append(f.dev.Peers[:i], f.dev.Peers[i+1:]...)
					break
				}
			}
			continue
		}
		what = append(what, "+"+p.PublicKey.String()[:4])
		found := false
		for i := range f.dev.Peers {
			if f.dev.Peers[i].PublicKey == p.PublicKey {
				f.dev.Peers[i].AllowedIPs, found = p.AllowedIPs, true
			}
		}
		if !found {
			f.dev.Peers = append(f.dev.Peers, wgtypes.Peer{PublicKey: p.PublicKey, AllowedIPs: p.AllowedIPs})
		}
	}
	return f.call("configure", strings.Join(what, " "))
}

func (f *fakeKernel) LinkUp(_ string, mtu int, addr, within netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.call("linkup", fmt.Sprintf("mtu=%d %s in %s", mtu, addr, within))
}

func (f *fakeKernel) Watch(_ string, gone func()) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("watch", ""); err != nil {
		return nil, err
	}
	f.gone = gone
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		_ = f.call("unwatch", "")
	}, nil
}

func (f *fakeKernel) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func kernelTestConfig(t *testing.T) WireGuardConfig {
	cfg := DefaultWireGuardConfig()
	dir := t.TempDir()
	cfg.KeyFile = filepath.Join(dir, "private.key")
	cfg.TunnelIP = netip.MustParseAddr("100.64.0.2")
	cfg.MTU = 1440
	return cfg
}

func TestDecideKernel(t *testing.T) {
	k := testKeys(t, 2)
	mine := &wgtypes.Device{PublicKey: wgtypes.Key(k[0].Public), ListenPort: 51820}
	for _, tc := range []struct {
		name   string
		link   string
		dev    *wgtypes.Device
		devErr error
		adopt  bool
		why    string
	}{
		{"nothing there", "", nil, nil, false, "no device"},
		{"a TUN device of the userspace path", "tuntap", nil, nil, false, "tuntap link"},
		{"unreadable", "wireguard", nil, unix.EPERM, false, "unreadable"},
		{"another key", "wireguard", &wgtypes.Device{PublicKey: wgtypes.Key(k[1].Public), ListenPort: 51820}, nil, false, "another private key"},
		{"another port", "wireguard", &wgtypes.Device{PublicKey: wgtypes.Key(k[0].Public), ListenPort: 51821}, nil, false, "port 51821"},
		{"this node's device", "wireguard", mine, nil, true, "same key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			adopt, why := DecideKernel(tc.link, tc.dev, tc.devErr, k[0], 51820)
			if adopt != tc.adopt || !strings.Contains(why, tc.why) {
				t.Fatalf("got %v %q, want %v %q", adopt, why, tc.adopt, tc.why)
			}
		})
	}
}

// TestKernelPath runs the WireGuard handle on the kernel path against a
// fake kernel: the calls and their order from start to close.
func TestKernelPath(t *testing.T) {
	cfg := kernelTestConfig(t)
	f := &fakeKernel{link: "tuntap"} // a userspace device's TUN left over
	w, err := newWireGuard(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	if w.Backend() != BackendKernel || w.Adopted() {
		t.Fatalf("backend %s adopted %v", w.Backend(), w.Adopted())
	}
	want := []string{"linktype", "linkdel", "linkadd", "configure key port=51820 replace",
		"linkup mtu=1440 100.64.0.2/16 in 100.64.0.0/16", "watch"}
	if got := f.take(); !reflect.DeepEqual(got, want) {
		t.Fatalf("start: %q\nwant %q", got, want)
	}
	if f.dev.PublicKey != wgtypes.Key(w.keys.Public) {
		t.Fatal("the device does not hold the node's key")
	}

	k := testKeys(t, 3)
	a := WGPeer{NodeID: "a", PublicKey: k[1].PublicKey(), Endpoint: netip.MustParseAddrPort("10.213.1.12:51820"), TunnelIP: netip.MustParseAddr("100.64.0.3")}
	b := WGPeer{NodeID: "b", PublicKey: k[2].PublicKey(), Endpoint: netip.MustParseAddrPort("10.213.1.13:51820"), TunnelIP: netip.MustParseAddr("100.64.0.4"),
		Subnets: []netip.Prefix{netip.MustParsePrefix("10.44.0.128/25")}}
	short := func(kp KeyPair) string { return wgtypes.Key(kp.Public).String()[:4] }

	// Peers set in place (the device made with none), twice: once.
	if err := w.SetPeers([]WGPeer{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := w.SetPeers([]WGPeer{b, a}); err != nil {
		t.Fatal(err)
	}
	if got, want := f.take(), []string{"configure +" + short(k[1]) + " +" + short(k[2])}; !reflect.DeepEqual(got, want) {
		t.Fatalf("peers: %q, want %q", got, want)
	}
	if len(f.dev.Peers) != 2 || len(f.dev.Peers[1].AllowedIPs) != 2 {
		t.Fatalf("device peers: %+v", f.dev.Peers)
	}
	// A peer gone: removed, the other updated in place (no replace).
	if err := w.SetPeers([]WGPeer{b}); err != nil {
		t.Fatal(err)
	}
	if got, want := f.take(), []string{"configure -" + short(k[1]) + " +" + short(k[2])}; !reflect.DeepEqual(got, want) {
		t.Fatalf("peer removed: %q, want %q", got, want)
	}

	// Key rotation: the new key and the peers in one step.
	next, _ := GenerateKeyPair()
	if err := w.SwitchKey(next, []WGPeer{b}); err != nil {
		t.Fatal(err)
	}
	if got, want := f.take(), []string{"configure key +" + short(k[2])}; !reflect.DeepEqual(got, want) {
		t.Fatalf("switch key: %q, want %q", got, want)
	}
	if f.dev.PublicKey != wgtypes.Key(next.Public) || w.PublicKey() != next.PublicKey() {
		t.Fatal("key not switched")
	}
	// A failed switch whose key did land is known to have landed.
	f.fail = map[string]error{"configure": unix.EIO}
	third, _ := GenerateKeyPair()
	if err := w.SwitchKey(third, []WGPeer{b}); err == nil {
		t.Fatal("switch succeeded against a failing kernel")
	}
	f.fail = nil
	if w.PublicKey() != third.PublicKey() {
		t.Fatal("the key the device holds is not the handle's")
	}
	f.take()
	// Unknown peers after the failure: replaced whole next time.
	if err := w.SetPeers([]WGPeer{b}); err != nil {
		t.Fatal(err)
	}
	if got, want := f.take(), []string{"configure replace +" + short(k[2])}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after a failure: %q, want %q", got, want)
	}

	// Handshakes are read from the device.
	if hs, err := w.LastHandshakes(); err != nil || len(hs) != 1 {
		t.Fatalf("handshakes %v %v", hs, err)
	}
	f.take()

	// The link deleted underneath: Done closes.
	f.gone()
	select {
	case <-w.Done():
	default:
		t.Fatal("Done open after the link went")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := f.take(), []string{"unwatch", "linkdel"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("close: %q, want %q", got, want)
	}
	if err := w.Close(); err != nil || len(f.take()) != 0 {
		t.Fatal("second Close did something")
	}
}

// TestKernelAdoptAndRelease: a new handle adopts the device the released
// one left, peers and all, and updates its peers in place.
func TestKernelAdoptAndRelease(t *testing.T) {
	cfg := kernelTestConfig(t)
	f := &fakeKernel{}
	w, err := newWireGuard(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	k := testKeys(t, 2)
	a := WGPeer{NodeID: "a", PublicKey: k[1].PublicKey(), Endpoint: netip.MustParseAddrPort("10.213.1.12:51820"), TunnelIP: netip.MustParseAddr("100.64.0.3")}
	if err := w.SetPeers([]WGPeer{a}); err != nil {
		t.Fatal(err)
	}
	if err := w.Release(); err != nil {
		t.Fatal(err)
	}
	<-w.Done()
	if got := f.take(); got[len(got)-1] != "unwatch" || f.link != kernelLinkType {
		t.Fatalf("release: %q, link %q", got, f.link)
	}
	w2, err := newWireGuard(cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	if !w2.Adopted() {
		t.Fatal("not adopted")
	}
	if got, want := f.take(), []string{"linktype", "device", "linkup mtu=1440 100.64.0.2/16 in 100.64.0.0/16", "watch"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("adopt: %q, want %q", got, want)
	}
	if err := w2.SetPeers([]WGPeer{a}); err != nil {
		t.Fatal(err)
	}
	if got := f.take(); len(got) != 1 || strings.Contains(got[0], "replace") {
		t.Fatalf("peers after adoption: %q (want an update in place)", got)
	}
	_ = w2.Close()
}

// TestKernelStartFailures: a device made and then failing to configure
// or come up is deleted again; nothing is left.
func TestKernelStartFailures(t *testing.T) {
	for _, step := range []string{"linkadd", "configure", "linkup", "watch"} {
		t.Run(step, func(t *testing.T) {
			f := &fakeKernel{fail: map[string]error{step: unix.EIO}}
			if _, err := newWireGuard(kernelTestConfig(t), f); !errors.Is(err, unix.EIO) {
				t.Fatalf("err = %v", err)
			}
			if f.link != "" {
				t.Fatalf("left a %s link behind: %q", f.link, f.calls)
			}
		})
	}
}

func TestProbeKernel(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      map[string]error
		wantNoWG  bool
		wantErr   bool
		wantCalls []string
	}{
		{"supported", nil, false, false, []string{"linktype", "linkadd", "device", "linkdel"}},
		{"no link type (this machine)", map[string]error{"linkadd": unix.EOPNOTSUPP}, true, true, []string{"linktype", "linkadd"}},
		{"no generic netlink family", map[string]error{"device": unix.ENOENT}, true, true, []string{"linktype", "linkadd", "device", "linkdel"}},
		{"probe not permitted", map[string]error{"linkadd": unix.EPERM}, false, true, []string{"linktype", "linkadd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeKernel{fail: tc.fail}
			err := probeKernel(f, "shwgp1")
			if (err != nil) != tc.wantErr || errors.Is(err, ErrNoKernelWireGuard) != tc.wantNoWG {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(f.calls, tc.wantCalls) || f.link != "" {
				t.Fatalf("calls %q, link %q", f.calls, f.link)
			}
		})
	}
}
