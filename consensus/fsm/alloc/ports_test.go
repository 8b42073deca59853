package alloc

import (
	"errors"
	"slices"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// rangeUsed holds every port of the automatic range but the given ones.
func rangeUsed(free ...int) map[int]bool {
	used := map[int]bool{}
	for p := api.AutoPortMin; p <= api.AutoPortMax; p++ {
		used[p] = !slices.Contains(free, p)
	}
	return used
}

// FreePort is the lowest port of the range that used does not hold.
func TestFreePort(t *testing.T) {
	for _, tc := range []struct {
		name string
		used map[int]bool
		want int
		ok   bool
	}{
		{"nothing used", nil, 30000, true},
		{"ports outside the range do not count", map[int]bool{80: true, 29999: true, 32768: true}, 30000, true},
		{"the lowest free", map[int]bool{30000: true, 30001: true, 30003: true}, 30002, true},
		{"a hole left by a removal is reused", map[int]bool{30000: true, 30001: false, 30002: true}, 30001, true},
		{"only the last free", rangeUsed(32767), 32767, true},
		{"full", rangeUsed(), 0, false},
	} {
		got, ok := FreePort(tc.used)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: FreePort = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// FillPorts gives each port left at 0 the lowest port free for its
// protocol, after the ports the spec itself gives and those it gave
// already, and refuses a full range.
func TestFillPorts(t *testing.T) {
	tcp := func(pub, tgt int) api.PortConfig { return api.PortConfig{Published: pub, Target: tgt, Protocol: "tcp"} }
	udp := func(pub, tgt int) api.PortConfig { return api.PortConfig{Published: pub, Target: tgt, Protocol: "udp"} }
	for _, tc := range []struct {
		name    string
		ports   []api.PortConfig
		used    map[string]map[int]bool
		want    []api.PortConfig
		wantErr bool
	}{
		{"nothing to pick", []api.PortConfig{tcp(8080, 80)}, nil, []api.PortConfig{tcp(8080, 80)}, false},
		{"first of the range", []api.PortConfig{tcp(0, 80)}, nil, []api.PortConfig{tcp(30000, 80)}, false},
		{"empty protocol is tcp", []api.PortConfig{{Target: 80}},
			map[string]map[int]bool{"tcp": {30000: true}}, []api.PortConfig{{Published: 30001, Target: 80}}, false},
		{"taken by another service", []api.PortConfig{tcp(0, 80)},
			map[string]map[int]bool{"tcp": {30000: true, 30001: true}}, []api.PortConfig{tcp(30002, 80)}, false},
		{"protocols apart", []api.PortConfig{udp(0, 53)},
			map[string]map[int]bool{"tcp": {30000: true}}, []api.PortConfig{udp(30000, 53)}, false},
		{"host mode alike", []api.PortConfig{{Target: 80, Protocol: "tcp", Mode: api.PublishHost}},
			map[string]map[int]bool{"tcp": {30000: true}}, []api.PortConfig{{Published: 30001, Target: 80, Protocol: "tcp", Mode: api.PublishHost}}, false},
		{"the spec's own given port", []api.PortConfig{tcp(0, 80), tcp(30000, 81)}, nil,
			[]api.PortConfig{tcp(30001, 80), tcp(30000, 81)}, false},
		{"two asked, two ports", []api.PortConfig{tcp(0, 80), tcp(0, 80), udp(0, 80)}, nil,
			[]api.PortConfig{tcp(30000, 80), tcp(30001, 80), udp(30000, 80)}, false},
		{"full range", []api.PortConfig{tcp(0, 80)}, map[string]map[int]bool{"tcp": rangeUsed()}, nil, true},
		{"full for tcp, free for udp", []api.PortConfig{udp(0, 80)},
			map[string]map[int]bool{"tcp": rangeUsed()}, []api.PortConfig{udp(30000, 80)}, false},
		{"last port, asked twice", []api.PortConfig{tcp(0, 80), tcp(0, 81)},
			map[string]map[int]bool{"tcp": rangeUsed(32767)}, nil, true},
	} {
		in := slices.Clone(tc.ports)
		got, err := FillPorts(tc.ports, tc.used)
		if tc.wantErr {
			if !errors.Is(err, consensus.ErrInUse) {
				t.Errorf("%s: err %v, want ErrInUse", tc.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		if !slices.Equal(tc.ports, in) {
			t.Errorf("%s: FillPorts modified its input: %v", tc.name, tc.ports)
		}
	}
}

// PublishedPorts skips the ports of every other service (any mode) and the
// nodes' cluster and gossip ports, and frees the service's own old ports.
func TestPublishedPorts(t *testing.T) {
	w := write(t)
	for _, s := range []*api.Service{
		{ID: "a", Name: "a", Spec: api.ServiceSpec{Ports: []api.PortConfig{{Published: 30000, Target: 80}}}},
		{ID: "b", Name: "b", Spec: api.ServiceSpec{Ports: []api.PortConfig{{Published: 30001, Target: 80, Protocol: "tcp", Mode: api.PublishHost}}}},
		{ID: "self", Name: "self", Spec: api.ServiceSpec{Ports: []api.PortConfig{{Published: 30003, Target: 80}}}},
	} {
		if err := w.Insert(consensus.TableServices, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Insert(consensus.TableNodes, &api.Node{ID: "n1", ClusterPort: 30002, GossipPort: 30004}); err != nil {
		t.Fatal(err)
	}
	got, err := PublishedPorts(w, "self", []api.PortConfig{{Target: 80, Protocol: "tcp"}, {Target: 81, Protocol: "tcp"}, {Target: 53, Protocol: "udp"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.PortConfig{{Published: 30003, Target: 80, Protocol: "tcp"}, {Published: 30005, Target: 81, Protocol: "tcp"}, {Published: 30000, Target: 53, Protocol: "udp"}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	given := []api.PortConfig{{Published: 8080, Target: 80}}
	if got, err := PublishedPorts(w, "new", given); err != nil || !slices.Equal(got, given) {
		t.Fatalf("given ports must pass unchanged: %v, %v", got, err)
	}
}
