package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/overlay/guard"
	"github.com/shoal-org/shoal/overlay/ipam"
	"github.com/shoal-org/shoal/overlay/wireguard"
)

// runWatch runs h's Run (the watch) until the test ends, and returns
// what Run returns should it end before.
func (h *testHost) runWatch(t *testing.T) <-chan error {
	t.Helper()
	runCtx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	ended := make(chan struct{})
	go func() { done <- h.ov.Run(runCtx); close(ended) }()
	t.Cleanup(func() { cancel(); <-ended })
	// Run's first pass follows its subscriptions: once it has re-applied,
	// events are watched.
	time.Sleep(200 * time.Millisecond)
	return done
}

// TestBridgeDeletedReattachesVeths: the bridge deleted underneath (an
// admin's `ip link del`, a network manager) is re-created by Run, and the
// running containers' veths go back into it with the hairpin flag, so the
// containers reach the bridge, each other and themselves through a VIP
// again. Before, only Attach enslaved a veth: the re-created bridge stayed
// empty and the containers cut off until they were restarted.
func TestBridgeDeletedReattachesVeths(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	a.start(t, t)
	c1, c1Path := newNetns(t, "c1")
	_, c2Path := newNetns(t, "c2")
	t.Cleanup(func() {
		_ = a.ov.Detach(context.Background(), "c1", c1Path)
		_ = a.ov.Detach(context.Background(), "c2", c2Path)
	})
	if _, err := a.ov.Attach(t.Context(), "c1", c1Path); err != nil {
		t.Fatal(err)
	}
	ip2, err := a.ov.Attach(t.Context(), "c2", c2Path)
	if err != nil {
		t.Fatal(err)
	}
	ping(t, c1, ip2)

	a.runWatch(t)
	sh(t, "ip", "-n", a.ns, "link", "del", a.cfg.BridgeName)
	eventually(t, 10*time.Second, func() error {
		for _, id := range []string{"c1", "c2"} {
			out, err := exec.Command("ip", "-n", a.ns, "-d", "link", "show", VethName(id)).CombinedOutput()
			if err != nil {
				return fmt.Errorf("veth of %s: %v %s", id, err, out)
			}
			for _, want := range []string{"master " + a.cfg.BridgeName, "hairpin on", "state UP"} {
				if !strings.Contains(string(out), want) {
					return errors.New("the re-created bridge has not taken back the veth of " + id + " (" + want + "):\n" + string(out))
				}
			}
		}
		return nil
	})
	ping(t, c1, a.ov.BridgeIP().String())
	ping(t, c1, ip2)
}

// TestWireGuardAdoptKeepsRoutedAddr: a new agent adopting the running
// WireGuard device gives the TUN its tunnel address without taking the
// routed networks' addresses off it (the masquerade source of mesh
// connections into encrypted networks: their conntrack entries went with
// them at every agent restart, until the network loop put the addresses
// back); another address inside the tunnel prefix, a tunnel address the
// node had before, does go.
func TestWireGuardAdoptKeepsRoutedAddr(t *testing.T) {
	requireNetAdmin(t)
	b := newWGHosts(t)[1]
	b.start(t, t)
	show := func() string { return sh(t, "ip", "-n", b.ns, "-4", "addr", "show", "dev", b.wgCfg.Name) }
	routed := b.ov.routedAddr().IPNet.String()
	tunnel := netip.PrefixFrom(b.wgCfg.TunnelIP, b.wgCfg.TunnelCIDR.Bits()).String()
	before := show()
	if !strings.Contains(before, routed) || !strings.Contains(before, tunnel) {
		t.Fatalf("want %s and %s on the device before:\n%s", routed, tunnel, before)
	}
	const stale = "100.64.0.99/16"
	sh(t, "ip", "-n", b.ns, "addr", "add", stale, "dev", b.wgCfg.Name)
	if err := b.wg.Release(); err != nil { // the agent stops; the device runs on
		t.Fatal(err)
	}
	again, err := wireguard.NewWireGuard(b.wgCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Close() })
	if !again.Adopted() {
		t.Fatal("the running device was not adopted")
	}
	after := show()
	if !strings.Contains(after, routed) {
		t.Errorf("adopting the device removed the routed network's address %s:\nbefore:\n%safter:\n%s", routed, before, after)
	}
	if !strings.Contains(after, tunnel) {
		t.Errorf("the tunnel address %s is not on the adopted device:\n%s", tunnel, after)
	}
	if strings.Contains(after, stale) {
		t.Errorf("the stale tunnel address %s stayed on the adopted device:\n%s", stale, after)
	}
}

// TestTornAllocationsRebuiltFromVeths: an agent that finds ipam.json torn
// (a power loss while its containers ran... or an edit) sets it aside and
// reads the running containers' addresses off their veths (alias = the
// container, the container side's MAC = 0a:58 + its IP), so the overlay
// comes up, the containers keep their addresses and no new container is
// given one of them. Before, New refused the file and the node stayed
// without an overlay.
func TestTornAllocationsRebuiltFromVeths(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	a.start(t, t)
	ips := map[string]string{}
	paths := map[string]string{}
	for _, id := range []string{"c1", "c2"} {
		_, p := newNetns(t, id)
		paths[id] = p
		ip, err := a.ov.Attach(t.Context(), id, p)
		if err != nil {
			t.Fatal(err)
		}
		ips[id] = ip
	}
	_, c3Path := newNetns(t, "c3")
	t.Cleanup(func() {
		if a.ov != nil {
			for id, p := range paths {
				_ = a.ov.Detach(context.Background(), id, p)
			}
			_ = a.ov.Detach(context.Background(), "c3", c3Path)
		}
	})
	if err := a.ov.Close(); err != nil { // the agent stops...
		t.Fatal(err)
	}
	a.ov = nil
	state := filepath.Join(a.cfg.StateDir, ipam.File)
	if err := os.WriteFile(state, nil, 0o600); err != nil { // ...and the file is torn
		t.Fatal(err)
	}
	a.start(t, t)
	got := map[string]string{}
	for id, ip := range a.ov.Attached() {
		got[id] = ip.String()
	}
	if fmt.Sprint(got) != fmt.Sprint(ips) {
		t.Fatalf("allocations after the torn file: %v, want %v (read off the veths)", got, ips)
	}
	if _, err := os.Stat(filepath.Join(a.cfg.StateDir, ipam.CorruptFile)); err != nil {
		t.Errorf("the torn file was not kept: %v", err)
	}
	for id, p := range paths {
		if ip, err := a.ov.Attach(t.Context(), id, p); err != nil || ip != ips[id] {
			t.Errorf("re-attach %s = %s, %v; want %s", id, ip, err, ips[id])
		}
	}
	ip3, err := a.ov.Attach(t.Context(), "c3", c3Path)
	if err != nil {
		t.Fatal(err)
	}
	if ip3 == ips["c1"] || ip3 == ips["c2"] {
		t.Fatalf("a new container got %s, a running container's address (%v)", ip3, ips)
	}
}

// TestAllocationOfGoneContainerReleased: a container whose namespace went
// while no overlay was open (the agent killed between Attach and saving
// the container's record, its leftover cleaned up by the next agent
// before the overlay is up, so that cleanup's Detach reached nothing) has
// its address released by the next Setup, and off the anti-spoofing
// table; the containers whose veths are there keep theirs. Before, the
// address stayed allocated in ipam.json for good.
func TestAllocationOfGoneContainerReleased(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	a.start(t, t)
	_, keepPath := newNetns(t, "keep")
	t.Cleanup(func() {
		if a.ov != nil {
			_ = a.ov.Detach(context.Background(), "keep", keepPath)
		}
	})
	keepIP, err := a.ov.Attach(t.Context(), "keep", keepPath)
	if err != nil {
		t.Fatal(err)
	}
	// The gone container's namespace is made by hand: the test deletes it.
	gone := fmt.Sprintf("ovt%d-%d-gone", os.Getpid(), nsSeq.Add(1))
	sh(t, "ip", "netns", "add", gone)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", gone).Run() })
	goneIP, err := a.ov.Attach(t.Context(), "gone", "/var/run/netns/"+gone)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ov.Close(); err != nil { // the agent dies...
		t.Fatal(err)
	}
	a.ov = nil
	sh(t, "ip", "netns", "del", gone) // ...and the next one cleans up the leftover
	eventually(t, 10*time.Second, func() error {
		if err := exec.Command("ip", "-n", a.ns, "link", "show", VethName("gone")).Run(); err == nil {
			return errors.New("the gone container's veth is still there")
		}
		return nil
	})
	a.start(t, t)
	got := map[string]string{}
	for id, ip := range a.ov.Attached() {
		got[id] = ip.String()
	}
	if want := map[string]string{"keep": keepIP}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("allocations after Setup: %v, want %v", got, want)
	}
	guard := sh(t, "ip", "netns", "exec", a.ns, "nft", "list", "table", "bridge", "shoal-guard-"+a.cfg.BridgeName)
	if strings.Contains(guard, goneIP) || !strings.Contains(guard, keepIP) {
		t.Fatalf("anti-spoofing table after Setup holds %s: %v, %s: %v, want only the latter:\n%s",
			goneIP, strings.Contains(guard, goneIP), keepIP, strings.Contains(guard, keepIP), guard)
	}
}

// TestWatchSurvivesEventBurst: a burst of netlink events far deeper than
// the watch's channels (150 bridges made, addressed, brought up and
// deleted at once: thousands of link, address and route events) leaves the
// subscriptions alive, held in their sockets' buffers while the loop
// catches up, and the watch still repairs what it watches afterwards. A
// subscription the kernel had dropped (ENOBUFS) would end Run.
func TestWatchSurvivesEventBurst(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	var logs syncBuffer
	a.cfg.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
	a.start(t, t)
	done := a.runWatch(t)

	var batch strings.Builder
	const n = 150
	for i := range n {
		fmt.Fprintf(&batch, "link add zb%d type bridge\naddr add 10.250.%d.%d/32 dev zb%d\nlink set zb%d up\n", i, i/200, i%200+1, i, i)
	}
	for i := range n {
		fmt.Fprintf(&batch, "link del zb%d\n", i)
	}
	f := filepath.Join(t.TempDir(), "burst")
	if err := os.WriteFile(f, []byte(batch.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	sh(t, "ip", "-n", a.ns, "-batch", f)
	select {
	case err := <-done:
		t.Fatalf("Run ended after the burst: %v", err)
	default:
	}
	sh(t, "ip", "-n", a.ns, "link", "del", a.cfg.BridgeName)
	eventually(t, 10*time.Second, func() error {
		select {
		case err := <-done:
			return fmt.Errorf("Run ended: %v", err)
		default:
		}
		if err := exec.Command("ip", "-n", a.ns, "link", "show", a.cfg.BridgeName).Run(); err != nil {
			return errors.New("the bridge was not re-created after the burst")
		}
		return nil
	})
	// The loop has read past the burst (the deletion came after it). A
	// subscription dropped in it was logged, and Run started the watch again.
	if l := logs.String(); strings.Contains(l, "netlink") {
		t.Fatalf("a subscription was lost in the burst:\n%s", l)
	}
}

// syncBuffer is a bytes.Buffer for a logger that several goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPeriodicResyncRepairsGuard: what no netlink event reports (the
// anti-spoofing table deleted by an `nft delete table`) is put back by
// the periodic resync, whose ticks come from Config.ResyncTicks when set
// (the agent's aligned ticker): here a channel the test ticks by hand,
// with an interval that a ticker of the overlay's own would never reach.
func TestPeriodicResyncRepairsGuard(t *testing.T) {
	requireNetAdmin(t)
	a := newHosts(t, 1)[0]
	ticks := make(chan time.Time, 1)
	a.cfg.ResyncInterval = time.Hour
	a.cfg.ResyncTicks = func(d time.Duration) (<-chan time.Time, func()) {
		if d != time.Hour {
			t.Errorf("ResyncTicks asked for %v, want the ResyncInterval", d)
		}
		return ticks, func() {}
	}
	a.start(t, t)
	a.runWatch(t)

	table := guard.TableName(a.cfg.BridgeName)
	sh(t, "ip", "netns", "exec", a.ns, "nft", "delete", "table", "bridge", table)
	if err := exec.Command("ip", "netns", "exec", a.ns, "nft", "list", "table", "bridge", table).Run(); err == nil {
		t.Fatal("the guard table is still there after its deletion")
	}
	ticks <- time.Now()
	eventually(t, 10*time.Second, func() error {
		if err := exec.Command("ip", "netns", "exec", a.ns, "nft", "list", "table", "bridge", table).Run(); err != nil {
			return fmt.Errorf("guard table %s not re-created after a resync tick: %v", table, err)
		}
		return nil
	})
}
