package netloop

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/shoal-org/shoal/lb"
	"github.com/shoal-org/shoal/lb/dns"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/metrics"
	"github.com/shoal-org/shoal/node/netplan"
)

// fakeBalancer counts Sets and Intact checks and answers Intact as told.
type fakeBalancer struct {
	sets, checks int
	intact       bool
	intactErr    error
}

func (f *fakeBalancer) Set(lb.State) error { f.sets++; f.intact = true; return nil }
func (f *fakeBalancer) Intact() (bool, error) {
	f.checks++
	return f.intact && f.intactErr == nil, f.intactErr
}
func (f *fakeBalancer) Close() error { return nil }

// fakeMembers records the index the load balancer reflects.
type fakeMembers struct {
	index   uint64
	changed bool
}

func (m *fakeMembers) Subscribe() (<-chan struct{}, func()) { return nil, func() {} }
func (m *fakeMembers) AliveSet() map[string]membership.Meta { return nil }
func (m *fakeMembers) SetLBIndex(index uint64, changed bool) {
	m.index, m.changed = index, changed
}

// TestSyncReprogramsRemovedRules: a pass whose state did not change still
// programs the load balancer again when its rules are no longer in the
// kernel (`nft flush ruleset` by someone else), or when that cannot be
// checked; otherwise, and when the pass is not to check (no deletion
// announced), it leaves them alone. A pass whose state changed checks
// too when a deletion was announced (the balancer changes its table in
// place, and learns from Intact that it must replace it whole), and the
// first pass, before any Set, does not.
func TestSyncReprogramsRemovedRules(t *testing.T) {
	members := &fakeMembers{}
	l := &Loop{
		cfg: Config{NodeID: "n1", Members: members, Metrics: metrics.New()},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	fb := &fakeBalancer{}
	st := &serviceTraffic{lb: fb, bridgeIP: net.ParseIP("10.42.1.1"), dns: dns.New(dns.Config{})}
	ns := netplan.State{Index: 7}
	st.sync(l, ns, true)
	if fb.sets != 1 || fb.checks != 0 || members.index != 7 || !members.changed {
		t.Fatalf("first pass: %d sets, %d checks, index %d changed %v; want 1, 0, 7, true", fb.sets, fb.checks, members.index, members.changed)
	}
	for _, c := range []struct {
		name       string
		changed    bool
		check      bool
		intact     bool
		err        error
		wantSets   int
		wantChecks int
	}{
		{"unchanged and intact", false, true, true, nil, 0, 1},
		{"rules flushed by someone else", false, true, false, nil, 1, 1},
		{"cannot check", false, true, true, errors.New("netlink: boom"), 1, 1},
		{"no deletion announced: not checked", false, false, false, errors.New("netlink: boom"), 0, 0},
		{"changed, a deletion announced: checked", true, true, false, nil, 1, 1},
		{"changed, nothing announced: not checked", true, false, false, nil, 1, 0},
	} {
		fb.sets, fb.checks, fb.intact, fb.intactErr = 0, 0, c.intact, c.err
		ns.Index++
		if c.changed {
			st.last = lb.State{} // the state the pass computes differs from it
		}
		st.sync(l, ns, c.check)
		if fb.sets != c.wantSets || fb.checks != c.wantChecks {
			t.Errorf("%s: %d sets and %d checks, want %d and %d", c.name, fb.sets, fb.checks, c.wantSets, c.wantChecks)
		}
		if members.index != ns.Index || members.changed != (c.wantSets > 0) {
			t.Errorf("%s: index %d changed %v; want %d, %v", c.name, members.index, members.changed, ns.Index, c.wantSets > 0)
		}
	}
}

// failingRuns passes Run on to a DNS server and reports each failed Run.
type failingRuns struct {
	srv    *dns.Server
	failed chan error
}

func (f failingRuns) Run(ctx context.Context) error {
	err := f.srv.Run(ctx)
	if err != nil {
		select {
		case f.failed <- err:
		default:
		}
	}
	return err
}

// TestRunDNSRestartsAfterFailure: a DNS server that cannot bind (the port
// is taken for a while) is started again once it can, instead of staying
// down for the agent's life.
func TestRunDNSRestartsAfterFailure(t *testing.T) {
	blocker, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	addr := blocker.LocalAddr().String()
	srv := dns.New(dns.Config{Addr: addr})
	runs := failingRuns{srv: srv, failed: make(chan error, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runDNS(ctx, runs, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Millisecond, 10*time.Millisecond)
	}()
	defer func() { cancel(); <-done }()
	select {
	case err := <-runs.failed:
		t.Logf("first run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the DNS server bound a taken port")
	}
	_ = blocker.Close()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Addr() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if srv.Addr() != addr {
		t.Fatalf("DNS server bound to %q, want %s once the port was free", srv.Addr(), addr)
	}
}
