// Package dns is a node's embedded DNS server. Containers get the bridge
// address (.1) as their only nameserver; it answers service names from the
// record set the agent hands over with Set (or SetViews) and forwards
// everything else to the node's own upstream servers, as Docker's embedded
// DNS does.
//
// It is apart from lb, the load balancer, because the two share only an
// address: lb programs nftables and keeps a published port 53 off this
// server's address (lb.State.DNS), while this server answers sockets and
// never touches a rule. Neither imports the other; the agent runs both.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	miekg "github.com/miekg/dns"
)

// Config configures a DNS server. It is read by New and must not be
// changed afterwards.
type Config struct {
	// Addr is the listen address for both UDP and TCP, normally the
	// bridge's .1 and port 53. Port 0 picks a free port (tests; see Addr).
	Addr string
	// Upstreams are "ip" or "ip:port" servers tried in order for names that
	// are not ours (see UpstreamsFromResolvConf).
	Upstreams []string
	// Search domains: "web.example.org" is looked up as "web" too when
	// "example.org" is one of them.
	Search []string
	// Timeout bounds one forwarded exchange with one upstream; 0 means 2s.
	Timeout time.Duration
	// TTL of our A records; 0 (the default) keeps clients from caching an
	// address of a task that may move at any time.
	TTL uint32
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Records maps a service name to its VIP and "tasks.NAME" to the task
// addresses. Names may carry a trailing dot. A query matches a name exactly,
// or else case-insensitively when exactly one name matches that way: DNS
// names are case-insensitive, and two names differing only in case (which
// the cluster refuses, but an older state may hold) each answer only for
// their own spelling — never one for the other, never both merged.
type Records map[string][]net.IP

// recordSet is a Records as the server looks it up.
type recordSet struct {
	exact  map[string][]net.IP // name as given, trailing dot removed
	folded map[string][]net.IP // lower-cased name, only when one name folds to it
	// internal is View.Internal of the network the set is the view of.
	internal bool
}

// Server is the embedded DNS server. Set and SetViews may be called at any
// time, from any goroutine, before or during Run.
type Server struct {
	cfg     Config
	log     *slog.Logger
	records atomic.Pointer[recordSet]
	// views, once SetViews was called, replaces records: answers depend on
	// the asker's networks, and strangers are refused.
	views atomic.Pointer[viewSet]

	// tcpConns bounds the open TCP connections, per source and in total.
	tcpConns *sourceLimiter
	// forwards bounds the queries being forwarded upstream.
	forwards *sourceLimiter

	ready    chan struct{}
	addrOnce sync.Once
	addr     atomic.Value // string, the bound address
}

// New returns a server with an empty record set; Run starts it.
func New(cfg Config) *Server {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	ups := make([]string, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(u, "53")
		}
		ups = append(ups, u)
	}
	cfg.Upstreams = ups
	search := make([]string, 0, len(cfg.Search))
	for _, s := range cfg.Search {
		if s = normalize(s); s != "" {
			search = append(search, s)
		}
	}
	cfg.Search = search
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	d := &Server{cfg: cfg, log: logger.With("component", "dns"), ready: make(chan struct{}),
		tcpConns: newSourceLimiter(maxTCPConns, maxTCPConnsPerSource),
		forwards: newSourceLimiter(maxForwards, maxForwardsPerSource)}
	d.records.Store(&recordSet{})
	return d
}

// Set replaces the whole record set atomically. The map is copied; the
// caller keeps ownership of r. It returns the names that differ from
// another only in case (sorted): they answer for their exact spelling only,
// which the caller may want to report.
func (d *Server) Set(r Records) (ambiguous []string) {
	rs, ambiguous := newRecordSet(r)
	d.records.Store(rs)
	return ambiguous
}

// View is what the containers of one network may resolve.
type View struct {
	// Subnets hold the network's container addresses.
	Subnets []netip.Prefix
	// Records are the network's service names (each with its VIP on this
	// network) and tasks.NAME (its tasks' addresses on this network).
	Records Records
	// Internal is an --internal network's: its containers reach nothing
	// outside the cluster, so the server forwards no question of theirs
	// upstream either (it answers REFUSED). Forwarding was a way out of
	// the network: a container there could carry data in the names it
	// asks and read answers back (Docker's CVE-2024-29018). A container
	// on an internal and another network asks upstream as before, as it
	// could reach it through the other network anyway.
	Internal bool
}

// Source is what the server knows of one container address: the
// networks it is on, in order, and the stack its service belongs to.
type Source struct {
	Networks []string
	// Stack, when set, scopes short names the way `docker stack` does
	// with an alias per service: in stack "shop", "db" and "tasks.db"
	// are first looked up as "shop_db" and "tasks.shop_db" (stack
	// services are named STACK_KEY), so a compose file's services reach
	// each other by the names the file gives them. Scoping by the asker
	// instead of adding "db" to the network keeps two stacks that both
	// have a "db" apart on a network they share (the default one).
	Stack string
	// Domain is the domain the asker's resolver takes from its own
	// hostname when resolv.conf names none (glibc, busybox: the part after
	// the first dot). A task's hostname is its name, web.3, so "db" is
	// first asked as "db.3": that name is looked up as "db", as under a
	// search domain, instead of going upstream (busybox's nslookup asks
	// for nothing else, so it found no service at all).
	Domain string
	// NameDomain says Domain comes from the task's own name (3 of web.3,
	// the node ID of a global task's web.NODEID), not from a hostname the
	// user chose: no DNS server above this one serves it, so a name of the
	// service namespace under it (db.3, tasks.db.3) that misses is
	// answered NXDOMAIN here like db itself, not forwarded upstream, where
	// it leaked the cluster's names and, with no upstream answering, cost
	// the asker its resolver's whole timeout (busybox nslookup: 5 s).
	NameDomain bool
}

// viewSet is the per-network form of the records.
type viewSet struct {
	byNet   map[string]*recordSet
	subnets []netSubnet           // sorted by network name
	sources map[netip.Addr]Source // container address → its networks and stack
}

type netSubnet struct {
	prefix  netip.Prefix
	network string
}

// SetViews switches the server to per-network answers and replaces them
// atomically: a query is answered from the views of the networks its
// source is on — sources[addr].Networks when the address is known (a
// container on several networks sees all of them, its first network
// first; its Stack scopes short names), else the
// network whose subnet holds it. A source on no network is refused
// (REFUSED, nothing forwarded): the server is no open resolver. The maps
// are copied. It returns the names that differ from another of the same
// view only in case (sorted, deduplicated).
func (d *Server) SetViews(views map[string]View, sources map[netip.Addr]Source) (ambiguous []string) {
	vs := &viewSet{byNet: make(map[string]*recordSet, len(views)), sources: make(map[netip.Addr]Source, len(sources))}
	seen := map[string]bool{}
	for name, v := range views {
		rs, amb := newRecordSet(v.Records)
		rs.internal = v.Internal
		vs.byNet[name] = rs
		for _, a := range amb {
			if !seen[a] {
				seen[a] = true
				ambiguous = append(ambiguous, a)
			}
		}
		for _, p := range v.Subnets {
			vs.subnets = append(vs.subnets, netSubnet{prefix: p.Masked(), network: name})
		}
	}
	sort.Slice(vs.subnets, func(i, j int) bool {
		if vs.subnets[i].network != vs.subnets[j].network {
			return vs.subnets[i].network < vs.subnets[j].network
		}
		return vs.subnets[i].prefix.String() < vs.subnets[j].prefix.String()
	})
	for a, src := range sources {
		vs.sources[a.Unmap()] = Source{Networks: slices.Clone(src.Networks), Stack: src.Stack, Domain: normalize(src.Domain),
			NameDomain: src.NameDomain}
	}
	sort.Strings(ambiguous)
	d.views.Store(vs)
	return ambiguous
}

// networksOf returns the record sets a source may see, in order.
func (vs *viewSet) networksOf(src netip.Addr) []*recordSet {
	var out []*recordSet
	if source, ok := vs.sources[src]; ok {
		for _, n := range source.Networks {
			if rs := vs.byNet[n]; rs != nil {
				out = append(out, rs)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	for _, s := range vs.subnets {
		if s.prefix.Contains(src) {
			if rs := vs.byNet[s.network]; rs != nil {
				out = append(out, rs)
			}
		}
	}
	return out
}

func newRecordSet(r Records) (*recordSet, []string) {
	var ambiguous []string
	rs := &recordSet{exact: make(map[string][]net.IP, len(r)), folded: make(map[string][]net.IP, len(r))}
	spellings := map[string][]string{}
	for name, ips := range r {
		var v4 []net.IP
		for _, ip := range ips {
			if ip4 := ip.To4(); ip4 != nil {
				v4 = append(v4, append(net.IP(nil), ip4...))
			}
		}
		n := trimName(name)
		if _, seen := rs.exact[n]; !seen {
			f := strings.ToLower(n)
			spellings[f] = append(spellings[f], n)
		}
		rs.exact[n] = append(rs.exact[n], v4...)
	}
	for f, names := range spellings {
		if len(names) == 1 {
			rs.folded[f] = rs.exact[names[0]]
		} else {
			ambiguous = append(ambiguous, names...)
		}
	}
	sort.Strings(ambiguous)
	return rs, ambiguous
}

// Ready is closed once Run has bound its sockets.
func (d *Server) Ready() <-chan struct{} { return d.ready }

// Addr is the bound address (UDP and TCP share it), "" before Ready.
func (d *Server) Addr() string {
	s, _ := d.addr.Load().(string)
	return s
}

// Run serves UDP and TCP until ctx ends, then shuts both servers down and
// returns nil. It returns an error if it cannot bind or a server fails.
func (d *Server) Run(ctx context.Context) error {
	pc, ln, err := listenPair(d.cfg.Addr)
	if err != nil {
		return err
	}
	bound := pc.LocalAddr().String()
	// The UDP server's read timeout only paces its read loop (a shutdown
	// closes the socket): the default 2 s woke every idle node twice a
	// second for nothing (issue 10).
	udp := &miekg.Server{PacketConn: pc, Handler: d, ReadTimeout: time.Hour}
	tcp := &miekg.Server{Listener: d.tcpListener(ln), Handler: d}
	d.addrOnce.Do(func() {
		d.addr.Store(bound)
		close(d.ready)
	})
	d.log.Info("dns serving", "addr", bound, "upstreams", d.cfg.Upstreams)

	errCh := make(chan error, 2)
	var wg sync.WaitGroup
	for _, s := range []*miekg.Server{udp, tcp} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errCh <- s.ActivateAndServe()
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errCh:
		runErr = fmt.Errorf("dns server on %s: %w", bound, runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = udp.ShutdownContext(sctx)
	_ = tcp.ShutdownContext(sctx)
	pc.Close()
	ln.Close()
	wg.Wait()
	return runErr
}

// tcpListener is the listener the TCP server accepts from. miekg/dns sets
// no deadline on TCP writes (its WriteTimeout is unused), takes every
// connection and retries a failed Accept at once: limitListener gives each
// write tcpWriteTimeout and caps the connections, backoffListener waits
// before retrying when the agent is out of descriptors (see there).
func (d *Server) tcpListener(ln net.Listener) net.Listener {
	return &limitListener{Listener: newBackoffListener(ln), lim: d.tcpConns}
}

// tcpWriteTimeout bounds one write of an answer on a TCP connection. A
// client that stops reading (a zero window) otherwise blocked the write for
// good, and with it the connection's goroutine and Run's shutdown, which
// waits for every connection.
const tcpWriteTimeout = 5 * time.Second

// The caps of open TCP connections. Each one holds a goroutine and a file
// of the agent for up to 128 queries 8 s apart; without a cap a container
// could open connections until the agent ran out of files.
const (
	maxTCPConns          = 256
	maxTCPConnsPerSource = 16
)

// limitListener admits a TCP connection only within lim (others are
// closed at once) and gives every write of an admitted one a deadline.
type limitListener struct {
	net.Listener
	lim *sourceLimiter
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := addrOf(c.RemoteAddr())
		if !l.lim.acquire(src) {
			_ = c.Close()
			continue
		}
		return &limitConn{Conn: c, release: func() { l.lim.release(src) }}, nil
	}
}

// limitConn gives every write tcpWriteTimeout and gives its slot back on
// the first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	return c.Conn.Write(p)
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// sourceLimiter counts what sources hold, refusing more than perSource to
// one source and more than total to all. Safe for concurrent use.
type sourceLimiter struct {
	total, perSource int

	mu       sync.Mutex
	n        int
	bySource map[netip.Addr]int
}

func newSourceLimiter(total, perSource int) *sourceLimiter {
	return &sourceLimiter{total: total, perSource: perSource, bySource: map[netip.Addr]int{}}
}

// acquire takes a slot for src; false when a cap is reached.
func (l *sourceLimiter) acquire(src netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= l.total || l.bySource[src] >= l.perSource {
		return false
	}
	l.n++
	l.bySource[src]++
	return true
}

// release gives back a slot acquire took for src.
func (l *sourceLimiter) release(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
}

// pairTries bounds listenPair's attempts for port 0.
const pairTries = 16

// listenPair binds UDP and TCP on one port of addr. For port 0 the kernel
// picks the UDP port, and the same port's TCP side may be in use already
// (another socket's ephemeral port: TCP and UDP draw from one range), so a
// TCP bind refused with EADDRINUSE is retried on another UDP port, up to
// pairTries times. A fixed port gets one try.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	tries := 1
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		tries = pairTries
	}
	var err error
	for range tries {
		pc, perr := net.ListenPacket("udp", addr)
		if perr != nil {
			return nil, nil, fmt.Errorf("dns listen udp %s: %w", addr, perr)
		}
		bound := pc.LocalAddr().String()
		ln, lerr := net.Listen("tcp", bound)
		if lerr == nil {
			return pc, ln, nil
		}
		pc.Close()
		err = fmt.Errorf("dns listen tcp %s: %w", bound, lerr)
		if !errors.Is(lerr, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, err
}

// ServeDNS answers one query. It implements miekg.Handler.
func (d *Server) ServeDNS(w miekg.ResponseWriter, r *miekg.Msg) {
	if len(r.Question) != 1 || r.Opcode != miekg.OpcodeQuery {
		m := new(miekg.Msg)
		m.SetRcode(r, miekg.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	sets := []*recordSet{d.records.Load()}
	prefixes := []string{""}
	search := d.cfg.Search
	nameDomain := "" // the asker's Domain when its task's name gave it
	if vs := d.views.Load(); vs != nil {
		src := remoteAddr(w)
		source := vs.sources[src]
		if source.Stack != "" {
			prefixes = []string{source.Stack + "_", ""}
		}
		if source.Domain != "" {
			search = append(slices.Clip(search), source.Domain)
			if source.NameDomain {
				nameDomain = source.Domain
			}
		}
		if sets = vs.networksOf(src); len(sets) == 0 {
			d.log.Debug("dns: query from outside the container networks refused", "source", src.String(), "name", q.Name)
			m := new(miekg.Msg)
			m.SetRcode(r, miekg.RcodeRefused)
			_ = w.WriteMsg(m)
			return
		}
	}
	var ips []net.IP
	var found, ours bool
	// The stack's own name for a short name first, on every network the
	// asker is on, then the name as asked.
lookup:
	for _, prefix := range prefixes {
		for _, rs := range sets {
			if ips, found, ours = d.lookup(rs, q.Name, prefix, search); found {
				break lookup
			}
		}
	}
	if !found && !ours && nameDomain != "" {
		if lower := strings.ToLower(trimName(q.Name)); strings.HasSuffix(lower, "."+nameDomain) {
			ours = serviceNamespace(lower[:len(lower)-len(nameDomain)-1])
		}
	}
	if !found && !ours {
		if !slices.ContainsFunc(sets, func(rs *recordSet) bool { return !rs.internal }) {
			// Only on internal networks: nothing goes upstream (View.Internal).
			d.log.Debug("dns: query from an internal network not forwarded", "source", remoteAddr(w).String(), "name", q.Name)
			m := new(miekg.Msg)
			m.SetRcode(r, miekg.RcodeRefused)
			_ = w.WriteMsg(m)
			return
		}
		d.forward(w, r)
		return
	}
	m := new(miekg.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = true
	if !found {
		m.Rcode = miekg.RcodeNameError
	} else if q.Qclass == miekg.ClassINET && (q.Qtype == miekg.TypeA || q.Qtype == miekg.TypeANY) {
		// Shuffle so naive clients that take the first address spread.
		for _, i := range rand.Perm(len(ips)) {
			m.Answer = append(m.Answer, &miekg.A{
				Hdr: miekg.RR_Header{Name: q.Name, Rrtype: miekg.TypeA, Class: miekg.ClassINET, Ttl: d.cfg.TTL},
				A:   ips[i],
			})
		}
	} // other types of a known name: NOERROR, no data
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		size := miekg.MinMsgSize
		if opt := r.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = min(int(opt.UDPSize()), maxUDPAnswer)
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		d.log.Debug("dns reply failed", "name", q.Name, "err", err)
	}
}

// lookup finds name as asked and with one of the search domains removed. ours says
// the name is in the service namespace (one label, or tasks.LABEL), where a
// miss is an authoritative NXDOMAIN instead of a question for upstream.
// With a prefix (a stack's "STACK_"), it finds only the prefixed form of a
// name in the service namespace: LABEL as PREFIXLABEL, tasks.LABEL as
// tasks.PREFIXLABEL.
func (d *Server) lookup(rs *recordSet, qname, prefix string, search []string) (ips []net.IP, found, ours bool) {
	name := trimName(qname)
	lower := strings.ToLower(name)
	ours = serviceNamespace(lower)
	find := func(n string) ([]net.IP, bool) {
		if prefix != "" {
			if strings.Contains(n, ".") {
				const tasks = "tasks."
				if len(n) <= len(tasks) || !strings.EqualFold(n[:len(tasks)], tasks) || strings.Contains(n[len(tasks):], ".") {
					return nil, false
				}
				n = n[:len(tasks)] + prefix + n[len(tasks):]
			} else {
				n = prefix + n
			}
		}
		if v, ok := rs.exact[n]; ok {
			return v, true
		}
		v, ok := rs.folded[strings.ToLower(n)]
		return v, ok
	}
	if v, ok := find(name); ok {
		return v, true, ours
	}
	for _, s := range search {
		if strings.HasSuffix(lower, "."+s) {
			short := lower[:len(lower)-len(s)-1]
			if len(name) == len(lower) { // ASCII: keep the asked spelling
				short = name[:len(short)]
			}
			if v, ok := find(short); ok {
				return v, true, ours
			}
		}
	}
	return nil, false, ours
}

// serviceNamespace reports whether name (trimmed, lower case) is in the
// service namespace: one label, or tasks.LABEL.
func serviceNamespace(name string) bool {
	labels := strings.Count(name, ".") + 1
	return name != "" && (labels == 1 || (labels == 2 && strings.HasPrefix(name, "tasks.")))
}

// remoteAddr is the asker's address (invalid when unknown).
func remoteAddr(w miekg.ResponseWriter) netip.Addr { return addrOf(w.RemoteAddr()) }

// addrOf is the IP address of a UDP or TCP address (invalid otherwise).
func addrOf(na net.Addr) netip.Addr {
	var ip net.IP
	switch a := na.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// The caps of queries being forwarded at once. Each holds a goroutine and
// a socket (a file of the agent) for up to Timeout per upstream; without a
// cap a container sending a flood of names that upstream answers slowly
// (its own domain's server can take its time) made the agent hold them by
// the hundred thousand.
const (
	maxForwards          = 512
	maxForwardsPerSource = 64
)

// maxUDPAnswer bounds an answer over UDP whatever size the asker offers
// (EDNS0 allows 65535): a container may send queries with another
// container's address (it has CAP_NET_RAW), and a 50-byte query for
// tasks.NAME of a big service or a fat upstream record would otherwise be
// answered with up to 64 KiB at the victim. A bigger answer is truncated
// and the client asks again over TCP, which cannot be spoofed.
const maxUDPAnswer = miekg.DefaultMsgSize

// forward relays r to the upstreams in order over the client's transport
// and relays the first answer; SERVFAIL when none answers in time, or at
// once when the asker already has maxForwardsPerSource queries in flight
// (maxForwards for all askers).
func (d *Server) forward(w miekg.ResponseWriter, r *miekg.Msg) {
	src := remoteAddr(w)
	if !d.forwards.acquire(src) {
		d.log.Debug("dns: too many forwarded queries in flight", "source", src.String(), "name", r.Question[0].Name)
		m := new(miekg.Msg)
		m.SetRcode(r, miekg.RcodeServerFailure)
		m.RecursionAvailable = true
		_ = w.WriteMsg(m)
		return
	}
	defer d.forwards.release(src)
	netw := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		netw = "tcp"
	} else if opt := r.IsEdns0(); opt != nil && opt.UDPSize() > maxUDPAnswer {
		opt.SetUDPSize(maxUDPAnswer) // upstream answers within it (maxUDPAnswer)
	}
	var errs error
	for _, up := range d.cfg.Upstreams {
		c := &miekg.Client{Net: netw, Timeout: d.cfg.Timeout}
		resp, _, err := c.Exchange(r, up)
		if err != nil {
			errs = errors.Join(errs, fmt.Errorf("upstream %s: %w", up, err))
			continue
		}
		resp.Id = r.Id
		if err := w.WriteMsg(resp); err != nil {
			d.log.Debug("dns reply failed", "name", r.Question[0].Name, "err", err)
		}
		return
	}
	if errs != nil {
		d.log.Debug("dns forward failed", "name", r.Question[0].Name, "err", errs)
	}
	m := new(miekg.Msg)
	m.SetRcode(r, miekg.RcodeServerFailure)
	m.RecursionAvailable = true
	_ = w.WriteMsg(m)
}

// UpstreamsFromResolvConf reads a resolv.conf (normally /etc/resolv.conf of
// the node) and returns its nameservers as "ip:port", loopback ones dropped
// (they would point at the container itself), and its search domains.
func UpstreamsFromResolvConf(path string) (upstreams, search []string, err error) {
	cc, err := miekg.ClientConfigFromFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	for _, s := range cc.Servers {
		ip := net.ParseIP(s)
		if ip == nil || ip.IsLoopback() {
			continue
		}
		upstreams = append(upstreams, net.JoinHostPort(s, cc.Port))
	}
	return upstreams, cc.Search, nil
}

func normalize(name string) string {
	return strings.ToLower(trimName(name))
}

// trimName removes spaces and the trailing dot; the case is kept.
func trimName(name string) string {
	return strings.TrimSuffix(strings.TrimSpace(name), ".")
}
