package netloop

// Root tests of how the network loop opens the default overlay, on a
// throwaway network namespace (deleted at cleanup with every device in
// it). setupOverlay programs the namespace of the calling thread (the
// agent's own), so each call runs on a thread that entered the test's
// namespace (linkutil.DoInNS).

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/node/netplan"
	"github.com/shoal-org/shoal/overlay"
	"github.com/shoal-org/shoal/overlay/guard"
	"github.com/shoal-org/shoal/overlay/linkutil"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("needs ip: %v", err)
	}
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// hostNS makes a namespace with an underlay link holding 10.231.9.11/24 and
// returns its name and an open handle (both gone at cleanup).
func hostNS(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	name := fmt.Sprintf("nlt%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
	if len(name) > 40 {
		name = name[:40]
	}
	_ = exec.Command("ip", "netns", "del", name).Run() // a run killed before its cleanup
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(t, "ip", "-n", name, "link", "add", "ul0", "type", "veth", "peer", "name", "ul1") // no dummy module here
	run(t, "ip", "-n", name, "addr", "add", "10.231.9.11/24", "dev", "ul0")
	run(t, "ip", "-n", name, "link", "set", "ul1", "up")
	run(t, "ip", "-n", name, "link", "set", "ul0", "up")
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	return name, ns
}

// testLoop is a network loop of node "self" (10.42.1.0/24) whose replica
// also holds node "peer" (10.42.2.0/24 at 10.231.9.12).
func testLoop(t *testing.T, advertise string) *Loop {
	t.Helper()
	store := consensus.NewStore()
	f := fsm.New(store)
	for i, cmd := range []command.Command{
		command.BootstrapCluster{
			Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)},
				ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
			Node: api.Node{ID: "self", Hostname: "self", Addr: advertise, Status: api.NodeReady, CertSerial: "s0", Subnet: "10.42.1.0/24"},
		},
		command.UpsertNode{Node: api.Node{ID: "peer", Hostname: "peer", Addr: "10.231.9.12", ClusterPort: 1,
			Status: api.NodeReady, CertSerial: "s1", Subnet: "10.42.2.0/24"}},
	} {
		if res := f.ApplyCommand(uint64(i+1), cmd); res.Err != nil {
			t.Fatalf("apply %T: %v", cmd, res.Err)
		}
	}
	if n, err := store.Node("self"); err != nil || n.Subnet != "10.42.1.0/24" {
		t.Fatalf("self in the replica: %+v, %v", n, err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return New(Config{NodeID: "self", AdvertiseAddr: advertise, ClusterDir: t.TempDir(), Store: store,
		Network: &Attacher{}, Metrics: metrics.New(), Logger: log})
}

// setupIn runs l.setupOverlay on a thread inside ns.
func setupIn(t *testing.T, l *Loop, ns netns.NsHandle) *overlay.Overlay {
	t.Helper()
	var ov *overlay.Overlay
	if err := linkutil.DoInNS(ns, func() error {
		ov, _ = l.setupOverlay(t.Context())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ov
}

// TestSetupOverlayKeepsPeersAcrossRestart: a new agent's first overlay
// setup finds the previous agent's peer entries in the kernel and keeps
// them: no route of a peer is deleted on the way (a cross-node blackout at
// every agent restart when Setup ran on an overlay that knew no peer yet
// and removed every entry, until the loop's SetPeers put them back), and
// the peer's route, neighbour and FDB entry are in place when setupOverlay
// returns.
func TestSetupOverlayKeepsPeersAcrossRestart(t *testing.T) {
	requireRoot(t)
	name, ns := hostNS(t)
	l := testLoop(t, "10.231.9.11")
	peerMAC := overlay.VTEPMAC("peer").String()

	// The first agent: up, with its peers (as its loop's first pass).
	ov := setupIn(t, l, ns)
	if ov == nil {
		t.Fatal("setupOverlay failed")
	}
	if err := ov.SetPeers([]overlay.Peer{{NodeID: "peer", Subnet: netip.MustParsePrefix("10.42.2.0/24"),
		UnderlayIP: netip.MustParseAddr("10.231.9.12")}}); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "ip", "-n", name, "route", "show", "10.42.2.0/24"); !strings.Contains(out, "shoal.vx") {
		t.Fatalf("first agent: no route to the peer: %q", out)
	}
	_ = ov.Close() // the agent stops; the host keeps its network

	// The next agent, watched for deletions.
	routes := make(chan netlink.RouteUpdate, 256)
	neighs := make(chan netlink.NeighUpdate, 256)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.RouteSubscribeAt(ns, routes, done); err != nil {
		t.Fatal(err)
	}
	if err := netlink.NeighSubscribeAt(ns, neighs, done); err != nil {
		t.Fatal(err)
	}
	ov = setupIn(t, l, ns)
	if ov == nil {
		t.Fatal("setupOverlay failed after the restart")
	}
	defer ov.Close()
	var deleted []string
	settle := time.After(300 * time.Millisecond) // events already sent may still be in flight
	for collecting := true; collecting; {
		select {
		case u := <-routes:
			if u.Type == unix.RTM_DELROUTE && u.Dst != nil && u.Dst.String() == "10.42.2.0/24" {
				deleted = append(deleted, "route "+u.Dst.String())
			}
		case u := <-neighs:
			if u.Type == unix.RTM_DELNEIGH && (u.IP.String() == "10.42.2.0" || u.HardwareAddr.String() == peerMAC) {
				deleted = append(deleted, fmt.Sprintf("neighbour/FDB %s %s", u.IP, u.HardwareAddr))
			}
		case <-settle:
			collecting = false
		}
	}
	if len(deleted) > 0 {
		t.Errorf("the restarted agent's overlay setup deleted the peer's entries: %v", deleted)
	}
	if out := run(t, "ip", "-n", name, "route", "show", "10.42.2.0/24"); !strings.Contains(out, "via 10.42.2.0 dev shoal.vx") {
		t.Errorf("after the restarted agent's setup: no route to the peer: %q", out)
	}
	if out := run(t, "ip", "-n", name, "neigh", "show", "10.42.2.0", "dev", "shoal.vx"); !strings.Contains(out, peerMAC) {
		t.Errorf("after the restarted agent's setup: no neighbour for the peer: %q", out)
	}
	if out := run(t, "bridge", "-n", name, "fdb", "show", "dev", "shoal.vx"); !strings.Contains(out, peerMAC+" dst 10.231.9.12") {
		t.Errorf("after the restarted agent's setup: no FDB entry for the peer: %q", out)
	}
}

// TestSetupOverlayFailureReleasesHandles: a setup that fails (here: the
// advertise address is on no link) leaves no handle open; the loop
// retries it every pass, and each try kept the overlay's netlink sockets.
func TestSetupOverlayFailureReleasesHandles(t *testing.T) {
	requireRoot(t)
	_, ns := hostNS(t)
	l := testLoop(t, "10.231.9.99")
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	setupIn(t, l, ns) // warm up whatever the process opens once
	before := fds()
	const tries = 20
	for range tries {
		if ov := setupIn(t, l, ns); ov != nil {
			t.Fatal("setup succeeded without an underlay link")
		}
	}
	if d := fds() - before; d >= tries {
		t.Errorf("%d failed setups left %d more open file descriptors", tries, d)
	}
}

// TestAllocatedShareOverlay: on a network with allocated shares the loop
// brings up no overlay until this node holds a share, then one whose
// bridge holds the share's first address, with a route to the peer's
// share; should the node's share move or go, the overlay is rebuilt or
// torn down rather than keep answering for addresses that are now another
// node's.
func TestAllocatedShareOverlay(t *testing.T) {
	requireRoot(t)
	name, ns := hostNS(t)
	l := testLoop(t, "10.231.9.11")
	defer l.closeNetworks()
	st := netplan.Read(l.cfg.Store)
	nw := &api.Network{ID: "w1", Name: "small", Subnet: "172.28.0.0/24", VNI: 0x1234, ShareBits: api.AllocatedShareBits}
	st.Networks = []*api.Network{nw}
	bridge := netplan.BridgeName(*nw)
	sync := func(shares map[string]string) {
		t.Helper()
		nw.Shares = shares
		if err := linkutil.DoInNS(ns, func() error { l.syncNetworks(t.Context(), st); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	up := func() bool {
		l.net.mu.RLock()
		defer l.net.mu.RUnlock()
		return l.net.nets["small"] != nil
	}

	sync(map[string]string{"peer": "172.28.0.0/28"})
	if up() {
		t.Fatal("an overlay without a share of the network")
	}
	// The guard's table belongs to the test's namespace. It landed in the
	// root namespace while the guard dialled nftables from a thread of the
	// netlink library's own (overlay.New says why).
	guardTable := guard.TableName(bridge)
	t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "bridge", guardTable).Run() })
	sync(map[string]string{"peer": "172.28.0.0/28", "self": "172.28.0.16/28"})
	if !up() {
		t.Fatal("no overlay once the node holds a share")
	}
	if out := run(t, "ip", "netns", "exec", name, "nft", "list", "table", "bridge", guardTable); !strings.Contains(out, guardTable) {
		t.Fatalf("no guard table %s in the node's namespace: %q", guardTable, out)
	}
	if out, err := exec.Command("nft", "list", "table", "bridge", guardTable).CombinedOutput(); err == nil {
		t.Fatalf("guard table %s in the root namespace:\n%s", guardTable, out)
	}
	if out := run(t, "ip", "-n", name, "-4", "addr", "show", bridge); !strings.Contains(out, "172.28.0.17/28") {
		t.Fatalf("bridge %s: %q, want 172.28.0.17/28", bridge, out)
	}
	if out := run(t, "ip", "-n", name, "route", "show", "172.28.0.0/28"); !strings.Contains(out, netplan.VXLANName(*nw)) {
		t.Fatalf("no route to the peer's share: %q", out)
	}
	sync(map[string]string{"peer": "172.28.0.0/28", "self": "172.28.0.48/28"})
	if out := run(t, "ip", "-n", name, "-4", "addr", "show", bridge); !strings.Contains(out, "172.28.0.49/28") || strings.Contains(out, "172.28.0.17") {
		t.Fatalf("after the share moved, bridge %s: %q, want only 172.28.0.49/28", bridge, out)
	}
	sync(map[string]string{"peer": "172.28.0.0/28"})
	if up() {
		t.Fatal("the overlay stayed after the node's share went")
	}
	if out, err := exec.Command("ip", "-n", name, "link", "show", bridge).CombinedOutput(); err == nil {
		t.Fatalf("bridge %s still there: %s", bridge, out)
	}
}
