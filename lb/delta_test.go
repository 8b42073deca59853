package lb

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// chainNames lists the names of a delta's chains: the new ones, the ones
// whose rules are written (new or rewritten) and the deleted ones.
func chainNames(d delta) (newChains, rewrite, del []string) {
	for _, c := range d.newChains {
		newChains = append(newChains, c.Name)
	}
	rewrite = slices.Clone(newChains)
	for _, c := range d.rewrite {
		rewrite = append(rewrite, c.Name)
	}
	for _, c := range d.delChains {
		del = append(del, c.Name)
	}
	return
}

func setNames(specs []setSpec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.set.Name)
	}
	return out
}

func TestDiff(t *testing.T) {
	cfg := DefaultConfig()
	withWebBackend := func(st State) State {
		st = st.clone()
		st.Services[0].Backends = append(st.Services[0].Backends, backends("10.42.2.7")...)
		return st
	}
	withoutDNS := func(st State) State {
		st = st.clone()
		st.Services = slices.Delete(st.Services, 1, 2)
		return st
	}
	withNewService := func(st State) State {
		st = st.clone()
		st.Services = append(st.Services, Service{Name: "api", VIP: net.ParseIP("10.43.0.20"), Backends: backends("10.42.1.9")})
		return st
	}
	for _, c := range []struct {
		name                          string
		from, to                      State
		newSets, refill, delSets      []string
		newChains, rewrite, delChains []string
	}{
		{name: "no change", from: testState(), to: testState()},
		{
			// The map and both rules with `numgen mod N` change together.
			name: "a backend more", from: testState(), to: withWebBackend(testState()),
			refill: []string{"be-web"}, rewrite: []string{"svc-web", "pub-web-tcp-8080"},
		},
		{
			name: "a service gone", from: testState(), to: withoutDNS(testState()),
			rewrite: []string{"services"}, delChains: []string{"svc-dns", "pub-dns-udp-5353"}, delSets: []string{"be-dns"},
		},
		{
			name: "a service new", from: testState(), to: withNewService(testState()),
			newSets: []string{"be-api"}, newChains: []string{"svc-api"}, rewrite: []string{"services", "svc-api"},
		},
		{
			name: "networks come", from: testState(), to: netState(),
			// Everything about the services differs; what matters is that
			// new base chains are added in place, not a whole table.
			newChains: []string{"services-out", "no-backends-out", "svc-api", "filter-forward", "filter-input"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, ok := diff(compile(cfg, c.from), compile(cfg, c.to))
			if !ok {
				t.Fatal("diff says the change cannot be made in place")
			}
			if c.name == "networks come" {
				got, _, _ := chainNames(d)
				for _, want := range c.newChains {
					if !slices.Contains(got, want) {
						t.Errorf("new chains %v, missing %s", got, want)
					}
				}
				return
			}
			newChains, rewrite, delChains := chainNames(d)
			var delSets []string
			for _, s := range d.delSets {
				delSets = append(delSets, s.Name)
			}
			for _, f := range []struct {
				what      string
				got, want []string
			}{
				{"new sets", setNames(d.newSets), c.newSets}, {"refilled sets", setNames(d.refill), c.refill},
				{"deleted sets", delSets, c.delSets}, {"new chains", newChains, c.newChains},
				{"rewritten chains", rewrite, c.rewrite}, {"deleted chains", delChains, c.delChains},
			} {
				slices.Sort(f.got)
				slices.Sort(f.want)
				if !slices.Equal(f.got, f.want) {
					t.Errorf("%s = %v, want %v", f.what, f.got, f.want)
				}
			}
			if d.empty() != (c.name == "no change") {
				t.Errorf("empty = %v", d.empty())
			}
		})
	}

	t.Run("a base chain's definition differs", func(t *testing.T) {
		from, to := compile(cfg, testState()), compile(cfg, testState())
		prio := *to.chain(chainRejectPre).Priority + 1
		to.chain(chainRejectPre).Priority = &prio
		if _, ok := diff(from, to); ok {
			t.Fatal("diff would change a base chain's priority in place")
		}
	})
	t.Run("a set's definition differs", func(t *testing.T) {
		from, to := compile(cfg, testState()), compile(cfg, testState())
		to.set("be-web").set.Interval = true
		if _, ok := diff(from, to); ok {
			t.Fatal("diff would change a set's flags in place")
		}
	})
}

// TestSetInPlaceMatchesWhole: one LB goes through a series of states,
// each after the first programmed in place; after every step its table is
// what a new LB (which replaces the table whole) makes of the same state,
// as `nft -j` lists both, and Intact holds. Then a table someone flushed
// under it: the in-place change fails and the table is replaced whole in
// the same Set.
func TestSetInPlaceMatchesWhole(t *testing.T) {
	requireRoot(t)
	name, newLB := lbInNetns(t, "lbdelta")
	dump := func() string {
		return canonicalTable(t, run(t, "ip", "netns", "exec", name, "nft", "-j", "list", "table", "ip", DefaultConfig().TableName))
	}

	hostMode := testState()
	hostMode.Services = append(hostMode.Services, Service{Name: "edge",
		Ports:    []api.PortConfig{{Published: 8443, Target: 443, Protocol: "tcp", Mode: api.PublishHost}},
		Backends: []Backend{{IP: net.ParseIP("10.42.1.40"), Local: true}, {IP: net.ParseIP("10.42.2.40")}}})
	netMore := netState()
	netMore.Services[1].Backends = backends("10.50.0.130", "10.50.1.5", "10.50.2.8")
	netMore.Peers = ips("10.213.1.12")
	steps := []struct {
		name string
		st   State
	}{
		{"first", testState()},
		{"a backend more", func() State {
			s := testState().clone()
			s.Services[0].Backends = append(s.Services[0].Backends, backends("10.42.2.7")...)
			return s
		}()},
		{"no backends", func() State { s := testState().clone(); s.Services[0].Backends = nil; return s }()},
		{"a host-mode service", hostMode},
		{"networks", netState()},
		{"networks, backends and peers changed", netMore},
		{"back to one network", testState()},
		{"nothing", State{}},
		{"again", testState()},
	}
	l := newLB()
	for i, s := range steps {
		if err := l.Set(s.st); err != nil {
			t.Fatalf("%s: Set: %v", s.name, err)
		}
		if i > 0 && l.programmed == nil {
			t.Fatalf("%s: nothing programmed", s.name)
		}
		want, chains, sets := l.tableUse, len(l.programmed.chains), len(l.programmed.sets)
		if ok, err := l.Intact(); err != nil || !ok {
			tb, _ := l.listTable()
			t.Fatalf("%s: Intact after an in-place Set = %v, %v (kernel %d, want %d; %d chains, %d sets)", s.name, ok, err, tb.Use, want, chains, sets)
		}
		got := dump()
		whole := newLB()
		if err := whole.Set(s.st); err != nil {
			t.Fatalf("%s: whole Set: %v", s.name, err)
		}
		if want := dump(); got != want {
			t.Fatalf("%s: the table changed in place differs from the whole one\n in place: %s\n whole:    %s", s.name, got, want)
		}
	}
	if l.wholeSets != 1 {
		t.Fatalf("%d whole replacements over %d steps, want 1 (the first)", l.wholeSets, len(steps))
	}

	run(t, "ip", "netns", "exec", name, "nft", "flush", "ruleset")
	if err := l.Set(netState()); err != nil {
		t.Fatalf("Set after a foreign flush: %v", err)
	}
	if l.wholeSets != 2 {
		t.Fatalf("after a foreign flush: %d whole replacements, want 2", l.wholeSets)
	}
	got := dump()
	if err := newLB().Set(netState()); err != nil {
		t.Fatal(err)
	}
	if want := dump(); got != want {
		t.Fatalf("after a foreign flush the table differs from a whole one\n got:  %s\n want: %s", got, want)
	}
}

// lbInNetns makes a network namespace (prefix and the PID), deleted when
// tb ends, and returns its name and a maker of LBs with the default
// config there, each closed when tb ends.
func lbInNetns(tb testing.TB, prefix string) (string, func() *LB) {
	tb.Helper()
	name := fmt.Sprintf("%s%d", prefix, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add: %v: %s", err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	cfg := DefaultConfig()
	cfg.NetNSPath = "/var/run/netns/" + name
	return name, func() *LB {
		l, err := New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = l.Close() })
		return l
	}
}

// canonicalTable turns `nft -j list table` output into a string that is
// equal for equal tables: handles dropped, chains and sets in name order,
// set elements sorted, each chain's rules in their order.
func canonicalTable(t *testing.T, out string) string {
	t.Helper()
	var doc struct {
		Nftables []map[string]map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parse nft -j: %v\n%s", err, out)
	}
	var objs []string
	rules := map[string][]string{}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, o := range doc.Nftables {
		for kind, v := range o {
			if kind == "metainfo" {
				continue
			}
			delete(v, "handle")
			if elems, ok := v["elem"].([]any); ok {
				slices.SortFunc(elems, func(a, b any) int { return strings.Compare(enc(a), enc(b)) })
			}
			if kind == "rule" {
				rules[fmt.Sprint(v["chain"])] = append(rules[fmt.Sprint(v["chain"])], enc(v))
				continue
			}
			objs = append(objs, kind+enc(v))
		}
	}
	for chain, rs := range rules {
		objs = append(objs, "rules of "+chain+": "+strings.Join(rs, " "))
	}
	slices.Sort(objs)
	return strings.Join(objs, "\n")
}

// BenchmarkSetOneBackend: the Set that follows one more backend of one
// service, with 10 and 100 services programmed, changed in place against
// the whole table replaced (the LB told it knows nothing, as after a
// failure). What one task start costs every node's load balancer.
func BenchmarkSetOneBackend(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, nftables)")
	}
	for _, n := range []int{10, 100} {
		for _, whole := range []bool{false, true} {
			b.Run(fmt.Sprintf("services=%d/whole=%v", n, whole), func(b *testing.B) {
				_, newLB := lbInNetns(b, "lbdb")
				l := newLB()
				states := [2]State{bigState(n, true), bigState(n, true)}
				states[1].Services[n/2].Backends = append(states[1].Services[n/2].Backends, Backend{IP: net.IPv4(10, 42, 3, 1)})
				if err := l.Set(states[0]); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if whole {
						l.mu.Lock()
						l.programmed = nil
						l.mu.Unlock()
					}
					if err := l.Set(states[(i+1)%2]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
