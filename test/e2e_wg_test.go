package test

// End-to-end tests of encrypted networks (VXLAN inside userspace
// WireGuard) and of the publish paths that keep the client's address.
//
// The capture runs on the cluster's bridge in the root namespace: every
// packet between two hosts crosses it, so a payload that crosses hosts in
// the clear shows up there. A plain network carrying the same payload is
// the positive control (the capture does see plaintext when there is some).

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/overlay/wireguard"
	"github.com/shoal-org/shoal/test/harness"
)

// canary is the payload the web servers answer with; it must never cross
// the underlay in the clear for an encrypted network.
const canary = "shoal-canary-5d1e9"

const canaryWebCmd = `echo "` + canary + ` $(hostname)" >/www/index.html; exec httpd -f -p 80 -h /www`

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
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

// capture runs tcpdump on the cluster bridge (immediate mode: every packet
// is printed at once, -A: payloads as text). seen returns what it printed
// so far; stop ends it and returns everything.
func capture(t *testing.T, c *harness.Cluster) (seen, stop func() string) {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatalf("tcpdump is required (scripts/deps.sh installs it): %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out, stderr syncBuffer
	cmd := exec.CommandContext(ctx, "tcpdump", "-i", c.Name, "-n", "-l", "-A", "-s", "0", "--immediate-mode")
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("tcpdump: %v", err)
	}
	// tcpdump says "listening on" once the socket is open.
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(stderr.String(), "listening on"), stderr.String()
	}, "tcpdump listens")
	stopped := false
	stopFn := func() string {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cancel()
				<-done
			}
			cancel()
		}
		return out.String()
	}
	t.Cleanup(func() { stopFn() })
	return out.String, stopFn
}

var wgPacket = regexp.MustCompile(`\.51820 > [0-9.]+\.51820: `)

// crossPair returns two running tasks of svc on different nodes, both
// with their address on network known.
func crossPair(t *testing.T, h *harness.Host, svc, network string) (a, b api.Task) {
	t.Helper()
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		run := runningTasks(t, h, svc)
		for _, x := range run {
			for _, y := range run {
				if x.NodeID != y.NodeID && x.IPs[network] != "" && y.IPs[network] != "" {
					a, b = x, y
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("running tasks of %s: %d", svc, len(run))
	}, svc+" runs on two nodes")
	return a, b
}

func TestWireGuardEncryptedNetwork(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)

	h1.MustCLI(t, "network", "create", "--encrypted", "sec")
	h1.MustCLI(t, "network", "create", "pln")
	var sec api.Network
	if err := netJSON(c.Host(2), &sec, "inspect", "sec"); err != nil || !sec.Encrypted {
		t.Fatalf("inspect sec: %v %+v", err, sec)
	}
	h1.MustCLI(t, "service", "create", "--name", "sweb", "--mode", "global", "--network", "sec", "bb:1", "sh", "-c", canaryWebCmd)
	h1.MustCLI(t, "service", "create", "--name", "pweb", "--mode", "global", "--network", "pln", "bb:1", "sh", "-c", canaryWebCmd)
	// A second encrypted network shares the WireGuard device, not its
	// containers.
	h1.MustCLI(t, "network", "create", "--encrypted", "sec2")
	h1.MustCLI(t, "service", "create", "--name", "sweb2", "--mode", "global", "--network", "sec2", "bb:1", "sh", "-c", canaryWebCmd)

	// Every node publishes its own WireGuard public key.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		nodes, err := h1.Nodes()
		if err != nil {
			return false, err.Error()
		}
		keys := map[string]bool{}
		for _, n := range nodes {
			if n.WireGuardKey == "" {
				return false, "no key yet for " + n.Hostname
			}
			keys[n.WireGuardKey] = true
		}
		return len(keys) == len(nodes), fmt.Sprintf("%d keys for %d nodes", len(keys), len(nodes))
	}, "nodes publish their WireGuard keys")
	// The private key stays on the node, owner-only.
	for _, h := range c.Hosts() {
		out, err := exec.Command("find", h.DataDir, "-name", "private.key", "-path", "*wireguard*", "-perm", "0600").CombinedOutput()
		if err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || len(bytes.TrimSpace(out)) == 0 {
			t.Fatalf("%s: WireGuard private key with mode 0600: %v %q", h.Name, err, out)
		}
	}

	sa, sb := crossPair(t, h1, "sweb", "sec")
	pa, pb := crossPair(t, h1, "pweb", "pln")
	nsS, nsP := netnsOf(t, c, sa), netnsOf(t, c, pa)

	// Containers of the encrypted network reach each other across hosts.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := wgetFrom(nsS, "http://"+sb.IPs["sec"]+"/")
		return err == nil && strings.Contains(out, canary), fmt.Sprintf("sweb %s -> %s: %v %q", sa.Node, sb.IPs["sec"], err, out)
	}, "encrypted network across hosts")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := wgetFrom(nsP, "http://"+pb.IPs["pln"]+"/")
		return err == nil && strings.Contains(out, canary), fmt.Sprintf("pweb %s -> %s: %v %q", pa.Node, pb.IPs["pln"], err, out)
	}, "plain network across hosts")

	// Networks stay apart across hosts: encrypted to the other encrypted
	// network (both through shoal.wg) and to the plain one, and back.
	s2a, s2b := crossPair(t, h1, "sweb2", "sec2")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := wgetFrom(netnsOf(t, c, s2a), "http://"+s2b.IPs["sec2"]+"/")
		return err == nil && strings.Contains(out, canary), fmt.Sprintf("sweb2 -> %s: %v %q", s2b.IPs["sec2"], err, out)
	}, "the second encrypted network across hosts")
	// other returns the running task of svc on another node than src.
	other := func(svc string, src api.Task) api.Task {
		t.Helper()
		for _, tk := range runningTasks(t, h1, svc) {
			if tk.NodeID != src.NodeID {
				return tk
			}
		}
		t.Fatalf("no running %s task beside node %s", svc, src.Node)
		return api.Task{}
	}
	for _, probe := range []struct {
		src                api.Task
		from, svc, network string
	}{
		{sa, "sec", "sweb2", "sec2"},
		{s2a, "sec2", "sweb", "sec"},
		{sa, "sec", "pweb", "pln"},
		{pa, "pln", "sweb", "sec"},
	} {
		dst := other(probe.svc, probe.src)
		if out, err := wgetFrom(netnsOf(t, c, probe.src), "http://"+dst.IPs[probe.network]+"/"); err == nil {
			t.Fatalf("a container on %s reached one on %s on another host (%s): %q", probe.from, probe.network, dst.IPs[probe.network], out)
		}
	}

	// Routed straight through WireGuard: no VXLAN device carries the
	// encrypted network (the plain one has its own), and bulk TCP flows
	// through the TUN's segmentation offloads.
	for _, h := range c.Hosts() {
		out, err := exec.Command("ip", "-n", h.NS, "-d", "link", "show", "type", "vxlan").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link on %s: %v %s", h.Name, err, out)
		}
		if strings.Contains(string(out), fmt.Sprintf("vxlan id %d ", sec.VNI)) {
			t.Fatalf("%s carries the encrypted network over VXLAN:\n%s", h.Name, out)
		}
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Fatalf("iperf3 is required (scripts/deps.sh installs it): %v", err)
	}
	srv := exec.Command("nsenter", "--net="+netnsOf(t, c, sb), "iperf3", "-s")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := exec.Command("nsenter", "--net="+nsS, "timeout", "60", "iperf3", "-c", sb.IPs["sec"], "-n", "16M").CombinedOutput()
		return err == nil, fmt.Sprintf("%v %s", err, tail(string(out), 500))
	}, "16 MiB of TCP across the encrypted network")
	_ = srv.Process.Kill()
	_ = srv.Wait()

	// Encrypted: the canary crosses the underlay only inside WireGuard.
	// Five requests are at least 5×(3 handshake + request + response + 4
	// teardown) packets, all of which the capture must see as WireGuard.
	seen, stop := capture(t, c)
	for i := 0; i < 5; i++ {
		if out, err := wgetFrom(nsS, "http://"+sb.IPs["sec"]+"/"); err != nil || !strings.Contains(out, canary) {
			t.Fatalf("encrypted request %d: %v %q", i, err, out)
		}
	}
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		n := len(wgPacket.FindAllString(seen(), -1))
		return n >= 5*9, fmt.Sprintf("%d WireGuard packets captured", n)
	}, "the capture sees the encrypted requests as WireGuard")
	dump := stop()
	if strings.Contains(dump, canary) {
		t.Fatalf("the encrypted network's payload crossed the underlay in the clear:\n%s", tail(dump, 3000))
	}
	if regexp.MustCompile(`\.4800: `).MatchString(dump) {
		t.Fatalf("the encrypted network's VXLAN port appeared on the underlay:\n%s", tail(dump, 3000))
	}

	// Positive control: the plain network's payload is visible.
	seen, stop = capture(t, c)
	for i := 0; i < 3; i++ {
		if out, err := wgetFrom(nsP, "http://"+pb.IPs["pln"]+"/"); err != nil || !strings.Contains(out, canary) {
			t.Fatalf("plain request %d: %v %q", i, err, out)
		}
	}
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(seen(), canary), tail(seen(), 2000)
	}, "the capture sees the plain network's payload (else the capture is broken)")
	stop()

	// Injection: VXLAN for the encrypted network sent to a node from the
	// underlay is dropped (counted by the node's input filter).
	h2 := hostOf(t, c, sb)
	before := dropCount(t, h2)
	inject(t, h2.IP, sec.VNI, 20)
	harness.Eventually(t, 10*time.Second, func() (bool, string) {
		n := dropCount(t, h2)
		return n >= before+20, fmt.Sprintf("drops %d, before %d", n, before)
	}, "injected encrypted-network VXLAN is dropped")

	// The network works after an agent restart (the device process ran
	// on and the new agent adopted it; TestWireGuardDeviceSurvivesAgent),
	// with the same key.
	keyBefore := nodeKey(t, h1, sb.NodeID)
	if err := h2.Restart(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		var run []api.Task
		if err := h1.JSON(&run, "service", "ps", "sweb"); err != nil {
			return false, err.Error()
		}
		for _, tk := range run {
			if tk.NodeID == sb.NodeID && tk.State == api.TaskRunning && tk.IPs["sec"] != "" {
				out, err := wgetFrom(nsS, "http://"+tk.IPs["sec"]+"/")
				return err == nil && strings.Contains(out, canary), fmt.Sprintf("%v %q", err, out)
			}
		}
		return false, fmt.Sprintf("no running sweb task on %s: %d running", sb.Node, len(run))
	}, "the encrypted network works again after an agent restart")
	if k := nodeKey(t, h1, sb.NodeID); k != keyBefore {
		t.Fatalf("the node's WireGuard key changed across a restart: %s -> %s", keyBefore, k)
	}
}

// TestWireGuardRemovedNodeCutOff: once a node is removed (`node rm`),
// every other node drops it as a WireGuard peer, so its key opens nothing
// any more. The removed node's agent is killed and an impostor device
// holding its private key, tunnel address and network share takes its
// place in its namespace. Before the removal (positive control) it
// completes handshakes with both survivors and pings their containers on
// the encrypted network; after it, its established sessions stop working
// and a fresh device with the same key never gets a handshake answered.
func TestWireGuardRemovedNodeCutOff(t *testing.T) {
	c, _ := svcCluster(t, 3)
	leader := c.Leader(t, electionTimeout)
	leader.MustCLI(t, "network", "create", "--encrypted", "sec")
	leader.MustCLI(t, "service", "create", "--name", "sweb", "--mode", "global", "--network", "sec", "bb:1", "sh", "-c", canaryWebCmd)
	var sec api.Network
	if err := netJSON(leader, &sec, "inspect", "sec"); err != nil {
		t.Fatal(err)
	}
	var victim *harness.Host
	var survivors []*harness.Host
	for _, h := range c.Hosts() {
		if h != leader && victim == nil {
			victim = h
		} else {
			survivors = append(survivors, h)
		}
	}
	// Every node's key published, a sweb task with its sec address on
	// every node.
	// byHost: survivor hostname -> node; target: -> container IP on sec.
	byHost, target := wgKeysAndSweb(t, leader, survivors, 3, 120*time.Second)

	cluster, err := netip.ParsePrefix("10.42.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	secNet := netip.MustParsePrefix(sec.Subnet)
	tunnelCIDR := netip.MustParsePrefix(wireguard.DefaultTunnelCIDR)
	wgPeerOf := func(h *harness.Host) wireguard.WGPeer {
		n := byHost[hostname(h)]
		sub := netip.MustParsePrefix(n.Subnet)
		tip, err := wireguard.TunnelAddr(tunnelCIDR, cluster, sub)
		share, err2 := api.NodeShare(secNet, cluster, sub)
		if err != nil || err2 != nil {
			t.Fatal(err, err2)
		}
		return wireguard.WGPeer{NodeID: n.ID, PublicKey: n.WireGuardKey, TunnelIP: tip, Subnets: []netip.Prefix{share},
			Endpoint: netip.AddrPortFrom(netip.MustParseAddr(h.IP), wireguard.DefaultWireGuardPort)}
	}
	self := wgPeerOf(victim) // the victim's own tunnel address and share
	var peers []wireguard.WGPeer
	for _, h := range survivors {
		peers = append(peers, wgPeerOf(h))
	}

	// The victim's private key, copied before anything may move it.
	key, err := os.ReadFile(filepath.Join(victim.DataDir, "cluster", "wireguard", "private.key"))
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "victim.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := victim.KillProcess(); err != nil {
		t.Fatal(err)
	}
	// Its WireGuard device outlives the agent: gone too, so that the
	// impostor can take its port.
	if err := victim.KillWireGuardDevice(); err != nil {
		t.Fatal(err)
	}

	// impostor brings up a WireGuard device with the victim's identity in
	// its namespace, routing the survivors' shares of sec into it from
	// the victim's share.
	impostor := func() *wireguard.WireGuard {
		t.Helper()
		cfg := wireguard.DefaultWireGuardConfig()
		cfg.Name, cfg.KeyFile, cfg.TunnelIP = "imp.wg", keyFile, self.TunnelIP
		cfg.NetNS, cfg.UnderlayIP = "/run/netns/"+victim.NS, netip.MustParseAddr(victim.IP)
		wg, err := wireguard.NewWireGuard(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = wg.Close() })
		if err := wg.SetPeers(peers); err != nil {
			t.Fatal(err)
		}
		src := self.Subnets[0].Addr().String()
		out, err := exec.Command("ip", "-n", victim.NS, "addr", "add", src+"/32", "dev", cfg.Name).CombinedOutput()
		if err != nil {
			t.Fatalf("impostor address: %v %s", err, out)
		}
		for _, p := range peers {
			out, err := exec.Command("ip", "-n", victim.NS, "route", "replace", p.Subnets[0].String(), "dev", cfg.Name, "src", src).CombinedOutput()
			if err != nil {
				t.Fatalf("impostor route: %v %s", err, out)
			}
		}
		return wg
	}
	reaches := func(h *harness.Host) bool {
		_, err := inNS(victim.NS, "ping", "-c1", "-W1", target[hostname(h)])
		return err == nil
	}

	// Positive control: the victim's key still works while it is a member.
	imp := impostor()
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range survivors {
			if !reaches(h) {
				return false, "no answer from sweb on " + h.Name
			}
		}
		hs, err := imp.LastHandshakes()
		for _, p := range peers {
			if err != nil || hs[p.PublicKey].IsZero() {
				return false, fmt.Sprintf("handshakes %v %v", hs, err)
			}
		}
		return true, ""
	}, "the victim's key reaches the survivors' containers before node rm")

	victimID := byHost[hostname(victim)].ID
	leader.MustCLI(t, "node", "rm", "--force", victimID)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range survivors {
			if _, err := h.Node(victimID); err == nil {
				return false, h.Name + " still knows the victim"
			}
		}
		return true, ""
	}, "the survivors' replicas lose the victim")
	// Its sessions die with its peer entries...
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, h := range survivors {
			if reaches(h) {
				return false, "sweb on " + h.Name + " still answers the removed node"
			}
		}
		return true, ""
	}, "the removed node's established sessions stop working")
	// ...and a fresh handshake with its key is never answered: 20 s are
	// four handshake attempts (one per 5 s) towards each survivor.
	_ = imp.Close()
	imp = impostor()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		for _, h := range survivors {
			if reaches(h) {
				t.Fatalf("the removed node's key reached sweb on %s", h.Name)
			}
		}
	}
	hs, err := imp.LastHandshakes()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if !hs[p.PublicKey].IsZero() {
			t.Fatalf("node %s answered a handshake of the removed node (at %s)", p.NodeID, hs[p.PublicKey])
		}
	}
}

// TestWireGuardPublishedPort: a port published by a service on an
// encrypted network answers through both nodes, the one running the
// replica and the one that must send the connection through WireGuard
// (the mesh's masquerade takes the node's address on shoal.wg inside the
// network, which the backend's node lets in and routes back).
func TestWireGuardPublishedPort(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)
	h1.MustCLI(t, "network", "create", "--encrypted", "sec")
	h1.MustCLI(t, "service", "create", "--name", "sweb", "--replicas", "1", "--network", "sec",
		"--publish", "18095:80", "bb:1", "sh", "-c", canaryWebCmd)
	waitSlots(t, h1, "sweb", 1, "", 90*time.Second)
	for _, h := range c.Hosts() {
		harness.Eventually(t, 60*time.Second, func() (bool, string) {
			out, err := get(fmt.Sprintf("http://%s:18095/", h.IP))
			return err == nil && strings.Contains(out, canary), fmt.Sprintf("via %s: %v %q", h.Name, err, out)
		}, "the published port answers via "+h.Name)
	}
}

func nodeKey(t *testing.T, h *harness.Host, id string) string {
	t.Helper()
	n, err := h.Node(id)
	if err != nil {
		t.Fatal(err)
	}
	return n.WireGuardKey
}

// hostOf returns the harness host running task tk.
func hostOf(t *testing.T, c *harness.Cluster, tk api.Task) *harness.Host {
	t.Helper()
	for _, h := range c.Hosts() {
		if hostname(h) == tk.Node {
			return h
		}
	}
	t.Fatalf("task %s on unknown node %q", tk.Name, tk.Node)
	return nil
}

var dropRule = regexp.MustCompile(`udp dport 4800 iifname != "shoal\.wg" counter packets (\d+)`)

// dropCount reads the counter of the input rule that drops encrypted
// VXLAN arriving outside WireGuard on host h.
func dropCount(t *testing.T, h *harness.Host) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "list", "chain", "ip", "shoal", "filter-input").CombinedOutput()
	if err != nil {
		t.Fatalf("nft on %s: %v %s", h.Name, err, out)
	}
	m := dropRule.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("%s has no drop rule for encrypted VXLAN outside WireGuard:\n%s", h.Name, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// inject sends n VXLAN packets with vni (an inner Ethernet + IPv4 frame)
// to host:4800 from the root namespace, on the underlay.
func inject(t *testing.T, host string, vni, n int) {
	t.Helper()
	conn, err := net.Dial("udp4", net.JoinHostPort(host, "4800"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pkt := make([]byte, 8+14+20+8+len(canary))
	pkt[0] = 0x08 // VXLAN flags: VNI present
	pkt[4], pkt[5], pkt[6] = byte(vni>>16), byte(vni>>8), byte(vni)
	eth := pkt[8:]
	copy(eth[0:6], []byte{0x02, 0, 0, 0, 0, 1})
	copy(eth[6:12], []byte{0x02, 0, 0, 0, 0, 2})
	eth[12], eth[13] = 0x08, 0x00
	ip := eth[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	ip[3] = byte(20 + 8 + len(canary))
	copy(pkt[len(pkt)-len(canary):], canary)
	for i := 0; i < n; i++ {
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// ipCmd serves /cgi-bin/ip, which answers "client=<REMOTE_ADDR>": the
// address the backend sees as its peer.
const ipCmd = `mkdir -p /www/cgi-bin && printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\necho "client=$REMOTE_ADDR"\n' >/www/cgi-bin/ip && chmod +x /www/cgi-bin/ip && exec httpd -f -p 80 -h /www`

// clientSeen fetches /cgi-bin/ip from ns and returns the client address
// the backend saw (busybox httpd gives it IPv4-mapped: [::ffff:a.b.c.d]).
func clientSeen(ns, url string) (string, error) {
	out, err := wgetFrom(ns, url)
	if err != nil {
		return out, err
	}
	a, ok := strings.CutPrefix(out, "client=")
	if !ok {
		return out, fmt.Errorf("unexpected answer %q", out)
	}
	a = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
	return strings.TrimPrefix(a, "::ffff:"), nil
}

// TestPublishKeepsClientAddress: host-mode ports answer only on the node
// running the task and the task sees the client's address; the routing
// mesh keeps it whether the backend is on the node that took the
// connection or on another one.
func TestPublishKeepsClientAddress(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)
	h1.MustCLI(t, "service", "create", "--name", "edge", "--publish", "mode=host,published=18090,target=80", "bb:1", "sh", "-c", ipCmd)
	h1.MustCLI(t, "service", "create", "--name", "mesh", "--publish", "18091:80", "bb:1", "sh", "-c", ipCmd)
	waitSlots(t, h1, "edge", 1, "", 90*time.Second)
	waitSlots(t, h1, "mesh", 1, "", 90*time.Second)
	var edge api.Service
	if err := h1.JSON(&edge, "service", "inspect", "edge"); err != nil || len(edge.Ports) != 1 || edge.Ports[0].Mode != api.PublishHost {
		t.Fatalf("edge ports: %v %+v", err, edge.Ports)
	}
	lan, lanIP := lanHost(t, c, h1)
	want := lanIP

	et := runningTasks(t, h1, "edge")[0]
	withTask, without := hostOf(t, c, et), c.Host(1)
	if withTask == without {
		without = c.Host(2)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := clientSeen(lan, fmt.Sprintf("http://%s:18090/cgi-bin/ip", withTask.IP))
		return err == nil && out == want, fmt.Sprintf("host mode via %s: %v %q", withTask.Name, err, out)
	}, "host-mode port answers with the client's address")
	if out, err := wgetFrom(lan, fmt.Sprintf("http://%s:18090/cgi-bin/ip", without.IP)); err == nil {
		t.Fatalf("host-mode port answered on %s, which runs no task: %q", without.Name, out)
	}

	mt := runningTasks(t, h1, "mesh")[0]
	local, remote := hostOf(t, c, mt), c.Host(1)
	if local == remote {
		remote = c.Host(2)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := clientSeen(lan, fmt.Sprintf("http://%s:18091/cgi-bin/ip", local.IP))
		return err == nil && out == want, fmt.Sprintf("mesh via %s (local backend): %v %q", local.Name, err, out)
	}, "the mesh keeps the client's address for a local backend")
	// Through a node without the task too: the task's node routes the
	// replies back through the node that took the connection.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := clientSeen(lan, fmt.Sprintf("http://%s:18091/cgi-bin/ip", remote.IP))
		return err == nil && out == want, fmt.Sprintf("mesh via %s (remote backend): %v %q", remote.Name, err, out)
	}, "the mesh through another node keeps the client's address")
}

func hostOfB(b *testing.B, c *harness.Cluster, tk api.Task) *harness.Host {
	for _, h := range c.Hosts() {
		if hostname(h) == tk.Node {
			return h
		}
	}
	b.Fatalf("task %s on unknown node %q", tk.Name, tk.Node)
	return nil
}

// wgImpostor brings up a WireGuard device in namespace ns that claims to
// be the node self (its tunnel address and share) with the private key in
// keyFile, talking to peers, and routes the peers' shares into it from
// self's share. It is closed at the end of the test.
func wgImpostor(t *testing.T, ns, underlay, keyFile string, self wireguard.WGPeer, peers []wireguard.WGPeer) *wireguard.WireGuard {
	t.Helper()
	cfg := wireguard.DefaultWireGuardConfig()
	cfg.Name, cfg.KeyFile, cfg.TunnelIP = "imp.wg", keyFile, self.TunnelIP
	cfg.NetNS, cfg.UnderlayIP = "/run/netns/"+ns, netip.MustParseAddr(underlay)
	wg, err := wireguard.NewWireGuard(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wg.Close() })
	if err := wg.SetPeers(peers); err != nil {
		t.Fatal(err)
	}
	src := self.Subnets[0].Addr().String()
	if out, err := exec.Command("ip", "-n", ns, "addr", "add", src+"/32", "dev", cfg.Name).CombinedOutput(); err != nil {
		t.Fatalf("impostor address: %v %s", err, out)
	}
	for _, p := range peers {
		out, err := exec.Command("ip", "-n", ns, "route", "replace", p.Subnets[0].String(), "dev", cfg.Name, "src", src).CombinedOutput()
		if err != nil {
			t.Fatalf("impostor route: %v %s", err, out)
		}
	}
	return wg
}

// wgPeerOfNode is node n as a WireGuard peer on network sec, known by key.
func wgPeerOfNode(t *testing.T, n api.Node, key string, sec netip.Prefix) wireguard.WGPeer {
	t.Helper()
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	sub := netip.MustParsePrefix(n.Subnet)
	tip, err := wireguard.TunnelAddr(netip.MustParsePrefix(wireguard.DefaultTunnelCIDR), cluster, sub)
	share, err2 := api.NodeShare(sec, cluster, sub)
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	return wireguard.WGPeer{NodeID: n.ID, PublicKey: key, TunnelIP: tip, Subnets: []netip.Prefix{share},
		Endpoint: netip.AddrPortFrom(netip.MustParseAddr(n.Addr), wireguard.DefaultWireGuardPort)}
}

// countLines counts the lines of a host's log (all its runs) containing s.
func countLines(t *testing.T, h *harness.Host, s string) int {
	t.Helper()
	b, err := os.ReadFile(h.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), s)
}

// TestWireGuardKeyRotation: `node rm` makes every remaining node rotate
// its WireGuard key — once per removal, through a restart in the middle,
// for a node that was down at the time when it returns, and not again on a
// later restart — after which traffic crosses the encrypted network again
// and a survivor's old key no longer completes a handshake with anyone
// (while its new key, the positive control, does).
func TestWireGuardKeyRotation(t *testing.T) {
	c, _ := svcCluster(t, 4)
	leader := c.Leader(t, electionTimeout)
	leader.MustCLI(t, "network", "create", "--encrypted", "sec")
	leader.MustCLI(t, "service", "create", "--name", "sweb", "--mode", "global", "--network", "sec", "bb:1", "sh", "-c", canaryWebCmd)
	var secNet api.Network
	if err := netJSON(leader, &secNet, "inspect", "sec"); err != nil {
		t.Fatal(err)
	}
	sec := netip.MustParsePrefix(secNet.Subnet)
	// victim: removed; restarted: a survivor restarted in the middle of
	// the rotation; down: a survivor down when the removal is committed,
	// which holds the rotation up until it is marked down or comes back;
	// imp: the survivor whose old key the impostor holds.
	var victim, restarted, down *harness.Host
	var survivors []*harness.Host
	for _, h := range c.Hosts() {
		switch {
		case h == leader:
			survivors = append(survivors, h)
		case victim == nil:
			victim = h
		case restarted == nil:
			restarted = h
			survivors = append(survivors, h)
		default:
			down = h
			survivors = append(survivors, h)
		}
	}
	imp := down

	// oldNode: hostname -> node; target: -> sweb's address on sec.
	oldNode, target := wgKeysAndSweb(t, leader, c.Hosts(), 4, 180*time.Second)
	// Traffic works before (the control of the check after).
	crossAll := func() (bool, string) {
		for _, from := range survivors {
			var src api.Task
			for _, tk := range runningTasks(t, leader, "sweb") {
				if tk.Node == hostname(from) {
					src = tk
				}
			}
			if src.ContainerID == "" {
				return false, "no sweb task on " + from.Name
			}
			for _, to := range survivors {
				if to == from {
					continue
				}
				out, err := wgetFrom(netnsOf(t, c, src), "http://"+target[hostname(to)]+"/")
				if err != nil || !strings.Contains(out, canary) {
					return false, fmt.Sprintf("%s -> %s: %v %q", from.Name, to.Name, err, out)
				}
			}
		}
		return true, ""
	}
	harness.Eventually(t, 90*time.Second, crossAll, "sweb answers across every pair of survivors before node rm")
	oldKey, err := os.ReadFile(filepath.Join(imp.DataDir, "cluster", "wireguard", "private.key"))
	if err != nil {
		t.Fatal(err)
	}
	oldKeyFile := filepath.Join(t.TempDir(), "old.key")
	if err := os.WriteFile(oldKeyFile, oldKey, 0o600); err != nil {
		t.Fatal(err)
	}

	victimID := oldNode[hostname(victim)].ID
	if err := down.KillProcess(); err != nil {
		t.Fatal(err)
	}
	leader.MustCLI(t, "node", "rm", "--force", victimID)
	// A restart in the middle of the rotation: restarted has published its
	// next key, and (most likely: down is not marked down yet) not
	// switched to it.
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		n, err := leader.Node(oldNode[hostname(restarted)].ID)
		if err != nil {
			return false, err.Error()
		}
		return n.WireGuardNextKey != "" || n.WireGuardKey != oldNode[n.Hostname].WireGuardKey, "no next key yet"
	}, restarted.Name+" publishes its next key")
	n, _ := leader.Node(oldNode[hostname(restarted)].ID)
	t.Logf("restarting %s with key %s, next key %q (old key %s)", restarted.Name, n.WireGuardKey, n.WireGuardNextKey, oldNode[n.Hostname].WireGuardKey)
	if err := restarted.Restart(); err != nil {
		t.Fatal(err)
	}
	// down comes back and rotates too.
	if err := down.Start(); err != nil {
		t.Fatal(err)
	}
	newNode := map[string]api.Node{}
	harness.Eventually(t, 240*time.Second, func() (bool, string) {
		nodes, err := leader.Nodes()
		if err != nil {
			return false, err.Error()
		}
		for _, n := range nodes {
			if n.ID == victimID {
				return false, "the victim is still a node"
			}
			if n.WireGuardKey == oldNode[n.Hostname].WireGuardKey || n.WireGuardNextKey != "" {
				return false, fmt.Sprintf("%s not rotated yet: key %s (was %s) next %q", n.Hostname,
					n.WireGuardKey, oldNode[n.Hostname].WireGuardKey, n.WireGuardNextKey)
			}
			newNode[n.Hostname] = n
		}
		return len(newNode) == 3, fmt.Sprintf("%d nodes", len(newNode))
	}, "every remaining node rotated its WireGuard key")
	harness.Eventually(t, 120*time.Second, crossAll, "sweb answers across every pair of survivors after the rotation")
	// A TCP transfer across two survivors over the rotated keys.
	a, b := crossPair(t, leader, "sweb", "sec")
	srv := exec.Command("nsenter", "--net="+netnsOf(t, c, b), "iperf3", "-s")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := exec.Command("nsenter", "--net="+netnsOf(t, c, a), "timeout", "60", "iperf3", "-c", b.IPs["sec"], "-n", "8M").CombinedOutput()
		return err == nil, fmt.Sprintf("%v %s", err, tail(string(out), 500))
	}, "8 MiB of TCP across the encrypted network after the rotation")

	// Once per removal: every survivor started one rotation, the restarted
	// one too, and a restart now (the log replayed, the removal seen again)
	// changes nothing.
	for _, h := range survivors {
		if n := countLines(t, h, "key rotation started"); n != 1 {
			t.Fatalf("%s started %d key rotations for one removal:\n%s", h.Name, n, h.LogTail(60))
		}
		for _, f := range []string{"private.key", "key-epoch.json"} {
			st, err := os.Stat(filepath.Join(h.DataDir, "cluster", "wireguard", f))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("%s: %s: %v %v", h.Name, f, st, err)
			}
		}
		key, err := os.ReadFile(filepath.Join(h.DataDir, "cluster", "wireguard", "private.key"))
		if err != nil {
			t.Fatal(err)
		}
		if log, _ := os.ReadFile(h.LogPath); bytes.Contains(log, bytes.TrimSpace(key)) {
			t.Fatalf("%s logged its private key", h.Name)
		}
	}
	if err := restarted.Restart(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 120*time.Second, crossAll, "sweb answers across every pair after another restart")
	if n := countLines(t, restarted, "key rotation started"); n != 1 {
		t.Fatalf("%s rotated again on restart (%d rotations):\n%s", restarted.Name, n, restarted.LogTail(60))
	}
	if k := nodeKey(t, leader, newNode[hostname(restarted)].ID); k != newNode[hostname(restarted)].WireGuardKey {
		t.Fatalf("%s changed its key on restart: %s, was %s", restarted.Name, k, newNode[hostname(restarted)].WireGuardKey)
	}

	// The impostor: imp's identity in the removed host's namespace (its
	// agent stopped), talking to the other survivors by their new keys.
	if err := victim.KillProcess(); err != nil {
		t.Fatal(err)
	}
	if err := victim.KillWireGuardDevice(); err != nil {
		t.Fatal(err)
	}
	self := wgPeerOfNode(t, newNode[hostname(imp)], newNode[hostname(imp)].WireGuardKey, sec)
	var peers []wireguard.WGPeer
	var others []*harness.Host
	for _, h := range survivors {
		if h != imp {
			others = append(others, h)
			peers = append(peers, wgPeerOfNode(t, newNode[hostname(h)], newNode[hostname(h)].WireGuardKey, sec))
		}
	}
	reaches := func(h *harness.Host) bool {
		_, err := inNS(victim.NS, "ping", "-c1", "-W1", target[hostname(h)])
		return err == nil
	}
	// imp's old key: 20 s are four handshake attempts towards each peer.
	old := wgImpostor(t, victim.NS, victim.IP, oldKeyFile, self, peers)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		for _, h := range others {
			if reaches(h) {
				t.Fatalf("%s's old key reached sweb on %s", imp.Name, h.Name)
			}
		}
	}
	hs, err := old.LastHandshakes()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if !hs[p.PublicKey].IsZero() {
			t.Fatalf("node %s answered a handshake with %s's old key (at %s)", p.NodeID, imp.Name, hs[p.PublicKey])
		}
	}
	_ = old.Close()
	// Positive control: the same impostor with imp's new key is answered.
	newKeyFile := filepath.Join(t.TempDir(), "new.key")
	newKey, err := os.ReadFile(filepath.Join(imp.DataDir, "cluster", "wireguard", "private.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newKeyFile, newKey, 0o600); err != nil {
		t.Fatal(err)
	}
	cur := wgImpostor(t, victim.NS, victim.IP, newKeyFile, self, peers)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range others {
			_ = reaches(h) // a packet starts a handshake
		}
		hs, err := cur.LastHandshakes()
		for _, p := range peers {
			if err != nil || hs[p.PublicKey].IsZero() {
				return false, fmt.Sprintf("handshakes %v %v", hs, err)
			}
		}
		return true, ""
	}, "the new key completes handshakes (the impostor set-up works)")
}

// wgKeysAndSweb waits until n nodes have published a WireGuard key and each
// of hosts runs an sweb task with an address on the network sec; it returns
// the nodes and those addresses by hostname.
func wgKeysAndSweb(t *testing.T, leader *harness.Host, hosts []*harness.Host, n int, timeout time.Duration) (map[string]api.Node, map[string]string) {
	t.Helper()
	byHost := map[string]api.Node{}
	target := map[string]string{}
	harness.Eventually(t, timeout, func() (bool, string) {
		nodes, err := leader.Nodes()
		if err != nil {
			return false, err.Error()
		}
		for _, nd := range nodes {
			if nd.WireGuardKey == "" {
				return false, "no WireGuard key yet for " + nd.Hostname
			}
			byHost[nd.Hostname] = nd
		}
		for _, tk := range runningTasks(t, leader, "sweb") {
			if tk.IPs["sec"] != "" {
				target[tk.Node] = tk.IPs["sec"]
			}
		}
		for _, h := range hosts {
			if target[hostname(h)] == "" {
				return false, "no sweb address on sec for " + h.Name
			}
		}
		return len(byHost) == n, fmt.Sprintf("%d nodes", len(byHost))
	}, "keys published and sweb running on %d hosts", len(hosts))
	return byHost, target
}
