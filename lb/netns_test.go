package lb

// Real behaviour in throwaway network namespaces (root only):
//
//	X (external client 10.232.Y.2) ──ul0── N (node: bridge shoal0 10.42.1.1/24, our table)
//	                                        ├── B1 10.42.1.11 busybox httpd (index.html "b1")
//	                                        ├── B2 10.42.1.12 "b2"
//	                                        ├── B3 10.42.1.13 "b3"
//	                                        └── C  10.42.1.50 (client container)
//
// Bridge ports have hairpin on, as the overlay sets them.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/shoal-org/shoal/api"
	lbdns "github.com/shoal-org/shoal/lb/dns"
)

type lab struct {
	t       *testing.T
	node    string // netns names
	client  string
	ext     string
	backend []string
	nodeIP  string // underlay address of the node, facing ext
	vip     net.IP
	bIPs    []string
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	for _, bin := range []string{"ip", "bridge", "/bin/busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s: %v", bin, err)
		}
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

func newLab(t *testing.T) *lab {
	requireRoot(t)
	id := fmt.Sprintf("%04x", rand.IntN(0x10000))
	y := 100 + rand.IntN(150)
	l := &lab{
		t:      t,
		node:   "lbn" + id,
		client: "lbc" + id,
		ext:    "lbx" + id,
		nodeIP: fmt.Sprintf("10.232.%d.1", y),
		vip:    net.ParseIP("10.43.0.10"),
	}
	addNS := func(name string) {
		run(t, "ip", "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		run(t, "ip", "-n", name, "link", "set", "lo", "up")
	}
	addNS(l.node)
	run(t, "ip", "netns", "exec", l.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	run(t, "ip", "-n", l.node, "link", "add", "shoal0", "type", "bridge")
	run(t, "ip", "-n", l.node, "addr", "add", "10.42.1.1/24", "dev", "shoal0")
	run(t, "ip", "-n", l.node, "link", "set", "shoal0", "up")

	// A container-like netns on the bridge.
	attach := func(ns, port, addr string) {
		addNS(ns)
		run(t, "ip", "-n", l.node, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		run(t, "ip", "-n", l.node, "link", "set", port, "master", "shoal0", "up")
		run(t, "bridge", "-n", l.node, "link", "set", "dev", port, "hairpin", "on")
		run(t, "ip", "-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", ns, "route", "add", "default", "via", "10.42.1.1")
	}
	for i := 1; i <= 3; i++ {
		ns := fmt.Sprintf("lbb%d%s", i, id)
		ip := fmt.Sprintf("10.42.1.%d", 10+i)
		attach(ns, fmt.Sprintf("vb%d", i), ip)
		l.backend = append(l.backend, ns)
		l.bIPs = append(l.bIPs, ip)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(fmt.Sprintf("b%d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", ns, "/bin/busybox", "httpd", "-f", "-p", "80", "-h", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	attach(l.client, "vc", "10.42.1.50")

	// The external client on the node's underlay.
	addNS(l.ext)
	run(t, "ip", "-n", l.node, "link", "add", "ul0", "type", "veth", "peer", "name", "eth0", "netns", l.ext)
	run(t, "ip", "-n", l.node, "addr", "add", l.nodeIP+"/24", "dev", "ul0")
	run(t, "ip", "-n", l.node, "link", "set", "ul0", "up")
	run(t, "ip", "-n", l.ext, "addr", "add", fmt.Sprintf("10.232.%d.2/24", y), "dev", "eth0")
	run(t, "ip", "-n", l.ext, "link", "set", "eth0", "up")

	// Wait for the servers (a direct GET, no LB involved).
	for i, ns := range l.backend {
		deadline := time.Now().Add(5 * time.Second)
		for {
			if body, err := l.get(ns, "http://127.0.0.1/"); err == nil && body == fmt.Sprintf("b%d", i+1) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("httpd in %s not answering", ns)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return l
}

// get runs one HTTP GET from inside ns (busybox wget; its -T segfaults, so
// the bound is timeout(1)) and returns the trimmed body.
func (l *lab) get(ns, url string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", ns, "/bin/busybox", "timeout", "3",
		"/bin/busybox", "wget", "-q", "-O", "-", url).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("GET %s from %s: %v: %s", url, ns, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// spread makes n GETs and counts answers per backend; every GET must work.
func (l *lab) spread(ns, url string, n int) map[string]int {
	l.t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		body, err := l.get(ns, url)
		if err != nil {
			l.t.Fatalf("request %d: %v", i, err)
		}
		seen[body]++
	}
	return seen
}

func (l *lab) state(backendIdx ...int) State {
	var bs []Backend
	for _, i := range backendIdx {
		bs = append(bs, Backend{IP: net.ParseIP(l.bIPs[i]), Local: true})
	}
	return State{Services: []Service{{
		Name:     "web",
		VIP:      l.vip,
		Ports:    []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}},
		Backends: bs,
	}}}
}

func (l *lab) newLB() *LB {
	l.t.Helper()
	cfg := DefaultConfig()
	cfg.NetNSPath = "/var/run/netns/" + l.node
	lb, err := New(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = lb.Close() })
	return lb
}

func wantKeys(t *testing.T, what string, seen map[string]int, keys ...string) {
	t.Helper()
	var got []string
	for k := range seen {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, keys) {
		t.Fatalf("%s: answered by %v, want exactly %v", what, seen, keys)
	}
}

func TestLBNetns(t *testing.T) {
	l := newLab(t)
	lb := l.newLB()
	if err := lb.Set(l.state(0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	vipURL := "http://" + l.vip.String() + "/"
	pubURL := "http://" + l.nodeIP + ":8080/"

	t.Run("vip from client", func(t *testing.T) {
		wantKeys(t, "VIP", l.spread(l.client, vipURL, 60), "b1", "b2", "b3")
	})
	t.Run("vip hairpin", func(t *testing.T) {
		wantKeys(t, "hairpin", l.spread(l.backend[0], vipURL, 60), "b1", "b2", "b3")
	})
	t.Run("published from external", func(t *testing.T) {
		wantKeys(t, "published", l.spread(l.ext, pubURL, 60), "b1", "b2", "b3")
	})
	t.Run("published from container", func(t *testing.T) {
		wantKeys(t, "published", l.spread(l.client, pubURL, 45), "b1", "b2", "b3")
	})
	t.Run("published from node", func(t *testing.T) {
		wantKeys(t, "published", l.spread(l.node, pubURL, 45), "b1", "b2", "b3")
	})
	t.Run("egress masquerade", func(t *testing.T) {
		// The external client has no route to the cluster range: only a
		// masqueraded connection gets an answer.
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("ext\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", l.ext, "/bin/busybox", "httpd", "-f", "-p", "80", "-h", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		extURL := "http://" + strings.TrimSuffix(l.nodeIP, ".1") + ".2/"
		deadline := time.Now().Add(5 * time.Second)
		for {
			body, err := l.get(l.client, extURL)
			if err == nil && body == "ext" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("container to outside: %q %v", body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("conflicting state programs the rest", func(t *testing.T) {
		st := l.state(0, 1, 2)
		st.Services = append(st.Services,
			Service{Name: "clash", Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}, Backends: st.Services[0].Backends[2:]},
			Service{Name: "other", Ports: []api.PortConfig{{Published: 9090, Target: 80, Protocol: "tcp"}}, Backends: st.Services[0].Backends[1:2]},
		)
		err := lb.Set(st)
		if !errors.Is(err, ErrInvalidState) || !strings.Contains(err.Error(), "web and clash both publish tcp/8080") {
			t.Fatalf("Set = %v, want the conflict reported", err)
		}
		wantKeys(t, "the other service's port", l.spread(l.ext, "http://"+l.nodeIP+":9090/", 10), "b2")
		wantKeys(t, "the contested port", l.spread(l.ext, pubURL, 40), "b1", "b2", "b3")
	})
	t.Run("backend removed", func(t *testing.T) {
		if err := lb.Set(l.state(0, 1)); err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "VIP", l.spread(l.client, vipURL, 40), "b1", "b2")
		wantKeys(t, "published", l.spread(l.ext, pubURL, 40), "b1", "b2")
	})
	t.Run("no backends refused", func(t *testing.T) {
		if err := lb.Set(l.state()); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ ns, url string }{{l.client, vipURL}, {l.ext, pubURL}, {l.backend[0], vipURL}} {
			start := time.Now()
			_, err := l.get(c.ns, c.url)
			if err == nil || !strings.Contains(err.Error(), "refused") {
				t.Fatalf("GET %s from %s: %v, want connection refused", c.url, c.ns, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("refusal took %v", d)
			}
		}
	})
	t.Run("restart keeps rules, teardown removes them", func(t *testing.T) {
		if err := lb.Set(l.state(2)); err != nil {
			t.Fatal(err)
		}
		if err := lb.Close(); err != nil {
			t.Fatal(err)
		}
		if err := lb.Set(l.state(2)); err != ErrClosed {
			t.Fatalf("Set after Close: %v", err)
		}
		wantKeys(t, "after Close", l.spread(l.client, vipURL, 5), "b3")
		lb2 := l.newLB()
		if err := lb2.Set(l.state(0, 2)); err != nil {
			t.Fatal(err)
		}
		wantKeys(t, "new LB", l.spread(l.client, vipURL, 30), "b1", "b3")
		if err := lb2.Teardown(); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("ip", "netns", "exec", l.node, "nft", "list", "table", "ip", "shoal").CombinedOutput(); err == nil {
			t.Fatalf("table still there after Teardown:\n%s", out)
		}
		if _, err := l.get(l.client, vipURL); err == nil {
			t.Fatal("VIP still answers after Teardown")
		}
	})
}

// TestLBChurn flips the backend set while a client keeps calling the VIP:
// every sync is one transaction, so no request may fail (recipe §6).
func TestLBChurn(t *testing.T) {
	l := newLab(t)
	lb := l.newLB()
	if err := lb.Set(l.state(0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		sets := [][]int{{0, 1}, {0, 1, 2}, {2}, {1, 2}}
		for i := 0; ctx.Err() == nil; i++ {
			if err := lb.Set(l.state(sets[i%len(sets)]...)); err != nil {
				done <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		done <- nil
	}()
	seen := l.spread(l.client, "http://"+l.vip.String()+"/", 40)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(seen) < 2 {
		t.Fatalf("churn answered only by %v", seen)
	}
}

// startDNS serves DNS on the bridge address inside the node (web and
// tasks.web; the rest forwarded to a fake upstream on the test's loopback)
// and returns a function asking it from the client container.
func (l *lab) startDNS() func(name string) (*dns.Msg, error) {
	t := l.t
	up := fakeUpstream(t)
	d := lbdns.New(lbdns.Config{Addr: "10.42.1.1:53", Upstreams: []string{up}})
	d.Set(lbdns.Records{"web": {l.vip}, "tasks.web": ips(l.bIPs...)})
	nodeNS, err := os.Open("/var/run/netns/" + l.node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodeNS.Close() })
	clientNS, err := os.Open("/var/run/netns/" + l.client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clientNS.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// Sockets are bound in the netns of the thread that creates them;
		// forwarded queries dial from other threads, i.e. the root netns.
		done <- runInNS(nodeNS, func() error { return d.Run(ctx) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("DNS not ready")
	}
	return func(name string) (*dns.Msg, error) {
		var resp *dns.Msg
		err := runInNS(clientNS, func() error {
			c := &dns.Client{Timeout: 2 * time.Second}
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			var err error
			resp, _, err = c.Exchange(m, "10.42.1.1:53")
			return err
		})
		return resp, err
	}
}

// fakeUpstream stands in for the node's resolver on the test's loopback:
// it answers every question over UDP with 192.0.2.1.
func fakeUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A:   net.IPv4(192, 0, 2, 1),
		})
		_ = w.WriteMsg(m)
	})}
	go func() { _ = s.ActivateAndServe() }()
	t.Cleanup(func() { _ = s.Shutdown() })
	return pc.LocalAddr().String()
}

func answerIPs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

// TestDNSInNetns serves DNS on the bridge address inside the node and asks
// from the client container; forwarding reaches a fake upstream on the
// test's loopback.
func TestDNSInNetns(t *testing.T) {
	l := newLab(t)
	query := l.startDNS()
	ask := func(name string) *dns.Msg {
		r, err := query(name)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		return r
	}
	if got := answerIPs(ask("web.")); !slices.Equal(got, []string{"10.43.0.10"}) {
		t.Fatalf("web: %v", got)
	}
	if got := answerIPs(ask("tasks.web.")); !slices.Equal(got, l.bIPs) {
		t.Fatalf("tasks.web: %v", got)
	}
	if r := ask("unknown."); r.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown: %s", dns.RcodeToString[r.Rcode])
	}
	if got := answerIPs(ask("www.example.org.")); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("forwarded: %v", got)
	}
}

// TestDNSWithPublished53: a service publishing port 53 (here on backends
// that serve nothing there) leaves the containers' embedded DNS on the
// bridge address alone, with backends and without. Before, the bridge
// address counted as a published-port address: the query was DNATed to
// the service, or refused while it had no backends.
func TestDNSWithPublished53(t *testing.T) {
	l := newLab(t)
	query := l.startDNS()
	lb := l.newLB()
	for _, backs := range [][]int{{0, 1, 2}, nil} {
		st := l.state(backs...)
		st.Services[0].Ports = append(st.Services[0].Ports, api.PortConfig{Published: 53, Target: 53, Protocol: "udp"},
			api.PortConfig{Published: 53, Target: 53, Protocol: "tcp"})
		st.DNS = net.ParseIP("10.42.1.1")
		if err := lb.Set(st); err != nil {
			t.Fatal(err)
		}
		r, err := query("web.")
		if err != nil {
			t.Fatalf("backends %v: the embedded DNS does not answer: %v", backs, err)
		}
		if got := answerIPs(r); !slices.Equal(got, []string{"10.43.0.10"}) {
			t.Fatalf("backends %v: web: %v", backs, got)
		}
	}
}

// udpEcho makes every backend answer UDP datagrams on port with its name
// (b1, b2, b3) until the test ends.
func (l *lab) udpEcho(port int) {
	t := l.t
	for i, ns := range l.backend {
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		var pc net.PacketConn
		err = runInNS(f, func() (err error) { pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port)); return err })
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		name := fmt.Sprintf("b%d", i+1)
		go func() { // ends when Cleanup closes pc
			buf := make([]byte, 512)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo([]byte(name), from)
			}
		}()
	}
}

// udpClient opens a UDP socket in ns on laddr ("ip:port", port 0 for any)
// and returns a function that sends one datagram to dst from it and
// returns the answer ("" when none comes within a second). The socket
// (hence the flow's source port) stays the same across calls.
func (l *lab) udpClient(ns, laddr string) func(dst *net.UDPAddr) string {
	t := l.t
	f, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	var c net.PacketConn
	err = runInNS(f, func() (err error) { c, err = net.ListenPacket("udp", laddr); return err })
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func(dst *net.UDPAddr) string {
		if _, err := c.WriteTo([]byte("?"), dst); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 64)
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
}

// TestLBUDPConntrackFlush: a UDP flow sticks to its backend through
// conntrack; removing that backend must move the very same flow (same
// source port) to another one, which needs the conntrack entry deleted.
func TestLBUDPConntrackFlush(t *testing.T) {
	l := newLab(t)
	l.udpEcho(53)
	client := l.udpClient(l.client, "10.42.1.50:0")
	vip := &net.UDPAddr{IP: l.vip, Port: 53}
	ask := func() string {
		t.Helper()
		got := client(vip)
		if got == "" {
			t.Fatal("udp to VIP: no answer")
		}
		return got
	}

	lb := l.newLB()
	if err := lb.Set(l.state(0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	first := ask()
	for i := 0; i < 5; i++ {
		if got := ask(); got != first {
			t.Fatalf("flow moved from %s to %s without a change", first, got)
		}
	}
	var keep []int
	for i := range l.backend {
		if fmt.Sprintf("b%d", i+1) != first {
			keep = append(keep, i)
		}
	}
	if err := lb.Set(l.state(keep...)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if got := ask(); got == first {
			t.Fatalf("flow still reaches removed backend %s", first)
		}
	}
}

// TestLBNewUDPPortStaleFlow: a LAN client that sent to a UDP port of the
// node before it was published reaches the backends once it is, with the
// very same flow. Before, its conntrack entry ("no DNAT") outlived the
// publication: only ports of services that had existed without backends
// were flushed, so it got no answer for as long as it kept sending.
func TestLBNewUDPPortStaleFlow(t *testing.T) {
	l := newLab(t)
	l.udpEcho(514)
	dst := &net.UDPAddr{IP: net.ParseIP(l.nodeIP), Port: 5514}
	lb := l.newLB()
	if err := lb.Set(l.state(0)); err != nil { // web only: 5514 not published
		t.Fatal(err)
	}
	old := l.udpClient(l.ext, ":0")
	if got := old(dst); got != "" {
		t.Fatalf("an answer (%q) before the port is published", got)
	}
	st := l.state(0)
	st.Services = append(st.Services, Service{Name: "syslog", VIP: net.ParseIP("10.43.0.11"),
		Ports:    []api.PortConfig{{Published: 5514, Target: 514, Protocol: "udp"}},
		Backends: []Backend{{IP: net.ParseIP(l.bIPs[1]), Local: true}, {IP: net.ParseIP(l.bIPs[2]), Local: true}}})
	if err := lb.Set(st); err != nil {
		t.Fatal(err)
	}
	if got := l.udpClient(l.ext, ":0")(dst); got == "" {
		t.Fatal("control: a new client gets no answer from the new published port")
	}
	if got := old(dst); got != "b2" && got != "b3" {
		t.Fatalf("the client that sent before the port was published: answer %q, want b2 or b3", got)
	}
}

// TestLBRestartFlushesStaleUDP: an agent restart (a new LB: no previous
// state) with a backend removed meanwhile moves the UDP flows off that
// backend, and leaves the flows on live backends where they are. Before,
// the first Set of an LB flushed nothing, and a flow kept sending to the
// removed backend.
func TestLBRestartFlushesStaleUDP(t *testing.T) {
	l := newLab(t)
	l.udpEcho(53)
	vip := &net.UDPAddr{IP: l.vip, Port: 53}
	lb := l.newLB()
	if err := lb.Set(l.state(0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	// Two flows on two different backends.
	gone := l.udpClient(l.client, "10.42.1.50:0")
	goneAt := gone(vip)
	var stay func(*net.UDPAddr) string
	var stayAt string
	for range 30 {
		stay = l.udpClient(l.client, "10.42.1.50:0")
		if stayAt = stay(vip); stayAt != goneAt {
			break
		}
	}
	if goneAt == "" || stayAt == "" || stayAt == goneAt {
		t.Fatalf("no two flows on two backends: %q %q", goneAt, stayAt)
	}
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	var keep []int
	for i := range l.backend {
		if fmt.Sprintf("b%d", i+1) != goneAt {
			keep = append(keep, i)
		}
	}
	lb2 := l.newLB()
	if err := lb2.Set(l.state(keep...)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := gone(vip); got == goneAt || got == "" {
			t.Fatalf("after the restart the flow on removed backend %s answers %q", goneAt, got)
		}
		if got := stay(vip); got != stayAt {
			t.Fatalf("after the restart the flow on live backend %s moved to %q", stayAt, got)
		}
	}
}

// addRemoteNode adds a second node (bridge 10.42.2.1/24, one httpd backend
// "b4" at 10.42.2.11) joined to the first by a VXLAN overlay over its own
// underlay link, flannel style as in the recipe (§2). It returns b4's IP.
func (l *lab) addRemoteNode() string {
	t := l.t
	id := l.node[3:]
	n2 := "lbm" + id
	b4 := "lbb4" + id
	y := strings.Split(l.nodeIP, ".")[2]
	ul1, ul2 := "10.231."+y+".1", "10.231."+y+".2"
	addNS := func(name string) {
		run(t, "ip", "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		run(t, "ip", "-n", name, "link", "set", "lo", "up")
	}
	addNS(n2)
	run(t, "ip", "netns", "exec", n2, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	run(t, "ip", "-n", l.node, "link", "add", "un2", "type", "veth", "peer", "name", "eth0", "netns", n2)
	run(t, "ip", "-n", l.node, "addr", "add", ul1+"/24", "dev", "un2")
	run(t, "ip", "-n", l.node, "link", "set", "un2", "up")
	run(t, "ip", "-n", n2, "addr", "add", ul2+"/24", "dev", "eth0")
	run(t, "ip", "-n", n2, "link", "set", "eth0", "up")
	run(t, "ip", "-n", n2, "link", "add", "shoal0", "type", "bridge")
	run(t, "ip", "-n", n2, "addr", "add", "10.42.2.1/24", "dev", "shoal0")
	run(t, "ip", "-n", n2, "link", "set", "shoal0", "up")

	type end struct{ ns, local, dev, subnet string }
	ends := []end{{l.node, ul1, "un2", "1"}, {n2, ul2, "eth0", "2"}}
	macs := map[string]string{}
	for _, e := range ends {
		run(t, "ip", "-n", e.ns, "link", "add", "shoal.vx", "type", "vxlan", "id", "42", "dstport", "4789",
			"local", e.local, "dev", e.dev, "nolearning")
		run(t, "ip", "-n", e.ns, "link", "set", "shoal.vx", "mtu", "1450")
		run(t, "ip", "-n", e.ns, "addr", "add", "10.42."+e.subnet+".0/32", "dev", "shoal.vx")
		run(t, "ip", "-n", e.ns, "link", "set", "shoal.vx", "up")
		macs[e.ns] = strings.TrimSpace(run(t, "ip", "netns", "exec", e.ns, "cat", "/sys/class/net/shoal.vx/address"))
	}
	for i, e := range ends {
		p := ends[1-i]
		run(t, "ip", "-n", e.ns, "route", "replace", "10.42."+p.subnet+".0/24", "via", "10.42."+p.subnet+".0", "dev", "shoal.vx", "onlink")
		run(t, "ip", "-n", e.ns, "neigh", "replace", "10.42."+p.subnet+".0", "lladdr", macs[p.ns], "dev", "shoal.vx", "nud", "permanent")
		run(t, "bridge", "-n", e.ns, "fdb", "append", macs[p.ns], "dev", "shoal.vx", "dst", p.local, "self", "permanent")
	}

	// The remote node runs an LB of its own (its mesh-mark chain) and the
	// return rule the overlay installs per peer: replies of connections
	// node 1's routing mesh forwarded without masquerade go back there.
	cfg2 := DefaultConfig()
	cfg2.NetNSPath = "/var/run/netns/" + n2
	lb2, err := New(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lb2.Close() })
	if err := lb2.Set(State{}); err != nil {
		t.Fatal(err)
	}
	mac1, err := net.ParseMAC(macs[l.node])
	if err != nil {
		t.Fatal(err)
	}
	mark := fmt.Sprint(binary.NativeEndian.Uint32(mac1[2:6]))
	run(t, "ip", "-n", n2, "route", "replace", "default", "via", "10.42.1.0", "dev", "shoal.vx", "onlink", "table", mark)
	run(t, "ip", "-n", n2, "rule", "add", "pref", "31000", "fwmark", mark, "iif", "shoal0", "lookup", mark)

	addNS(b4)
	run(t, "ip", "-n", n2, "link", "add", "vb4", "type", "veth", "peer", "name", "eth0", "netns", b4)
	run(t, "ip", "-n", n2, "link", "set", "vb4", "mtu", "1450", "master", "shoal0", "up")
	run(t, "ip", "-n", b4, "addr", "add", "10.42.2.11/24", "dev", "eth0")
	run(t, "ip", "-n", b4, "link", "set", "eth0", "mtu", "1450", "up")
	run(t, "ip", "-n", b4, "route", "add", "default", "via", "10.42.2.1")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("b4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// /cgi-bin/ip answers the address the backend sees as its client.
	if err := os.MkdirAll(filepath.Join(dir, "cgi-bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	cgi := "#!/bin/busybox sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n'\necho \"client=$REMOTE_ADDR\"\n"
	if err := os.WriteFile(filepath.Join(dir, "cgi-bin", "ip"), []byte(cgi), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", b4, "/bin/busybox", "httpd", "-f", "-p", "80", "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for {
		if body, err := l.get(l.client, "http://10.42.2.11/"); err == nil && body == "b4" {
			return "10.42.2.11"
		} else if time.Now().After(deadline) {
			t.Fatalf("b4 not reachable over the overlay: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLBRemoteBackend: the routing mesh and the VIP reach a backend on
// another node through the VXLAN device, and replies find their way back.
func TestLBRemoteBackend(t *testing.T) {
	l := newLab(t)
	remote := l.addRemoteNode()
	lb := l.newLB()
	st := l.state(0)
	st.Services[0].Backends = append(st.Services[0].Backends, Backend{IP: net.ParseIP(remote)})
	if err := lb.Set(st); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "published from external", l.spread(l.ext, "http://"+l.nodeIP+":8080/", 40), "b1", "b4")
	wantKeys(t, "VIP from client", l.spread(l.client, "http://"+l.vip.String()+"/", 40), "b1", "b4")
	wantKeys(t, "VIP hairpin", l.spread(l.backend[0], "http://"+l.vip.String()+"/", 40), "b1", "b4")
}

// TestLBRemoteBackendKeepsClientAddress: through the routing mesh, a
// backend on another node sees the external client's own address (not the
// node's VXLAN address), and the reply still finds its way back through
// the node that took the connection.
func TestLBRemoteBackendKeepsClientAddress(t *testing.T) {
	l := newLab(t)
	remote := l.addRemoteNode()
	lb := l.newLB()
	st := l.state(0)
	st.Services = append(st.Services, Service{Name: "far",
		Ports:    []api.PortConfig{{Published: 8081, Target: 80, Protocol: "tcp"}},
		Backends: []Backend{{IP: net.ParseIP(remote)}}})
	if err := lb.Set(st); err != nil {
		t.Fatal(err)
	}
	extIP := strings.TrimSuffix(l.nodeIP, ".1") + ".2"
	for i := 0; i < 10; i++ {
		body, err := l.get(l.ext, "http://"+l.nodeIP+":8081/cgi-bin/ip")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if a := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(body, "client="), "[::ffff:"), "]"); a != extIP {
			t.Fatalf("request %d: the remote backend saw %q, want the client %s", i, body, extIP)
		}
	}
}

// TestLBVIPSpoofedSource: with networks, a LAN host sending from an
// address of the default network (one it made up) reaches none of the
// network's VIPs; the network's containers still do. Before, the VIP rule
// checked the source address only, and the datagram reached a backend.
func TestLBVIPSpoofedSource(t *testing.T) {
	l := newLab(t)
	const spoofed = "10.42.9.9"
	run(t, "ip", "netns", "exec", l.node, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.ul0.rp_filter=0")
	run(t, "ip", "-n", l.ext, "addr", "add", spoofed+"/32", "dev", "eth0")
	run(t, "ip", "-n", l.ext, "route", "add", "10.43.0.0/16", "via", l.nodeIP)
	got := make(chan string, 16)
	for _, ns := range l.backend {
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		var pc net.PacketConn
		err = runInNS(f, func() (err error) { pc, err = net.ListenPacket("udp", ":53"); return err })
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 64)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				got <- string(buf[:n])
			}
		}()
	}
	lb := l.newLB()
	st := l.state(0, 1, 2)
	st.Networks = []Network{{Name: "default", Subnet: cidr("10.42.0.0/16"), VIPs: cidr("10.43.0.0/16"), Bridge: "shoal0", VXLAN: "shoal.vx"}}
	st.Peers = []net.IP{}
	if err := lb.Set(st); err != nil {
		t.Fatal(err)
	}
	send := func(ns, from, msg string) {
		t.Helper()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var c net.PacketConn
		if err := runInNS(f, func() (err error) { c, err = net.ListenPacket("udp", from+":0"); return err }); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.WriteTo([]byte(msg), &net.UDPAddr{IP: l.vip, Port: 53}); err != nil {
			t.Fatal(err)
		}
	}
	arrived := func(msg string) bool {
		deadline := time.After(time.Second)
		for {
			select {
			case m := <-got:
				if m == msg {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}
	send(l.client, "10.42.1.50", "container")
	if !arrived("container") {
		t.Fatal("a container's datagram to its network's VIP reached no backend")
	}
	send(l.ext, spoofed, "spoofed")
	if arrived("spoofed") {
		t.Fatal("a LAN host sending from a made-up address of the network reached a backend through the VIP")
	}
}

// TestLBIntactAfterForeignFlush: someone else deletes the LB's rules (`nft
// flush ruleset` from an nftables service restart or a firewall reload, a
// chain deleted by hand): Intact says so, and a Set of the same state
// brings the VIP back.
func TestLBIntactAfterForeignFlush(t *testing.T) {
	l := newLab(t)
	lb := l.newLB()
	if ok, err := lb.Intact(); err != nil || ok {
		t.Fatalf("Intact before any Set = %v, %v; want false", ok, err)
	}
	st := l.state(0, 1)
	vipURL := "http://" + l.vip.String() + "/"
	for _, c := range []struct {
		name string
		cmd  []string
	}{
		{"flush ruleset", []string{"nft", "flush", "ruleset"}},
		{"table deleted", []string{"nft", "delete", "table", "ip", "shoal"}},
		{"chain deleted", []string{"nft", "delete", "chain", "ip", "shoal", "reject-out"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := lb.Set(st); err != nil {
				t.Fatal(err)
			}
			if ok, err := lb.Intact(); err != nil || !ok {
				t.Fatalf("Intact after Set = %v, %v; want true", ok, err)
			}
			// The VIP picks a backend by numgen random: 10 requests all went
			// to b1 once in CI (odds 1 in 512 per check); 40 make it 2^-39.
			wantKeys(t, "VIP", l.spread(l.client, vipURL, 40), "b1", "b2")
			if c.name == "chain deleted" {
				// A base chain that jumps nowhere can go by itself.
				run(t, "ip", "netns", "exec", l.node, "nft", "flush", "chain", "ip", "shoal", "reject-out")
			}
			run(t, append([]string{"ip", "netns", "exec", l.node}, c.cmd...)...)
			if ok, err := lb.Intact(); err != nil || ok {
				t.Fatalf("Intact after %s = %v, %v; want false", c.name, ok, err)
			}
			if c.name != "chain deleted" {
				if _, err := l.get(l.client, vipURL); err == nil {
					t.Fatalf("VIP answers after %s", c.name)
				}
			}
			if err := lb.Set(st); err != nil {
				t.Fatal(err)
			}
			if ok, err := lb.Intact(); err != nil || !ok {
				t.Fatalf("Intact after the repairing Set = %v, %v; want true", ok, err)
			}
			wantKeys(t, "VIP after the repairing Set", l.spread(l.client, vipURL, 40), "b1", "b2")
		})
	}
}
