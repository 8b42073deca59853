package test

// End-to-end tests of networks as objects: services on different networks
// cannot reach each other (by address, by VIP or by name), a service on
// two networks reaches both, an internal network has no way out, and from
// a LAN host with a route to the cluster only published ports answer.
//
// Probes run inside the task containers' network namespaces with the host's
// busybox (nsenter --net), which needs no exec support in the agent.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// probeTimeout bounds one probe (wget, nslookup) in seconds; a refused or
// dropped connection must fail within it.
const probeTimeout = "3"

// netnsOf returns the network namespace path of a running task's container.
func netnsOf(t *testing.T, c *harness.Cluster, tk api.Task) string {
	t.Helper()
	for _, h := range c.Hosts() {
		if hostname(h) == tk.Node {
			p := h.ContainerNetns(tk.ContainerID)
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("netns of task %s: %v", tk.Name, err)
			}
			return p
		}
	}
	t.Fatalf("task %s runs on unknown node %q", tk.Name, tk.Node)
	return ""
}

// inNS runs the host's busybox applet in the namespace at path (a netns
// path or a named netns), bounded by probeTimeout.
func inNS(path string, args ...string) (string, error) {
	var cmd *exec.Cmd
	full := append([]string{probeTimeout, "busybox"}, args...)
	if strings.HasPrefix(path, "/") {
		cmd = exec.Command("nsenter", append([]string{"--net=" + path, "timeout"}, full...)...)
	} else {
		cmd = exec.Command("ip", append([]string{"netns", "exec", path, "timeout"}, full...)...)
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func wgetFrom(ns, url string) (string, error) { return inNS(ns, "wget", "-q", "-O", "-", url) }

// resolves reports whether name resolves through the DNS server at dns
// from ns, and to which addresses.
func resolves(ns, dns, name string) (bool, string) {
	out, err := inNS(ns, "nslookup", name, dns)
	if err != nil {
		return false, out
	}
	// busybox prints the server first, then "Name: ... Address: ..." of
	// the answer.
	i := strings.Index(out, "Name:")
	if i < 0 {
		return false, out
	}
	return true, out[i:]
}

// netJSON is Host.JSON for `network` subcommands (the flag goes last; the
// CLI moves it before the arguments).
func netJSON(h *harness.Host, v any, args ...string) error {
	out, stderr, err := h.CLI(append([]string{"network"}, append(args, "--format", "json")...)...)
	if err != nil {
		return fmt.Errorf("shoal network %v: %w: %s", args, err, stderr)
	}
	return json.Unmarshal([]byte(out), v)
}

func runningTasks(t *testing.T, h *harness.Host, svc string) []api.Task {
	t.Helper()
	var out []api.Task
	for _, tk := range tasksOf(t, h, svc) {
		if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
			out = append(out, tk)
		}
	}
	return out
}

// dnsOf is the embedded DNS server of the node a task runs on: the .1 of
// the node's default-network /24.
func dnsOf(t *testing.T, h *harness.Host, tk api.Task) string {
	t.Helper()
	n, err := h.Node(tk.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	p, err := netip.ParsePrefix(n.Subnet)
	if err != nil {
		t.Fatalf("node %s subnet %q: %v", n.Hostname, n.Subnet, err)
	}
	return p.Addr().Next().String()
}

// lanHost makes a namespace on the cluster's bridge, outside the cluster,
// with routes to the cluster ranges through via, and an httpd answering
// "lan" on port 80. It is removed at cleanup.
func lanHost(t *testing.T, c *harness.Cluster, via *harness.Host) (ns, ip string) {
	t.Helper()
	ns = c.Name + "-lan"
	veth := c.Name + "l"
	ip = fmt.Sprintf("10.213.%d.200", c.Subnet)
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("lan\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	steps := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"ip", "link", "set", veth, "master", c.Name, "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
	}
	for _, r := range []string{"10.42.0.0/16", "10.43.0.0/16", "10.44.0.0/14", "10.60.0.0/16"} {
		steps = append(steps, []string{"ip", "-n", ns, "route", "add", r, "via", via.IP})
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", s, err, out)
		}
	}
	httpd := exec.Command("ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "80", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = httpd.Process.Kill(); _ = httpd.Wait() })
	return ns, ip
}

// bridgeAddrIn returns h's address inside subnet (the gateway of that
// network's containers on h).
func bridgeAddrIn(t *testing.T, h *harness.Host, subnet string) string {
	t.Helper()
	_, want, err := net.ParseCIDR(subnet)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "-n", h.NS, "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("addresses of %s: %v: %s", h.Name, err, out)
	}
	for _, f := range strings.Fields(string(out)) {
		if ip, _, err := net.ParseCIDR(f); err == nil && want.Contains(ip) {
			return ip.String()
		}
	}
	t.Fatalf("%s has no address in %s: %s", h.Name, subnet, out)
	return ""
}

// nodeWebServer serves a page on port on every address of h's namespace,
// as a service of the node itself would, and returns the page's text.
func nodeWebServer(t *testing.T, h *harness.Host, port int) string {
	t.Helper()
	www := t.TempDir()
	page := "node " + h.Name
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(page+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	httpd := exec.Command("ip", "netns", "exec", h.NS, "busybox", "httpd", "-f", "-p", strconv.Itoa(port), "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = httpd.Process.Kill(); _ = httpd.Wait() })
	return page
}

func TestNetworksIsolation(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)

	// Networks as objects.
	h1.MustCLI(t, "network", "create", "neta")
	h1.MustCLI(t, "network", "create", "--subnet", "10.60.0.0/16", "--internal", "netb")
	var neta, netb api.Network
	if err := netJSON(h1, &neta, "inspect", "neta"); err != nil {
		t.Fatal(err)
	}
	if err := netJSON(c.Host(2), &netb, "inspect", "netb"); err != nil {
		t.Fatal(err)
	}
	if neta.ID == "" || neta.Subnet == "" || neta.VNI == 0 || neta.Internal || neta.Encrypted ||
		netb.Subnet != "10.60.0.0/16" || !netb.Internal || netb.VNI == neta.VNI || netb.VNI == api.DefaultVNI {
		t.Fatalf("networks: %+v %+v", neta, netb)
	}
	if _, stderr, err := h1.CLI("network", "create", "--subnet", neta.Subnet, "clash"); err == nil || !strings.Contains(stderr, "overlaps network neta") {
		t.Fatalf("overlapping subnet: err %v, stderr %q", err, stderr)
	}
	var nets []api.Network
	if err := netJSON(h1, &nets, "ls"); err != nil || len(nets) != 3 || nets[0].Name != api.DefaultNetwork {
		t.Fatalf("network ls: %v %+v", err, nets)
	}

	h1.MustCLI(t, "service", "create", "--name", "svca", "--replicas", "2", "--network", "neta", "bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "svcb", "--replicas", "2", "--network", "netb", "bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "svcab", "--network", "neta", "--network", "netb", "bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "pub", "--publish", "18081:80", "bb:1", "sh", "-c", webCmd)
	for svc, n := range map[string]int{"svca": 2, "svcb": 2, "svcab": 1, "pub": 1} {
		waitSlots(t, h1, svc, n, "", 90*time.Second)
	}
	var svca, svcb, svcab, pub api.Service
	for name, v := range map[string]*api.Service{"svca": &svca, "svcb": &svcb, "svcab": &svcab, "pub": &pub} {
		if err := h1.JSON(v, "service", "inspect", name); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(svcab.Networks, ",") != "neta,netb" || svcab.VIPs["neta"] == "" || svcab.VIPs["netb"] == "" ||
		svca.VIPs["neta"] == "" || svcb.VIPs["netb"] == "" || pub.VIP == "" || pub.VIPs[api.DefaultNetwork] != pub.VIP {
		t.Fatalf("service networks and VIPs: svca %v %v, svcb %v %v, svcab %v %v, pub %v %v",
			svca.Networks, svca.VIPs, svcb.Networks, svcb.VIPs, svcab.Networks, svcab.VIPs, pub.Networks, pub.VIPs)
	}

	as, bs, abs, pubs := runningTasks(t, h1, "svca"), runningTasks(t, h1, "svcb"), runningTasks(t, h1, "svcab"), runningTasks(t, h1, "pub")
	a := as[0]
	nsA, dnsA := netnsOf(t, c, a), dnsOf(t, h1, a)
	nsAB, dnsAB := netnsOf(t, c, abs[0]), dnsOf(t, h1, abs[0])
	nsB := netnsOf(t, c, bs[0])
	ipOn := func(tk api.Task, network string) string {
		if ip := tk.IPs[network]; ip != "" {
			return ip
		}
		t.Fatalf("task %s has no address on %s: %v", tk.Name, network, tk.IPs)
		return ""
	}

	// Same network: every replica by address (across nodes), the VIP and
	// the name.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, tk := range as {
			if out, err := wgetFrom(nsA, "http://"+ipOn(tk, "neta")+"/"); err != nil || !strings.Contains(out, "hello from svca.") {
				return false, fmt.Sprintf("svca task %s from svca: %v %q", tk.Name, err, out)
			}
		}
		if out, err := wgetFrom(nsA, "http://"+svca.VIPs["neta"]+"/"); err != nil || !strings.Contains(out, "hello from svca.") {
			return false, fmt.Sprintf("svca VIP from svca: %v %q", err, out)
		}
		if ok, out := resolves(nsA, dnsA, "svca"); !ok || !strings.Contains(out, svca.VIPs["neta"]) {
			return false, "svca name from svca: " + out
		}
		return true, ""
	}, "a container reaches its own network")

	// Another network: not by address, not by VIP, not by name.
	for _, tk := range bs {
		if out, err := wgetFrom(nsA, "http://"+ipOn(tk, "netb")+"/"); err == nil {
			t.Errorf("svca reached svcb task %s at %s: %q", tk.Name, ipOn(tk, "netb"), out)
		}
	}
	for _, tk := range pubs {
		if out, err := wgetFrom(nsA, "http://"+tk.IP+"/"); err == nil {
			t.Errorf("svca reached default-network task %s at %s: %q", tk.Name, tk.IP, out)
		}
	}
	if out, err := wgetFrom(nsA, "http://"+svcb.VIPs["netb"]+"/"); err == nil {
		t.Errorf("svca reached svcb's VIP: %q", out)
	}
	if out, err := wgetFrom(nsA, "http://"+pub.VIP+"/"); err == nil {
		t.Errorf("svca reached pub's VIP on the default network: %q", out)
	}
	if ok, out := resolves(nsA, dnsA, "svcb"); ok {
		t.Errorf("svca resolves svcb: %q", out)
	}
	if ok, out := resolves(nsA, dnsA, "pub"); ok {
		t.Errorf("svca resolves pub: %q", out)
	}

	// A service on both networks resolves and reaches both.
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, tc := range []struct{ name, vip, want string }{
			{"svca", svca.VIPs["neta"], "hello from svca."},
			{"svcb", svcb.VIPs["netb"], "hello from svcb."},
		} {
			if out, err := wgetFrom(nsAB, "http://"+tc.vip+"/"); err != nil || !strings.Contains(out, tc.want) {
				return false, fmt.Sprintf("%s VIP from svcab: %v %q", tc.name, err, out)
			}
			if ok, out := resolves(nsAB, dnsAB, tc.name); !ok || !strings.Contains(out, tc.vip) {
				return false, fmt.Sprintf("%s name from svcab: %q", tc.name, out)
			}
		}
		return true, ""
	}, "a container on two networks reaches both")

	// The world outside the cluster: reachable from a normal network, not
	// from an internal one.
	lan, lanIP := lanHost(t, c, h1)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		out, err := wgetFrom(nsA, "http://"+lanIP+"/")
		return err == nil && out == "lan", fmt.Sprintf("svca to the LAN: %v %q", err, out)
	}, "a container on a normal network reaches the LAN")
	if out, err := wgetFrom(nsB, "http://"+lanIP+"/"); err == nil {
		t.Errorf("a container on the internal network reached the LAN: %q", out)
	}
	// Nor through the node's DNS: a name outside the cluster is not asked
	// upstream for it (REFUSED at once; forwarding was a way out: Docker's
	// CVE-2024-29018), while its own service names resolve. A container
	// on a normal network is still forwarded (no upstream answers here,
	// so it is not refused but times out).
	dnsB := dnsOf(t, h1, bs[0])
	if ok, out := resolves(nsB, dnsB, "svcb"); !ok || !strings.Contains(out, svcb.VIPs["netb"]) {
		t.Errorf("svcb name from the internal network: %q", out)
	}
	if out, _ := inNS(nsB, "nslookup", "exfiltrate.example.org", dnsB); !strings.Contains(out, "REFUSED") {
		t.Errorf("the node's DNS forwarded an outside name for a container on an internal network: %q, want REFUSED", out)
	}
	if out, _ := inNS(nsA, "nslookup", "example.org", dnsA); strings.Contains(out, "REFUSED") {
		t.Errorf("the node's DNS refused an outside name to a container on a normal network: %q", out)
	}

	// From the LAN: only published ports answer, through any node.
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, h := range c.Hosts() {
			if out, err := wgetFrom(lan, fmt.Sprintf("http://%s:18081/", h.IP)); err != nil || !strings.Contains(out, "hello from pub.") {
				return false, fmt.Sprintf("published port via %s: %v %q", h.Name, err, out)
			}
		}
		return true, ""
	}, "published ports answer the LAN")
	// A container of the internal network does not leave it through a
	// published port of its own node either (DNATed to pub's container
	// on the default network, it was let through): the svcb replica on
	// pub's node (svcb's two replicas spread over both nodes) calls it.
	bOnPub := slices.IndexFunc(bs, func(tk api.Task) bool { return tk.NodeID == pubs[0].NodeID })
	if bOnPub < 0 {
		t.Fatalf("no svcb task on pub's node %s: %+v", pubs[0].Node, bs)
	}
	nsBPub := netnsOf(t, c, bs[bOnPub])
	for _, h := range c.Hosts() {
		if hostname(h) != pubs[0].Node {
			continue
		}
		if out, err := wgetFrom(nsBPub, fmt.Sprintf("http://%s:18081/", h.IP)); err == nil {
			t.Errorf("a container on the internal network reached pub through its node's published port: %q", out)
		}
	}
	// Nor to anything else its node serves (here a web server on every
	// address of the node, as an sshd or a metrics port would be): not on
	// the node's address, not on the network's gateway, while a container
	// of a normal network on that node still reaches it, and the internal
	// network's own DNS still answers (above).
	var pubHost *harness.Host
	for _, h := range c.Hosts() {
		if hostname(h) == pubs[0].Node {
			pubHost = h
		}
	}
	if pubHost == nil {
		t.Fatalf("no host named %s", pubs[0].Node)
	}
	gwB := bridgeAddrIn(t, pubHost, "10.60.0.0/16")
	nodeSvc := nodeWebServer(t, pubHost, 18099)
	nsPub := netnsOf(t, c, pubs[0])
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		out, err := wgetFrom(nsPub, "http://"+pubHost.IP+":18099/")
		return err == nil && out == nodeSvc, fmt.Sprintf("pub's container to its node's service: %v %q", err, out)
	}, "a container on a normal network reaches its node's services")
	for _, addr := range []string{pubHost.IP, gwB} {
		if out, err := wgetFrom(nsBPub, "http://"+addr+":18099/"); err == nil {
			t.Errorf("a container on the internal network reached its node's service at %s: %q", addr, out)
		}
	}
	targets := []string{pubs[0].IP, ipOn(a, "neta"), ipOn(bs[0], "netb"), pub.VIP, svca.VIPs["neta"], svcb.VIPs["netb"]}
	for _, tk := range pubs {
		targets = append(targets, tk.IP+":80")
	}
	for _, target := range targets {
		if out, err := wgetFrom(lan, "http://"+target+"/"); err == nil {
			t.Errorf("the LAN reached %s: %q", target, out)
		}
	}
	dnsH1 := dnsOf(t, h1, api.Task{NodeID: h1.NodeID(t)})
	if ok, out := resolves(lan, dnsH1, "pub"); ok {
		t.Errorf("the node's DNS answers the LAN: %q", out)
	}
	if ok, out := resolves(lan, dnsH1, "example.org"); ok {
		t.Errorf("the node's DNS resolves for the LAN: %q", out)
	}

	// A network in use cannot go; once unused it can.
	_, stderr, err := h1.CLI("network", "rm", "neta")
	if err == nil || !strings.Contains(stderr, "used by service svca, svcab") {
		t.Fatalf("rm of a network in use: err %v, stderr %q", err, stderr)
	}
	if _, stderr, err := h1.CLI("network", "rm", "default"); err == nil || !strings.Contains(stderr, "cannot be removed") {
		t.Fatalf("rm default: err %v, stderr %q", err, stderr)
	}
	if err := netJSON(h1, &nets, "ls"); err != nil || len(nets) != 3 {
		t.Fatalf("a refused rm changed the networks: %v %+v", err, nets)
	}
	h1.MustCLI(t, "service", "rm", "svca", "svcab")
	h1.MustCLI(t, "network", "rm", "neta")
	if _, _, err := h1.CLI("network", "inspect", "neta"); err == nil {
		t.Fatal("removed network still inspects")
	}
}

// TestNetworksServiceUpdate: moving a service to another network replaces
// its tasks, which then answer on the new network only.
func TestNetworksServiceUpdate(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)
	h1.MustCLI(t, "network", "create", "--attachable", "neta")
	h1.MustCLI(t, "network", "create", "netx")
	h1.MustCLI(t, "service", "create", "--name", "web", "bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "client", "--network", "neta", "bb:1", "sh", "-c", webCmd)
	waitSlots(t, h1, "web", 1, "", 90*time.Second)
	waitSlots(t, h1, "client", 1, "", 90*time.Second)
	old := runningTasks(t, h1, "web")[0]

	h1.MustCLI(t, "service", "update", "--network-add", "neta", "--network-rm", "default", "web")
	var web api.Service
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		if err := h1.JSON(&web, "service", "inspect", "web"); err != nil {
			return false, err.Error()
		}
		run := runningTasks(t, h1, "web")
		return len(run) == 1 && run[0].ID != old.ID && run[0].IPs["neta"] != "" && web.VIPs["neta"] != "",
			fmt.Sprintf("networks %v vips %v tasks %+v", web.Networks, web.VIPs, run)
	}, "the task was replaced by one on neta")
	if strings.Join(web.Networks, ",") != "neta" || web.VIP != "" {
		t.Fatalf("after update: networks %v VIP %q", web.Networks, web.VIP)
	}
	cl := runningTasks(t, h1, "client")[0]
	ns := netnsOf(t, c, cl)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		out, err := wgetFrom(ns, "http://"+web.VIPs["neta"]+"/")
		return err == nil && strings.Contains(out, "hello from web."), fmt.Sprintf("%v %q", err, out)
	}, "web answers on neta")

	// shoal run joins attachable networks only, and then sees that
	// network's services.
	if _, stderr, err := h1.CLI("run", "--rm", "--network", "netx", "bb:1", "true"); err == nil || !strings.Contains(stderr, "not attachable") {
		t.Fatalf("run on a network that is not attachable: err %v, stderr %q", err, stderr)
	}
	out := c.Host(2).MustCLI(t, "run", "--rm", "--network", "neta", "bb:1", "sh", "-c",
		"timeout 3 wget -q -O - http://"+web.VIPs["neta"]+"/; nslookup web 2>&1; true")
	if !strings.Contains(out, "hello from web.") || !strings.Contains(out, web.VIPs["neta"]) {
		t.Fatalf("run --network neta: %q", out)
	}
}
