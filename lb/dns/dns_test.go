package dns

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	miekg "github.com/miekg/dns"
)

// fakeUpstream answers every A question with 192.0.2.1 and counts queries.
func fakeUpstream(t *testing.T) (addr string, queries func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	h := miekg.HandlerFunc(func(w miekg.ResponseWriter, r *miekg.Msg) {
		mu.Lock()
		n++
		mu.Unlock()
		m := new(miekg.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "missing.example.org." {
			m.Rcode = miekg.RcodeNameError
		} else {
			m.Answer = append(m.Answer, &miekg.A{
				Hdr: miekg.RR_Header{Name: r.Question[0].Name, Rrtype: miekg.TypeA, Class: miekg.ClassINET, Ttl: 60},
				A:   net.IPv4(192, 0, 2, 1),
			})
		}
		_ = w.WriteMsg(m)
	})
	pc, ln, err := listenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*miekg.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return pc.LocalAddr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// startDNS runs a Server on loopback for the test's lifetime.
func startDNS(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	d := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
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
	return d
}

func query(t *testing.T, netw, addr, name string, qtype uint16) *miekg.Msg {
	t.Helper()
	c := &miekg.Client{Net: netw, Timeout: 3 * time.Second}
	m := new(miekg.Msg)
	m.SetQuestion(name, qtype)
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", netw, name, err)
	}
	return resp
}

func answerIPs(m *miekg.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*miekg.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

func ips(s ...string) []net.IP {
	out := make([]net.IP, len(s))
	for i, a := range s {
		out[i] = net.ParseIP(a)
	}
	return out
}

func TestDNSAnswers(t *testing.T) {
	up, upQueries := fakeUpstream(t)
	d := startDNS(t, Config{Upstreams: []string{up}, Search: []string{"corp.example."}})
	d.Set(Records{
		"web":       {net.ParseIP("10.43.0.10")},
		"tasks.web": {net.ParseIP("10.42.1.2"), net.ParseIP("10.42.1.3"), net.ParseIP("10.42.2.2")},
		"Big.":      {net.ParseIP("10.43.0.11")},
	})
	tasks := []string{"10.42.1.2", "10.42.1.3", "10.42.2.2"}
	cases := []struct {
		name     string
		qtype    uint16
		rcode    int
		want     []string
		upstream bool
	}{
		{"web.", miekg.TypeA, miekg.RcodeSuccess, []string{"10.43.0.10"}, false},
		{"WEB.", miekg.TypeA, miekg.RcodeSuccess, []string{"10.43.0.10"}, false},
		{"big.", miekg.TypeA, miekg.RcodeSuccess, []string{"10.43.0.11"}, false},
		{"web.corp.example.", miekg.TypeA, miekg.RcodeSuccess, []string{"10.43.0.10"}, false},
		{"tasks.web.", miekg.TypeA, miekg.RcodeSuccess, tasks, false},
		{"tasks.web.corp.example.", miekg.TypeA, miekg.RcodeSuccess, tasks, false},
		{"web.", miekg.TypeAAAA, miekg.RcodeSuccess, nil, false},
		{"nope.", miekg.TypeA, miekg.RcodeNameError, nil, false},
		{"tasks.nope.", miekg.TypeA, miekg.RcodeNameError, nil, false},
		{"www.example.org.", miekg.TypeA, miekg.RcodeSuccess, []string{"192.0.2.1"}, true},
		{"nope.corp.example.", miekg.TypeA, miekg.RcodeSuccess, []string{"192.0.2.1"}, true},
		{"missing.example.org.", miekg.TypeA, miekg.RcodeNameError, nil, true},
	}
	for _, netw := range []string{"udp", "tcp"} {
		for _, tc := range cases {
			t.Run(netw+"/"+tc.name+"/"+miekg.TypeToString[tc.qtype], func(t *testing.T) {
				before := upQueries()
				resp := query(t, netw, d.Addr(), tc.name, tc.qtype)
				if resp.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", miekg.RcodeToString[resp.Rcode], miekg.RcodeToString[tc.rcode])
				}
				if got := answerIPs(resp); !slices.Equal(got, tc.want) {
					t.Fatalf("answer %v, want %v", got, tc.want)
				}
				if asked := upQueries() > before; asked != tc.upstream {
					t.Fatalf("upstream asked = %v, want %v", asked, tc.upstream)
				}
			})
		}
	}

	// The record set swaps atomically under concurrent queries.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			d.Set(Records{"web": {net.IPv4(10, 43, 0, byte(i%200+1))}})
		}
	}()
	for i := 0; i < 50; i++ {
		if got := answerIPs(query(t, "udp", d.Addr(), "web.", miekg.TypeA)); len(got) != 1 {
			t.Errorf("during swaps: %v", got)
		}
	}
	close(stop)
	wg.Wait()
	d.Set(nil)
	if resp := query(t, "udp", d.Addr(), "web.", miekg.TypeA); resp.Rcode != miekg.RcodeNameError {
		t.Fatalf("after Set(nil): %s", miekg.RcodeToString[resp.Rcode])
	}
}

// TestDNSNamesDifferingInCase is issue 15's leak: with services web and
// WEB, `web` answered both VIPs and tasks.web both services' tasks. Each
// spelling now answers for itself only; a third spelling matches neither.
func TestDNSNamesDifferingInCase(t *testing.T) {
	up, upQueries := fakeUpstream(t)
	d := startDNS(t, Config{Upstreams: []string{up}, Search: []string{"corp.example."}})
	ambiguous := d.Set(Records{
		"web":       {net.ParseIP("10.43.0.10")},
		"tasks.web": {net.ParseIP("10.42.1.2")},
		"WEB":       {net.ParseIP("10.43.0.20")},
		"tasks.WEB": {net.ParseIP("10.42.2.2")},
		"db":        {net.ParseIP("10.43.0.30")},
	})
	if want := []string{"WEB", "tasks.WEB", "tasks.web", "web"}; !slices.Equal(ambiguous, want) {
		t.Fatalf("ambiguous = %v, want %v", ambiguous, want)
	}
	cases := []struct {
		name  string
		rcode int
		want  []string
	}{
		{"web.", miekg.RcodeSuccess, []string{"10.43.0.10"}},
		{"WEB.", miekg.RcodeSuccess, []string{"10.43.0.20"}},
		{"tasks.web.", miekg.RcodeSuccess, []string{"10.42.1.2"}},
		{"tasks.WEB.", miekg.RcodeSuccess, []string{"10.42.2.2"}},
		{"web.corp.example.", miekg.RcodeSuccess, []string{"10.43.0.10"}},
		{"WEB.CORP.example.", miekg.RcodeSuccess, []string{"10.43.0.20"}},
		{"Web.", miekg.RcodeNameError, nil},
		{"TASKS.Web.", miekg.RcodeNameError, nil},
		{"DB.", miekg.RcodeSuccess, []string{"10.43.0.30"}},
		{"Tasks.db.", miekg.RcodeNameError, nil},
	}
	for _, tc := range cases {
		before := upQueries()
		resp := query(t, "udp", d.Addr(), tc.name, miekg.TypeA)
		if resp.Rcode != tc.rcode {
			t.Errorf("%s: rcode %s, want %s", tc.name, miekg.RcodeToString[resp.Rcode], miekg.RcodeToString[tc.rcode])
		}
		if got := answerIPs(resp); !slices.Equal(got, tc.want) {
			t.Errorf("%s: answer %v, want %v", tc.name, got, tc.want)
		}
		if upQueries() != before {
			t.Errorf("%s: asked upstream", tc.name)
		}
	}
}

func TestDNSUpstreamDown(t *testing.T) {
	// A UDP socket that never answers: the forward times out → SERVFAIL.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	d := startDNS(t, Config{Upstreams: []string{pc.LocalAddr().String()}, Timeout: 200 * time.Millisecond})
	start := time.Now()
	resp := query(t, "udp", d.Addr(), "www.example.org.", miekg.TypeA)
	if resp.Rcode != miekg.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", miekg.RcodeToString[resp.Rcode])
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("forward not bounded by timeout: %v", time.Since(start))
	}
}

func TestDNSTruncatesLargeUDPAnswers(t *testing.T) {
	d := startDNS(t, Config{})
	var ips []net.IP
	for i := 0; i < 100; i++ {
		ips = append(ips, net.IPv4(10, 42, 1, byte(i+2)))
	}
	d.Set(Records{"tasks.big": ips})
	if resp := query(t, "udp", d.Addr(), "tasks.big.", miekg.TypeA); !resp.Truncated {
		t.Fatalf("100 A records over plain UDP not truncated (%d answers)", len(resp.Answer))
	}
	if got := answerIPs(query(t, "tcp", d.Addr(), "tasks.big.", miekg.TypeA)); len(got) != 100 {
		t.Fatalf("tcp answers %d, want 100", len(got))
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	body := "nameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\nsearch corp.example lab.example\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ups, search, err := UpstreamsFromResolvConf(p)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ups, []string{"192.0.2.53:53"}) {
		t.Fatalf("upstreams %v", ups)
	}
	if !slices.Equal(search, []string{"corp.example", "lab.example"}) {
		t.Fatalf("search %v", search)
	}
}

// TestListenPairFixedPortTaken: a fixed port whose TCP side is taken is an
// error naming TCP (one try), and port 0 still gets a pair that shares its
// port.
func TestListenPairFixedPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if pc, ln, err := listenPair(taken.Addr().String()); err == nil {
		pc.Close()
		ln.Close()
		t.Fatalf("listenPair(%s) with its TCP side taken succeeded", taken.Addr())
	} else if !strings.Contains(err.Error(), "listen tcp") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("listenPair(%s): %v, want a TCP EADDRINUSE", taken.Addr(), err)
	}
	pc, ln, err := listenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	defer ln.Close()
	if pc.LocalAddr().String() != ln.Addr().String() {
		t.Fatalf("UDP %s and TCP %s differ", pc.LocalAddr(), ln.Addr())
	}
}
