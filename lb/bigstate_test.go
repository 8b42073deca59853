package lb

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"testing"

	"github.com/google/nftables"
	"github.com/shoal-org/shoal/api"
)

// bigState is n services on the default network, each with a VIP, two
// backends and (withPorts) a published TCP port.
func bigState(n int, withPorts bool) State {
	st := State{
		Networks: []Network{{Name: "default", Subnet: cidr("10.42.0.0/16"), VIPs: cidr("10.43.0.0/16"), Bridge: "shoal0", VXLAN: "shoal.vx"}},
		Peers:    ips("10.213.1.12", "10.213.1.13"),
		DNS:      net.ParseIP("10.42.1.1"),
	}
	for i := range n {
		s := Service{
			Name:     fmt.Sprintf("svc%04d", i),
			VIP:      net.IPv4(10, 43, byte(i>>8), byte(i)),
			Backends: []Backend{{IP: net.IPv4(10, 42, 1, byte(i)), Local: true}, {IP: net.IPv4(10, 42, 2, byte(i))}},
		}
		if withPorts {
			s.Ports = []api.PortConfig{{Published: 20000 + i, Target: 80, Protocol: "tcp"}}
		}
		st.Services = append(st.Services, s)
	}
	return st
}

// TestLBBigState: one Set programs a state of hundreds of services, and
// reports success when the kernel took it. With the socket's default
// buffers a few dozen services made Flush fail with ENOBUFS although the
// kernel had committed the batch (the agent retried forever and never
// advanced its LB index), and a few hundred made sendmsg fail with
// EMSGSIZE (nothing programmed any more).
func TestLBBigState(t *testing.T) {
	requireRoot(t)
	ns := fmt.Sprintf("lbbig%04x", rand.IntN(0x10000))
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	cfg := DefaultConfig()
	cfg.NetNSPath = "/var/run/netns/" + ns
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	for _, c := range []struct {
		services  int
		withPorts bool
	}{
		{40, false},  // ENOBUFS before
		{400, true},  // EMSGSIZE before
		{1000, true}, // beyond the buffers' floor
		{400, true},  // shrinking
	} {
		st := bigState(c.services, c.withPorts)
		rs := compile(cfg, st)
		if err := l.Set(st); err != nil {
			t.Errorf("%d services (ports %v, %d rules): Set: %v", c.services, c.withPorts, len(rs.rules), err)
		}
		if got := kernelRules(t, l); got != len(rs.rules) {
			t.Errorf("%d services: the kernel holds %d rules, the batch had %d", c.services, got, len(rs.rules))
		}
		if l.applied == nil || len(l.applied.Services) != c.services {
			t.Errorf("%d services: the LB did not record the state as applied", c.services)
		}
	}
}

// kernelRules counts the rules of the LB's table in the kernel.
func kernelRules(t *testing.T, l *LB) int {
	t.Helper()
	c, err := l.conn(minSockBuffer)
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ch := range chains {
		if ch.Table.Name != l.cfg.TableName {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		n += len(rules)
	}
	return n
}
