package overlay

// Real data-plane tests: two "hosts" are network namespaces whose underlay
// veths meet on a bridge inside a third "switch" namespace (nothing touches
// the root namespace's links or addresses); "containers" are plain network
// namespaces bind-mounted by `ip netns add`. Every namespace is deleted with
// t.Cleanup, which also destroys every device inside it.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-org/shoal/overlay/ipam"
	"github.com/shoal-org/shoal/overlay/meshreturn"
	"golang.org/x/sys/unix"
)

var nsSeq atomic.Int32

// requireNetAdmin skips the test unless it runs as root with ip and busybox.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, bin := range []string{"ip", "bridge", "/bin/busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: %v", bin, err)
		}
	}
}

// sh runs a command and fails the test if it fails.
func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// reapOnce removes, before the first namespace of this test process, the
// namespaces a test process that is gone left behind (killed before its
// cleanups ran: a -timeout panic, a SIGKILL): their names carry its pid.
var reapOnce sync.Once

func reapStaleNetns(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		pid, ok := staleOwner(name)
		if !ok || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its owner still runs
		}
		// Processes left in it (a WireGuard device process outlives the
		// test process that started it) go first.
		if pids, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, f := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Logf("reap stale namespace %s: %v %s", name, err, out)
		}
	}
}

// staleOwner returns the pid in a namespace name made by newNetns.
func staleOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "ovt")
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(digits)
	return pid, ok && err == nil && pid > 0
}

// newNetns creates a named network namespace removed at cleanup and
// returns its name and bind-mount path.
func newNetns(t *testing.T, role string) (name, path string) {
	t.Helper()
	reapOnce.Do(func() { reapStaleNetns(t) })
	name = fmt.Sprintf("ovt%d-%d-%s", os.Getpid(), nsSeq.Add(1), role)
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", name, err, out)
		}
	})
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name, "/var/run/netns/" + name
}

// testHost is one simulated node.
type testHost struct {
	ns, nsPath string
	sw         string // the switch namespace of the underlay
	cfg        Config
	ov         *Overlay
}

// newHosts builds n hosts on a shared underlay 10.231.1.0/24 and returns
// them with an Overlay config each (node i owns 10.42.i.0/24); Setup is left
// to the caller.
func newHosts(t *testing.T, n int) []*testHost {
	t.Helper()
	sw, _ := newNetns(t, "sw")
	sh(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	sh(t, "ip", "-n", sw, "link", "set", "br0", "up")
	var hosts []*testHost
	for i := 1; i <= n; i++ {
		ns, path := newNetns(t, fmt.Sprintf("h%d", i))
		port := fmt.Sprintf("p%d", i)
		ul := fmt.Sprintf("10.231.1.%d", 10+i)
		sh(t, "ip", "-n", ns, "link", "add", "ul0", "type", "veth", "peer", "name", port, "netns", sw)
		sh(t, "ip", "-n", sw, "link", "set", port, "master", "br0", "up")
		sh(t, "ip", "-n", ns, "addr", "add", ul+"/24", "dev", "ul0")
		sh(t, "ip", "-n", ns, "link", "set", "ul0", "up")
		cfg := DefaultConfig()
		cfg.NodeID = fmt.Sprintf("node-%d", i)
		cfg.UnderlayIP = netip.MustParseAddr(ul)
		cfg.Subnet = netip.MustParsePrefix(fmt.Sprintf("10.42.%d.0/24", i))
		cfg.StateDir = t.TempDir()
		cfg.NetNS = path
		cfg.ResyncInterval = 0
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
		hosts = append(hosts, &testHost{ns: ns, nsPath: path, sw: sw, cfg: cfg})
	}
	return hosts
}

// start creates and sets up the host's Overlay, closed when the test owner
// ends (owner may be a parent of t).
func (h *testHost) start(t, owner *testing.T) {
	t.Helper()
	ov, err := New(h.cfg)
	if err != nil {
		t.Fatalf("New %s: %v", h.cfg.NodeID, err)
	}
	owner.Cleanup(func() { _ = ov.Close() })
	if err := ov.Setup(t.Context()); err != nil {
		t.Fatalf("Setup %s: %v", h.cfg.NodeID, err)
	}
	h.ov = ov
}

func peersOf(hosts []*testHost) []Peer {
	var ps []Peer
	for _, h := range hosts {
		ps = append(ps, Peer{NodeID: h.cfg.NodeID, Subnet: h.cfg.Subnet, UnderlayIP: h.cfg.UnderlayIP})
	}
	return ps
}

// ping checks that a ping from namespace ns to ip succeeds, retrying for a
// few seconds (the first packets may race neighbour resolution).
func ping(t *testing.T, ns, ip string) {
	t.Helper()
	// 30 s: a WireGuard handshake initiation that reached the peer before
	// the peer knew the sender is retried only after REKEY_TIMEOUT (5 s),
	// and so are two initiations that crossed (two devices given each
	// other at the same moment: each answers the other's, neither answer
	// is taken). Both retry after 5 s plus up to 1/3 s of jitter, so on a
	// loaded machine, where each device process takes tens of ms to answer,
	// they can cross again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "exec", ns, "/bin/busybox", "ping", "-c1", "-W1", ip).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping %s from %s: %v\n%s", ip, ns, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// noPing checks that ip is unreachable from ns.
func noPing(t *testing.T, ns, ip string) {
	t.Helper()
	if err := exec.Command("ip", "netns", "exec", ns, "/bin/busybox", "ping", "-c1", "-W1", ip).Run(); err == nil {
		t.Fatalf("ping %s from %s succeeded, want failure", ip, ns)
	}
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// peerState returns the route, neighbour and FDB lines of the VXLAN device.
func peerState(t *testing.T, h *testHost) (routes, neighs, fdb string) {
	t.Helper()
	vx := h.cfg.VXLANName
	return sh(t, "ip", "-n", h.ns, "route", "show", "dev", vx),
		sh(t, "ip", "-n", h.ns, "neigh", "show", "dev", vx),
		sh(t, "bridge", "-n", h.ns, "fdb", "show", "dev", vx)
}

// checkPeer asserts that h has exactly the entries for peer p (or none).
func checkPeer(t *testing.T, h *testHost, p *testHost, present bool) {
	t.Helper()
	routes, neighs, fdb := peerState(t, h)
	gw := p.cfg.Subnet.Addr().String()
	mac := VTEPMAC(p.cfg.NodeID).String()
	wants := []struct{ text, line string }{
		{routes, fmt.Sprintf("%s via %s onlink", p.cfg.Subnet, gw)},
		{neighs, fmt.Sprintf("%s lladdr %s PERMANENT", gw, mac)},
		{fdb, fmt.Sprintf("%s dst %s self permanent", mac, p.cfg.UnderlayIP)},
	}
	for _, w := range wants {
		if n := strings.Count(w.text, w.line); (present && n != 1) || (!present && strings.Contains(w.text, gw) && strings.Contains(w.text, mac)) {
			t.Errorf("%s: %q appears %d times (want present=%v) in:\n%s", h.cfg.NodeID, w.line, n, present, w.text)
		}
	}
	if !present && (strings.Contains(routes, p.cfg.Subnet.String()) || strings.Contains(neighs, gw+" ") || strings.Contains(fdb, mac)) {
		t.Errorf("%s still has entries of %s:\n%s%s%s", h.cfg.NodeID, p.cfg.NodeID, routes, neighs, fdb)
	}
	// The routing mesh's return path to p (overlay/meshreturn).
	mark := meshreturn.Mark(VTEPMAC(p.cfg.NodeID))
	rules := sh(t, "ip", "-n", h.ns, "-4", "rule", "show", "pref", fmt.Sprint(meshreturn.RulePriority))
	table := sh(t, "ip", "-n", h.ns, "-4", "route", "show", "table", fmt.Sprint(mark))
	rule := fmt.Sprintf("fwmark %#x iif %s lookup %d", mark, h.cfg.BridgeName, mark)
	route := fmt.Sprintf("default via %s dev %s onlink", gw, h.cfg.VXLANName)
	if got := strings.Count(rules, rule); present && got != 1 || !present && got != 0 {
		t.Errorf("%s: return rule %q appears %d times (want present=%v) in:\n%s", h.cfg.NodeID, rule, got, present, rules)
	}
	if got := strings.Count(table, route); present && got != 1 || !present && got != 0 {
		t.Errorf("%s: return route %q appears %d times in table %d (want present=%v):\n%s", h.cfg.NodeID, route, got, mark, present, table)
	}
}

func TestOverlayTwoHosts(t *testing.T) {
	requireNetAdmin(t)
	outer := t
	hosts := newHosts(t, 2)
	a, b := hosts[0], hosts[1]
	a.start(t, t)
	b.start(t, t)
	for _, h := range hosts {
		if err := h.ov.SetPeers(peersOf(hosts)); err != nil { // includes itself: ignored
			t.Fatalf("SetPeers %s: %v", h.cfg.NodeID, err)
		}
	}

	// Devices as the recipe wants them.
	if got := a.ov.MTU(); got != 1450 {
		t.Fatalf("MTU = %d, want 1450 (1500 underlay - 50)", got)
	}
	vxInfo := sh(t, "ip", "-n", a.ns, "-d", "link", "show", a.cfg.VXLANName)
	for _, want := range []string{"mtu 1450", VTEPMAC(a.cfg.NodeID).String(), "vxlan id 4242", "local 10.231.1.11", "dev ul0", "dstport 4789", "nolearning"} {
		if !strings.Contains(vxInfo, want) {
			t.Errorf("VXLAN device lacks %q:\n%s", want, vxInfo)
		}
	}
	if got := sh(t, "ip", "-n", a.ns, "-4", "addr", "show", a.cfg.VXLANName); !strings.Contains(got, "inet 10.42.1.0/32") {
		t.Errorf("VXLAN address:\n%s", got)
	}
	if got := sh(t, "ip", "-n", a.ns, "-4", "addr", "show", a.cfg.BridgeName); !strings.Contains(got, "inet 10.42.1.1/24") {
		t.Errorf("bridge address:\n%s", got)
	}
	if got := sh(t, "ip", "-n", a.ns, "link", "show", a.cfg.BridgeName); !strings.Contains(got, derivedMAC("shoal-bridge:"+a.cfg.NodeID).String()) {
		t.Errorf("bridge MAC not the derived one:\n%s", got)
	}
	if got := a.ov.BridgeIP().String(); got != "10.42.1.1" {
		t.Errorf("BridgeIP = %s", got)
	}
	if got := strings.TrimSpace(sh(t, "ip", "netns", "exec", a.ns, "cat", "/proc/sys/net/ipv4/ip_forward")); got != "1" {
		t.Errorf("ip_forward = %s", got)
	}
	checkPeer(t, a, b, true)
	checkPeer(t, b, a, true)

	// Containers: c1, c2 on A, c3 on B.
	ctx := t.Context()
	c1, c1Path := newNetns(t, "c1")
	c2, c2Path := newNetns(t, "c2")
	c3, c3Path := newNetns(t, "c3")
	t.Cleanup(func() { // detach before the namespaces go (cleanup is LIFO)
		for _, c := range []struct {
			h        *testHost
			id, path string
		}{{a, "c1", c1Path}, {a, "c2", c2Path}, {b, "c3", c3Path}} {
			if c.h.ov != nil {
				_ = c.h.ov.Detach(context.Background(), c.id, c.path)
			}
		}
	})
	attach := func(h *testHost, id, path string) string {
		t.Helper()
		ip, err := h.ov.Attach(ctx, id, path)
		if err != nil {
			t.Fatalf("Attach %s on %s: %v", id, h.cfg.NodeID, err)
		}
		if addr, err := netip.ParseAddr(ip); err != nil || !h.cfg.Subnet.Contains(addr) {
			t.Fatalf("Attach %s = %q: not in %s", id, ip, h.cfg.Subnet)
		}
		return ip
	}
	ip1 := attach(a, "c1", c1Path)
	ip2 := attach(a, "c2", c2Path)
	ip3 := attach(b, "c3", c3Path)
	if ip1 == ip2 {
		t.Fatalf("c1 and c2 got the same IP %s", ip1)
	}
	if got := sh(t, "ip", "-n", a.ns, "link", "show", a.cfg.BridgeName); !strings.Contains(got, derivedMAC("shoal-bridge:"+a.cfg.NodeID).String()) {
		t.Errorf("bridge MAC changed when ports were added:\n%s", got)
	}
	veth := sh(t, "ip", "-n", a.ns, "-d", "link", "show", VethName("c1"))
	for _, want := range []string{"mtu 1450", "master " + a.cfg.BridgeName, "hairpin on", "state UP", "alias c1"} {
		if !strings.Contains(veth, want) {
			t.Errorf("host veth lacks %q:\n%s", want, veth)
		}
	}
	eth0 := sh(t, "ip", "-n", c1, "addr", "show", "eth0")
	for _, want := range []string{"mtu 1450", "inet " + ip1 + "/24", "0a:58:0a:2a:01"} {
		if !strings.Contains(eth0, want) {
			t.Errorf("container eth0 lacks %q:\n%s", want, eth0)
		}
	}
	if got := sh(t, "ip", "-n", c1, "route", "show", "default"); !strings.Contains(got, "via 10.42.1.1 dev eth0") {
		t.Errorf("container default route: %s", got)
	}

	traffic := func(t *testing.T) {
		t.Helper()
		ping(t, c1, ip2) // same host
		ping(t, c1, ip3) // cross host
		ping(t, c3, ip2) // cross host, other direction
		ping(t, c1, ip1) // itself (lo)
	}
	t.Run("traffic", traffic)

	t.Run("idempotent", func(t *testing.T) {
		for _, h := range hosts {
			if err := h.ov.Setup(ctx); err != nil {
				t.Fatalf("second Setup: %v", err)
			}
			if err := h.ov.SetPeers(peersOf(hosts)); err != nil {
				t.Fatalf("second SetPeers: %v", err)
			}
		}
		if again := attach(a, "c1", c1Path); again != ip1 {
			t.Fatalf("second Attach c1 = %s, want %s", again, ip1)
		}
		checkPeer(t, a, b, true)
		checkPeer(t, b, a, true)
		traffic(t)
	})

	t.Run("entries changed behind our back", func(t *testing.T) {
		// Setup lists the kernel's entries and writes only what differs
		// (peerWork): each kind of drift must still be found and fixed.
		gw := b.cfg.Subnet.Addr().String()
		mac := VTEPMAC(b.cfg.NodeID).String()
		vx := a.cfg.VXLANName
		mark := fmt.Sprint(meshreturn.Mark(VTEPMAC(b.cfg.NodeID)))
		sh(t, "ip", "-n", a.ns, "neigh", "del", gw, "dev", vx)
		sh(t, "bridge", "-n", a.ns, "fdb", "replace", mac, "dev", vx, "dst", "10.231.1.99", "self", "permanent")
		sh(t, "bridge", "-n", a.ns, "fdb", "append", mac, "dev", vx, "dst", "10.231.1.98", "self", "permanent")
		sh(t, "ip", "-n", a.ns, "route", "replace", b.cfg.Subnet.String(), "via", "10.42.99.0", "dev", vx, "onlink")
		sh(t, "ip", "-n", a.ns, "route", "del", "default", "table", mark)
		if err := a.ov.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		checkPeer(t, a, b, true)
		if _, _, fdb := peerState(t, a); strings.Contains(fdb, "10.231.1.99") || strings.Contains(fdb, "10.231.1.98") {
			t.Fatalf("wrong FDB destinations left:\n%s", fdb)
		}
		traffic(t)
	})

	t.Run("vxlan address deleted", func(t *testing.T) {
		sh(t, "ip", "-n", a.ns, "addr", "flush", "dev", a.cfg.VXLANName)
		if routes, _, _ := peerState(t, a); strings.Contains(routes, b.cfg.Subnet.String()) {
			t.Logf("kernel kept the route after the address flush (recipe says it drops it)")
		}
		noPing(t, c1, ip3)
		if err := a.ov.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		checkPeer(t, a, b, true)
		traffic(t)
	})

	t.Run("vxlan device drifted", func(t *testing.T) {
		// Someone re-created the device with another VNI and MTU: Setup must
		// replace it and re-apply the peers.
		sh(t, "ip", "-n", a.ns, "link", "del", a.cfg.VXLANName)
		sh(t, "ip", "-n", a.ns, "link", "add", a.cfg.VXLANName, "mtu", "1300", "type", "vxlan", "id", "7", "dstport", "4789", "local", "10.231.1.11", "dev", "ul0")
		if err := a.ov.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		if got := sh(t, "ip", "-n", a.ns, "-d", "link", "show", a.cfg.VXLANName); !strings.Contains(got, "vxlan id 4242") || !strings.Contains(got, "mtu 1450") {
			t.Fatalf("device not fixed:\n%s", got)
		}
		checkPeer(t, a, b, true)
		traffic(t)
	})

	t.Run("Run repairs", func(t *testing.T) {
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.ov.Run(runCtx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		time.Sleep(100 * time.Millisecond) // let the subscriptions start
		sh(t, "ip", "-n", a.ns, "addr", "flush", "dev", a.cfg.VXLANName)
		eventually(t, 5*time.Second, func() error {
			if routes, _, _ := peerState(t, a); !strings.Contains(routes, b.cfg.Subnet.String()) {
				return errors.New("route to B not restored by Run")
			}
			return nil
		})
		traffic(t)
	})

	t.Run("peer removed and back", func(t *testing.T) {
		if err := a.ov.SetPeers(peersOf(hosts[:1])); err != nil {
			t.Fatal(err)
		}
		checkPeer(t, a, b, false)
		noPing(t, c1, ip3)
		if err := a.ov.SetPeers(peersOf(hosts)); err != nil {
			t.Fatal(err)
		}
		checkPeer(t, a, b, true)
		traffic(t)
	})

	t.Run("invalid peer is reported, others applied", func(t *testing.T) {
		bad := append(peersOf(hosts), Peer{NodeID: "x", Subnet: netip.MustParsePrefix("10.99.0.0/24"), UnderlayIP: netip.MustParseAddr("10.231.1.99")})
		err := a.ov.SetPeers(bad)
		if !errors.Is(err, ErrInvalidPeer) || !errors.Is(err, ErrPartial) {
			t.Fatalf("SetPeers with a bad peer = %v, want ErrPartial and ErrInvalidPeer", err)
		}
		checkPeer(t, a, b, true)
	})

	t.Run("restart keeps IPs", func(t *testing.T) {
		if err := a.ov.Close(); err != nil {
			t.Fatal(err)
		}
		a.start(t, outer) // same StateDir, same devices: adopted
		if err := a.ov.SetPeers(peersOf(hosts)); err != nil {
			t.Fatal(err)
		}
		if got := attach(a, "c1", c1Path); got != ip1 {
			t.Fatalf("after restart c1 = %s, want %s", got, ip1)
		}
		if got := a.ov.Attached(); got["c2"].String() != ip2 {
			t.Fatalf("after restart allocations = %v", got)
		}
		traffic(t)
	})

	t.Run("detach", func(t *testing.T) {
		if err := a.ov.Detach(ctx, "c2", c2Path); err != nil {
			t.Fatal(err)
		}
		if _, ok := a.ov.Attached()["c2"]; ok {
			t.Fatal("c2 still holds an address")
		}
		if err := exec.Command("ip", "-n", a.ns, "link", "show", VethName("c2")).Run(); err == nil {
			t.Fatal("c2's veth still exists")
		}
		if err := exec.Command("ip", "-n", c2, "link", "show", "eth0").Run(); err == nil {
			t.Fatal("c2's eth0 still exists")
		}
		if err := a.ov.Detach(ctx, "c2", c2Path); err != nil {
			t.Fatalf("second Detach: %v", err)
		}
		if err := a.ov.Detach(ctx, "never-attached", ""); err != nil {
			t.Fatalf("Detach unknown: %v", err)
		}
		noPing(t, c1, ip2)
		// Re-attach works and gets a fresh address (next fit, not ip2).
		if got := attach(a, "c2", c2Path); got == ip2 || got == ip1 {
			t.Fatalf("re-attached c2 = %s; want a new address", got)
		}
	})

	t.Run("teardown", func(t *testing.T) {
		if err := b.ov.Teardown(); err != nil {
			t.Fatal(err)
		}
		links := sh(t, "ip", "-n", b.ns, "link", "show")
		for _, name := range []string{b.cfg.BridgeName, b.cfg.VXLANName, VethName("c3")} {
			if strings.Contains(links, name+":") || strings.Contains(links, name+"@") {
				t.Errorf("%s still exists after Teardown:\n%s", name, links)
			}
		}
		if rules := sh(t, "ip", "-n", b.ns, "-4", "rule", "show", "pref", fmt.Sprint(meshreturn.RulePriority)); strings.TrimSpace(rules) != "" {
			t.Errorf("mesh return rules kept after Teardown:\n%s", rules)
		}
		if len(b.ov.Attached()) != 0 {
			t.Error("allocations kept after Teardown")
		}
		if _, err := os.Stat(b.cfg.StateDir + "/" + ipam.File); !os.IsNotExist(err) {
			t.Errorf("state file kept after Teardown: %v", err)
		}
	})
}

func TestAttachBeforeSetup(t *testing.T) {
	requireNetAdmin(t)
	hosts := newHosts(t, 1)
	ov, err := New(hosts[0].cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ov.Close()
	_, cPath := newNetns(t, "c")
	if _, err := ov.Attach(t.Context(), "c", cPath); !errors.Is(err, ErrNotSetUp) {
		t.Fatalf("Attach before Setup = %v, want ErrNotSetUp", err)
	}
	// SetPeers before Setup only records; Setup applies.
	peer := &testHost{cfg: Config{NodeID: "node-9", Subnet: netip.MustParsePrefix("10.42.9.0/24"), UnderlayIP: netip.MustParseAddr("10.231.1.99")}}
	if err := ov.SetPeers(peersOf([]*testHost{peer})); err != nil {
		t.Fatal(err)
	}
	if err := ov.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	hosts[0].ov = ov
	checkPeer(t, hosts[0], peer, true)
}

func TestSetupWithoutUnderlay(t *testing.T) {
	requireNetAdmin(t)
	hosts := newHosts(t, 1)
	cfg := hosts[0].cfg
	cfg.UnderlayIP = netip.MustParseAddr("10.231.1.200")
	ov, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ov.Close()
	if err := ov.Setup(t.Context()); !errors.Is(err, ErrNoUnderlay) {
		t.Fatalf("Setup = %v, want ErrNoUnderlay", err)
	}
}

func TestAttachConcurrent(t *testing.T) {
	requireNetAdmin(t)
	hosts := newHosts(t, 1)
	h := hosts[0]
	h.start(t, t)
	const n = 6
	type ctr struct{ ns, path, id, ip string }
	ctrs := make([]*ctr, n)
	for i := range ctrs {
		ns, path := newNetns(t, fmt.Sprintf("k%d", i))
		ctrs[i] = &ctr{ns: ns, path: path, id: fmt.Sprintf("k%d", i)}
	}
	errs := make(chan error, n)
	for _, c := range ctrs {
		go func() {
			ip, err := h.ov.Attach(t.Context(), c.id, c.path)
			c.ip = ip
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, c := range ctrs {
			_ = h.ov.Detach(context.Background(), c.id, c.path)
		}
	})
	seen := map[string]bool{}
	for _, c := range ctrs {
		if seen[c.ip] {
			t.Fatalf("address %s handed out twice", c.ip)
		}
		seen[c.ip] = true
	}
	for _, c := range ctrs[1:] {
		ping(t, ctrs[0].ns, c.ip)
	}
}

// TestSetupLoosensStrictRPFilter: mesh connections arrive on the VXLAN
// device from client addresses the main table routes through the
// underlay, so a strict reverse-path filter is made loose on that device
// (and an unset one is left alone).
func TestSetupLoosensStrictRPFilter(t *testing.T) {
	requireNetAdmin(t)
	hosts := newHosts(t, 2)
	strict, off := hosts[0], hosts[1]
	sh(t, "ip", "netns", "exec", strict.ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
	sh(t, "ip", "netns", "exec", off.ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
	strict.start(t, t)
	off.start(t, t)
	read := func(h *testHost) string {
		return strings.TrimSpace(sh(t, "ip", "netns", "exec", h.ns, "cat", "/proc/sys/net/ipv4/conf/"+h.cfg.VXLANName+"/rp_filter"))
	}
	if got := read(strict); got != "2" {
		t.Errorf("strict host: %s rp_filter = %s, want 2 (loose)", strict.cfg.VXLANName, got)
	}
	if got := read(off); got != "0" {
		t.Errorf("host without rp_filter: %s rp_filter = %s, want 0 (left alone)", off.cfg.VXLANName, got)
	}
}

// TestAttachDoesNotQueue: an attach that is slow (here: its namespace path
// is a FIFO, whose open blocks until a writer comes) does not hold up the
// attach of another container. A burst of container starts used to plug
// one veth at a time behind the overlay's lock.
func TestAttachDoesNotQueue(t *testing.T) {
	requireNetAdmin(t)
	hosts := newHosts(t, 1)
	h := hosts[0]
	h.start(t, t)
	fifo := filepath.Join(t.TempDir(), "slowns")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		_, err := h.ov.Attach(context.Background(), "slow", fifo)
		slow <- err
	}()
	// Release the slow attach however the test ends.
	release := sync.OnceFunc(func() {
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
	})
	defer release()
	// Wait until the slow attach is in its open, holding whatever it holds.
	eventually(t, 10*time.Second, func() error {
		if _, ok := h.ov.AddressOf("slow"); !ok {
			return errors.New("slow attach has no address yet")
		}
		return nil
	})
	_, cPath := newNetns(t, "fast")
	fast := make(chan error, 1)
	go func() {
		_, err := h.ov.Attach(context.Background(), "fast", cPath)
		fast <- err
	}()
	select {
	case err := <-fast:
		if err != nil {
			t.Fatalf("attach while another is under way: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("attach waited for another container's attach to finish")
	}
	t.Cleanup(func() { _ = h.ov.Detach(context.Background(), "fast", cPath) })
	release()
	if err := <-slow; err == nil {
		t.Fatal("attach on a FIFO succeeded")
	}
	if _, ok := h.ov.AddressOf("slow"); ok {
		t.Fatal("the failed attach kept its address")
	}
}
