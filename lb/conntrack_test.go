package lb

import (
	"errors"
	"log/slog"
	"net"
	"strconv"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ctFlow is a conntrack entry of a client (10.213.1.99:40000) to dst whose
// reply comes from replySrc ("ip:port"; the same as dst when not
// DNATed), UDP unless tcp.
func ctFlow(dst, replySrc string, tcp bool) *netlink.ConntrackFlow {
	hp := func(s string) (net.IP, uint16) {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			panic(err)
		}
		n, _ := strconv.Atoi(p)
		return net.ParseIP(h).To4(), uint16(n)
	}
	proto := uint8(unix.IPPROTO_UDP)
	if tcp {
		proto = unix.IPPROTO_TCP
	}
	client := net.ParseIP("10.213.1.99").To4()
	dIP, dPort := hp(dst)
	rIP, rPort := hp(replySrc)
	return &netlink.ConntrackFlow{FamilyType: unix.AF_INET,
		Forward: netlink.IPTuple{Protocol: proto, SrcIP: client, SrcPort: 40000, DstIP: dIP, DstPort: dPort},
		Reverse: netlink.IPTuple{Protocol: proto, SrcIP: rIP, SrcPort: rPort, DstIP: client, DstPort: 40000}}
}

// TestConntrackPlan: which UDP conntrack entries a switch from prev to
// next deletes (prev nil: the first Set after an agent restart). An entry
// that does not reach a live backend of its VIP or published port must go
// (it records "no DNAT", or a backend that is gone, or another service's
// backend); an entry on a live backend stays (its flow is not moved).
// Before, only services that had existed with no backends had their
// entries flushed: a UDP port newly published here (new service, a port
// added by an update, a host-mode port whose first local task started)
// kept every flow that had reached it before, and after a restart nothing
// was flushed at all.
func TestConntrackPlan(t *testing.T) {
	const (
		node = "10.213.1.11"
		vip  = "10.43.0.11"
	)
	local := map[string]bool{node: true, "10.42.1.1": true}
	udp := func(pub, target int) []api.PortConfig {
		return []api.PortConfig{{Published: pub, Target: target, Protocol: "udp"}}
	}
	svc := func(name string, ports []api.PortConfig, addrs ...string) Service {
		return Service{Name: name, VIP: net.ParseIP(vip), Ports: ports, Backends: backends(addrs...)}
	}
	st := func(s ...Service) *State { return &State{Services: s, DNS: net.ParseIP("10.42.1.1")} }
	hostPort := []api.PortConfig{{Published: 5514, Target: 514, Protocol: "udp", Mode: api.PublishHost}}
	type flow struct {
		dst, reply string
		tcp        bool
		flushed    bool
	}
	cases := []struct {
		name       string
		prev, next *State
		flows      []flow
	}{
		{"unchanged", st(svc("syslog", udp(5514, 514), "10.42.1.2")), st(svc("syslog", udp(5514, 514), "10.42.1.2")), []flow{
			{dst: vip + ":514", reply: "10.42.1.2:514"},
			{dst: node + ":5514", reply: "10.42.1.2:514"},
		}},
		{"a backend removed", st(svc("syslog", nil, "10.42.1.2", "10.42.2.2")), st(svc("syslog", nil, "10.42.1.2")), []flow{
			{dst: vip + ":514", reply: "10.42.2.2:514", flushed: true},
			{dst: vip + ":514", reply: "10.42.1.2:514"},
		}},
		{"a VIP gets backends", st(svc("syslog", udp(5514, 514))), st(svc("syslog", udp(5514, 514), "10.42.1.2")), []flow{
			{dst: vip + ":514", reply: vip + ":514", flushed: true},
			{dst: node + ":5514", reply: node + ":5514", flushed: true},
		}},
		{"a new service publishes a UDP port", st(svc("web", nil, "10.42.1.2")),
			st(svc("web", nil, "10.42.1.2"), Service{Name: "syslog", VIP: net.ParseIP("10.43.0.12"), Ports: udp(5514, 514), Backends: backends("10.42.2.9")}), []flow{
				{dst: node + ":5514", reply: node + ":5514", flushed: true},
				{dst: "10.42.1.1:5514", reply: "10.42.1.1:5514", flushed: true},
				{dst: "10.43.0.12:514", reply: "10.43.0.12:514", flushed: true},
				{dst: node + ":5514", reply: "10.42.2.9:514"},           // already on the new backend
				{dst: "198.51.100.7:5514", reply: "198.51.100.7:5514"},  // not to this node
				{dst: node + ":5514", reply: node + ":5514", tcp: true}, // TCP ends on its own
				{dst: vip + ":514", reply: "10.42.1.2:514"},             // the other service
			}},
		{"an update publishes a UDP port", st(svc("web", nil, "10.42.1.2")), st(svc("web", udp(5514, 514), "10.42.1.2")), []flow{
			{dst: node + ":5514", reply: node + ":5514", flushed: true},
			{dst: vip + ":514", reply: "10.42.1.2:514"},
		}},
		{"a host-mode port gets its first local task",
			st(Service{Name: "h", Ports: hostPort, Backends: backends("10.42.2.9")}),
			st(Service{Name: "h", Ports: hostPort, Backends: backends("10.42.2.9", "10.42.1.9")}), []flow{
				{dst: node + ":5514", reply: node + ":5514", flushed: true},
				{dst: node + ":5514", reply: "10.42.1.9:514"},
			}},
		{"a port moves to another service", st(svc("a", udp(5514, 514), "10.42.1.2")),
			st(svc("a", nil, "10.42.1.2"), Service{Name: "b", Ports: udp(5514, 514), Backends: backends("10.42.2.9")}), []flow{
				{dst: node + ":5514", reply: "10.42.1.2:514", flushed: true},
			}},
		{"a port's target changes", st(svc("a", udp(5514, 514), "10.42.1.2")), st(svc("a", udp(5514, 515), "10.42.1.2")), []flow{
			{dst: node + ":5514", reply: "10.42.1.2:514", flushed: true},
			{dst: node + ":5514", reply: "10.42.1.2:515"},
		}},
		{"port 53 published: the embedded DNS is not it", st(svc("web", nil, "10.42.1.2")), st(svc("web", udp(53, 53), "10.42.1.2")), []flow{
			{dst: "10.42.1.1:53", reply: "10.42.1.1:53"},
			{dst: node + ":53", reply: node + ":53", flushed: true},
		}},
		{"after a restart", nil, st(svc("syslog", udp(5514, 514), "10.42.1.2", "10.42.2.2"), Service{Name: "dns", Ports: udp(53, 53), Backends: backends("10.42.1.5")}), []flow{
			{dst: vip + ":514", reply: "10.42.1.2:514"},
			{dst: vip + ":514", reply: "10.42.1.7:514", flushed: true}, // a backend removed while no agent ran
			{dst: vip + ":514", reply: vip + ":514", flushed: true},
			{dst: node + ":5514", reply: "10.42.2.2:514"},
			{dst: node + ":5514", reply: "10.42.1.7:514", flushed: true},
			{dst: node + ":5514", reply: node + ":5514", flushed: true},
			{dst: "198.51.100.7:5514", reply: "198.51.100.7:5514"},
			{dst: "10.42.1.1:53", reply: "10.42.1.1:53"},
			{dst: vip + ":514", reply: "10.42.1.7:514", tcp: true},
			{dst: "10.43.0.99:514", reply: "10.42.1.8:514", flushed: true}, // a service removed while no agent ran
			{dst: node + ":6000", reply: "10.42.1.8:600", flushed: true},   // its published port
			{dst: "10.43.0.99:514", reply: "10.42.2.2:514"},                // its backend's address serves another service now: left, as without a restart
			{dst: "10.42.2.2:514", reply: "10.42.2.2:514"},                 // a container's own flow
			{dst: "198.51.100.7:53", reply: "198.51.100.7:53"},             // egress
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			filters, err := conntrackPlan(tc.prev, *tc.next).filters(local)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.flows {
				got := false
				for _, flt := range filters {
					got = got || flt.MatchConntrackFlow(ctFlow(f.dst, f.reply, f.tcp))
				}
				if got != f.flushed {
					t.Errorf("flow to %s answered by %s (tcp %v): flushed %v, want %v", f.dst, f.reply, f.tcp, got, f.flushed)
				}
			}
		})
	}
	// Nothing to flush, nothing to dump.
	p := conntrackPlan(st(svc("a", udp(5514, 514), "10.42.1.2")), *st(svc("a", udp(5514, 514), "10.42.1.2")))
	if len(p.deadBackends) > 0 || !p.stale.empty() {
		t.Errorf("unchanged state: plan %+v", p)
	}
}

// TestConntrackSweepAfterIncompleteCleanup: a conntrack cleanup the kernel
// interrupts (the table changed during the dump, as on any busy host: the
// dump is partial) is run again at once, and one that stays incomplete
// makes the next Set sweep every UDP flow as after a restart. Before, the
// failure was logged and forgotten: the next Set flushed only its own
// difference, so a dead backend's UDP flow the partial dump missed kept a
// client's datagrams going to it for as long as the client sent.
func TestConntrackSweepAfterIncompleteCleanup(t *testing.T) {
	const vip = "10.43.0.11"
	st := func(addrs ...string) State {
		return State{Services: []Service{{Name: "syslog", VIP: net.ParseIP(vip), Backends: backends(addrs...)}}, DNS: net.ParseIP("10.42.1.1")}
	}
	dead := ctFlow(vip+":514", "10.42.2.2:514", false) // to the backend removed
	matches := func(filters []netlink.CustomConntrackFilter, f *netlink.ConntrackFlow) bool {
		for _, flt := range filters {
			if flt.MatchConntrackFlow(f) {
				return true
			}
		}
		return false
	}
	cases := []struct {
		name string
		// errs are the results of the deletes in turn (nil past the end).
		errs []error
		// wantCalls is how many deletes the first sweep makes.
		wantCalls int
		// wantSwept: the second sweep (another change) still deletes the
		// dead backend's flow.
		wantSwept bool
	}{
		{"complete", nil, 1, false},
		{"interrupted once, then complete", []error{netlink.ErrDumpInterrupted}, 2, false},
		{"interrupted every time", []error{netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted, netlink.ErrDumpInterrupted}, ctAttempts, true},
		{"a delete failed", []error{errors.New("failed to delete 1 conntrack flows")}, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var calls [][]netlink.CustomConntrackFilter
			n := 0
			l := &LB{log: slog.New(slog.DiscardHandler)}
			l.ctDelete = func(filters []netlink.CustomConntrackFilter) (uint, error) {
				calls = append(calls, filters)
				n++
				if n <= len(tc.errs) {
					return 0, tc.errs[n-1]
				}
				return 1, nil
			}
			prev := st("10.42.1.2", "10.42.2.2")
			l.sweepConntrack(&prev, st("10.42.1.2"))
			if len(calls) != tc.wantCalls {
				t.Fatalf("first sweep: %d deletes, want %d", len(calls), tc.wantCalls)
			}
			for i, f := range calls {
				if !matches(f, dead) {
					t.Errorf("first sweep, delete %d: the dead backend's flow is not matched", i+1)
				}
			}
			// Another change: a backend added.
			calls = nil
			prev = st("10.42.1.2")
			l.sweepConntrack(&prev, st("10.42.1.2", "10.42.1.3"))
			swept := len(calls) > 0 && matches(calls[0], dead)
			if swept != tc.wantSwept {
				t.Errorf("second sweep deletes the dead backend's flow: %v, want %v", swept, tc.wantSwept)
			}
			if l.ctIncomplete {
				t.Error("the second sweep completed, but the LB still counts its cleanup incomplete")
			}
			// Entries on live backends are never touched.
			if len(calls) > 0 && matches(calls[0], ctFlow(vip+":514", "10.42.1.2:514", false)) {
				t.Error("second sweep deletes a live backend's flow")
			}
		})
	}
}
