package dns

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	miekg "github.com/miekg/dns"
)

// fakeWriter records the reply ServeDNS writes for a query from addr.
type fakeWriter struct {
	miekg.ResponseWriter
	addr net.Addr
	msg  *miekg.Msg
}

func (w *fakeWriter) RemoteAddr() net.Addr        { return w.addr }
func (w *fakeWriter) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv4(10, 42, 1, 1), Port: 53} }
func (w *fakeWriter) WriteMsg(m *miekg.Msg) error { w.msg = m; return nil }

func ask(d *Server, from, name string) (rcode int, answers []string) {
	w := &fakeWriter{addr: &net.UDPAddr{IP: net.ParseIP(from), Port: 5000}}
	q := new(miekg.Msg)
	q.SetQuestion(miekg.Fqdn(name), miekg.TypeA)
	d.ServeDNS(w, q)
	for _, rr := range w.msg.Answer {
		answers = append(answers, rr.(*miekg.A).A.String())
	}
	slices.Sort(answers)
	return w.msg.Rcode, answers
}

func TestDNSViews(t *testing.T) {
	up, queries := fakeUpstream(t)
	d := New(Config{Upstreams: []string{up}})
	amb := d.SetViews(map[string]View{
		"default": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")},
			Records: Records{"web": ips("10.43.0.10"), "tasks.web": ips("10.42.1.2")}},
		"front": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.50.0.0/16")},
			Records: Records{"api": ips("10.50.128.1"), "tasks.api": ips("10.50.0.130")}},
		"back": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.51.0.0/16")},
			Records: Records{"api": ips("10.51.128.1"), "db": ips("10.51.128.2")}},
	}, map[netip.Addr]Source{
		// A container on front and back, asking from its front address.
		netip.MustParseAddr("10.50.0.140"): {Networks: []string{"front", "back"}},
	})
	if len(amb) != 0 {
		t.Fatalf("ambiguous %v", amb)
	}
	cases := []struct {
		name, from, q string
		rcode         int
		want          []string
	}{
		{"own network", "10.42.1.9", "web", miekg.RcodeSuccess, []string{"10.43.0.10"}},
		{"own tasks", "10.50.0.131", "tasks.api", miekg.RcodeSuccess, []string{"10.50.0.130"}},
		{"another network's service", "10.42.1.9", "api", miekg.RcodeNameError, nil},
		{"another network's service from front", "10.50.0.131", "web", miekg.RcodeNameError, nil},
		{"same service, other network's VIP", "10.51.0.131", "api", miekg.RcodeSuccess, []string{"10.51.128.1"}},
		{"two networks: first network first", "10.50.0.140", "api", miekg.RcodeSuccess, []string{"10.50.128.1"}},
		{"two networks: the second one too", "10.50.0.140", "db", miekg.RcodeSuccess, []string{"10.51.128.2"}},
		{"two networks: not a third", "10.50.0.140", "web", miekg.RcodeNameError, nil},
		{"container forwards upstream", "10.42.1.9", "example.org", miekg.RcodeSuccess, []string{"192.0.2.1"}},
		{"stranger refused", "10.213.1.99", "web", miekg.RcodeRefused, nil},
		{"stranger is no open resolver", "10.213.1.99", "example.org", miekg.RcodeRefused, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := queries()
			rcode, got := ask(d, tc.from, tc.q)
			if rcode != tc.rcode || !slices.Equal(got, tc.want) {
				t.Fatalf("rcode %s answers %v, want %s %v", miekg.RcodeToString[rcode], got, miekg.RcodeToString[tc.rcode], tc.want)
			}
			if tc.rcode == miekg.RcodeRefused && queries() != before {
				t.Fatal("a refused query was forwarded upstream")
			}
		})
	}
}

// TestDNSStackScope: a stack's containers reach the stack's services by the
// names the compose file gives them (db for shop_db, tasks.db for
// tasks.shop_db), first on any of their networks, before a service of that
// very name; another stack's containers, or a standalone one, do not.
func TestDNSStackScope(t *testing.T) {
	d := New(Config{})
	d.SetViews(map[string]View{
		"default": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")},
			Records: Records{"shop_db": ips("10.43.0.1"), "tasks.shop_db": ips("10.42.1.1"),
				"blog_db": ips("10.43.0.2"), "api": ips("10.43.0.3")}},
		"back": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.51.0.0/16")},
			Records: Records{"shop_api": ips("10.51.128.9")}},
	}, map[netip.Addr]Source{
		netip.MustParseAddr("10.42.1.5"): {Networks: []string{"default", "back"}, Stack: "shop", Domain: "3", NameDomain: true},
		netip.MustParseAddr("10.42.1.6"): {Networks: []string{"default"}, Stack: "blog"},
		netip.MustParseAddr("10.42.1.7"): {Networks: []string{"default"}},
		netip.MustParseAddr("10.42.1.8"): {Networks: []string{"default"}, Domain: "corp"}, // --hostname app.corp
	})
	cases := []struct {
		name, from, q string
		rcode         int
		want          []string
	}{
		{"stack's own db", "10.42.1.5", "db", miekg.RcodeSuccess, []string{"10.43.0.1"}},
		{"case folded", "10.42.1.5", "DB", miekg.RcodeSuccess, []string{"10.43.0.1"}},
		{"stack's own tasks", "10.42.1.5", "tasks.db", miekg.RcodeSuccess, []string{"10.42.1.1"}},
		{"full name still works", "10.42.1.5", "shop_db", miekg.RcodeSuccess, []string{"10.43.0.1"}},
		{"other stack's db", "10.42.1.6", "db", miekg.RcodeSuccess, []string{"10.43.0.2"}},
		{"stack name wins over a service of that name, on a later network", "10.42.1.5", "api", miekg.RcodeSuccess, []string{"10.51.128.9"}},
		{"no stack: no short names", "10.42.1.7", "db", miekg.RcodeNameError, nil},
		{"no stack: plain names", "10.42.1.7", "api", miekg.RcodeSuccess, []string{"10.43.0.3"}},
		{"dotted names are not scoped", "10.42.1.5", "x.db", miekg.RcodeServerFailure, nil},
		// The asker's hostname (shop_api.3) makes its resolver ask db.3
		// first, and busybox's nslookup nothing else.
		{"under the asker's hostname domain", "10.42.1.5", "db.3", miekg.RcodeSuccess, []string{"10.43.0.1"}},
		{"tasks. under the asker's hostname domain", "10.42.1.5", "tasks.db.3", miekg.RcodeSuccess, []string{"10.42.1.1"}},
		{"another asker's domain is not stripped", "10.42.1.7", "api.3", miekg.RcodeServerFailure, nil},
		// A miss under the task's name domain is ours, as the name
		// without it: no server upstream knows the domain 3.
		{"a miss under the asker's name domain", "10.42.1.5", "nosuch.3", miekg.RcodeNameError, nil},
		{"a tasks. miss under the asker's name domain", "10.42.1.5", "tasks.nosuch.3", miekg.RcodeNameError, nil},
		{"a name under another domain goes upstream", "10.42.1.5", "blog_db.9", miekg.RcodeServerFailure, nil},
		{"a deeper name under the asker's name domain goes upstream", "10.42.1.5", "x.y.3", miekg.RcodeServerFailure, nil},
		{"a hostname's own domain: found without it", "10.42.1.8", "api.corp", miekg.RcodeSuccess, []string{"10.43.0.3"}},
		{"a hostname's own domain: a miss goes upstream", "10.42.1.8", "nosuch.corp", miekg.RcodeServerFailure, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rcode, got := ask(d, tc.from, tc.q)
			if rcode != tc.rcode || !slices.Equal(got, tc.want) {
				t.Fatalf("rcode %s answers %v, want %s %v", miekg.RcodeToString[rcode], got, miekg.RcodeToString[tc.rcode], tc.want)
			}
		})
	}
}

// TestDNSViewsAliasesAndDNSRR: the records node/netplan hands over for a
// dnsrr service (its name is its tasks' addresses) and for network
// aliases (on their network's view only) answer only the askers of that
// network, and a stack's short names still come first for its tasks.
func TestDNSViewsAliasesAndDNSRR(t *testing.T) {
	d := New(Config{})
	d.SetViews(map[string]View{
		"default": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")},
			Records: Records{"rr": ips("10.42.1.2", "10.42.2.2"), "tasks.rr": ips("10.42.1.2", "10.42.2.2"),
				"web": ips("10.43.0.10"), "tasks.web": ips("10.42.1.3")}},
		"back": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.51.0.0/16")},
			Records: Records{"web": ips("10.51.128.1"), "tasks.web": ips("10.51.0.3"), "www": ips("10.51.128.1"),
				"tasks.www": ips("10.51.0.3"), "db": ips("10.51.128.1"), "shop_db": ips("10.51.128.9")}},
	}, map[netip.Addr]Source{
		netip.MustParseAddr("10.51.0.5"): {Networks: []string{"back"}, Stack: "shop"},
	})
	for _, c := range []struct {
		name, from, q string
		rcode         int
		want          []string
	}{
		{"dnsrr name: every task, no VIP", "10.42.1.9", "rr", miekg.RcodeSuccess, []string{"10.42.1.2", "10.42.2.2"}},
		{"alias on its network", "10.51.0.7", "www", miekg.RcodeSuccess, []string{"10.51.128.1"}},
		{"alias in another case", "10.51.0.7", "WWW", miekg.RcodeSuccess, []string{"10.51.128.1"}},
		{"alias from another network", "10.42.1.9", "www", miekg.RcodeNameError, nil},
		{"tasks.ALIAS on its network (as Docker)", "10.51.0.7", "tasks.www", miekg.RcodeSuccess, []string{"10.51.0.3"}},
		{"tasks.ALIAS from another network", "10.42.1.9", "tasks.www", miekg.RcodeNameError, nil},
		{"the service's own name beside", "10.42.1.9", "web", miekg.RcodeSuccess, []string{"10.43.0.10"}},
		{"an alias for a task of no stack", "10.51.0.7", "db", miekg.RcodeSuccess, []string{"10.51.128.1"}},
		{"a stack's short name beats an alias", "10.51.0.5", "db", miekg.RcodeSuccess, []string{"10.51.128.9"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rcode, got := ask(d, c.from, c.q)
			if rcode != c.rcode || !slices.Equal(got, c.want) {
				t.Fatalf("%s from %s: rcode %d %v, want %d %v", c.q, c.from, rcode, got, c.rcode, c.want)
			}
		})
	}
}

// TestDNSInternalNetworkNotForwarded: a container only on --internal
// networks gets no answer from upstream (REFUSED, nothing sent there): the
// embedded server was its way out of the network, names carrying data out
// and answers carrying it back (Docker's CVE-2024-29018). The cluster's
// own names still resolve, and a container also on a network that reaches
// outside still asks upstream.
func TestDNSInternalNetworkNotForwarded(t *testing.T) {
	up, queries := fakeUpstream(t)
	d := New(Config{Upstreams: []string{up}})
	d.SetViews(map[string]View{
		"default": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")},
			Records: Records{"web": ips("10.43.0.10")}},
		"vault": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.60.0.0/16")}, Internal: true,
			Records: Records{"db": ips("10.60.128.1"), "tasks.db": ips("10.60.0.2")}},
		"vault2": {Subnets: []netip.Prefix{netip.MustParsePrefix("10.61.0.0/16")}, Internal: true,
			Records: Records{"cache": ips("10.61.128.1")}},
	}, map[netip.Addr]Source{
		netip.MustParseAddr("10.60.0.9"):  {Networks: []string{"vault", "vault2"}},
		netip.MustParseAddr("10.60.0.10"): {Networks: []string{"vault", "default"}},
	})
	cases := []struct {
		name, from, q string
		rcode         int
		want          []string
		forwarded     bool
	}{
		{"internal: own service", "10.60.0.3", "db", miekg.RcodeSuccess, []string{"10.60.128.1"}, false},
		{"internal: own tasks", "10.60.0.3", "tasks.db", miekg.RcodeSuccess, []string{"10.60.0.2"}, false},
		{"internal: own namespace miss", "10.60.0.3", "nosuch", miekg.RcodeNameError, nil, false},
		{"internal: outside name not forwarded", "10.60.0.3", "secret-data.example.org", miekg.RcodeRefused, nil, false},
		{"two internal networks: not forwarded", "10.60.0.9", "example.org", miekg.RcodeRefused, nil, false},
		{"two internal networks: both views", "10.60.0.9", "cache", miekg.RcodeSuccess, []string{"10.61.128.1"}, false},
		{"internal and default: forwarded", "10.60.0.10", "example.org", miekg.RcodeSuccess, []string{"192.0.2.1"}, true},
		{"default: forwarded", "10.42.1.9", "example.org", miekg.RcodeSuccess, []string{"192.0.2.1"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := queries()
			rcode, got := ask(d, tc.from, tc.q)
			if rcode != tc.rcode || !slices.Equal(got, tc.want) {
				t.Fatalf("rcode %s answers %v, want %s %v", miekg.RcodeToString[rcode], got, miekg.RcodeToString[tc.rcode], tc.want)
			}
			if forwarded := queries() != before; forwarded != tc.forwarded {
				t.Fatalf("forwarded upstream: %v, want %v", forwarded, tc.forwarded)
			}
		})
	}
}
