package netplan

import (
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestDepartures: which departed nodes stay on the data path, and until
// when.
func TestDepartures(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 15, 37, 10, 0, time.UTC)
	n1 := &api.Node{ID: "n1", Addr: "10.213.1.11", Subnet: "10.42.1.0/24"}
	n2 := &api.Node{ID: "n2", Addr: "10.213.1.12", Subnet: "10.42.2.0/24"}
	n4 := &api.Node{ID: "n4", Addr: "10.213.1.14", Subnet: "10.42.4.0/24"}
	keep := 3 * time.Second
	for _, c := range []struct {
		name          string
		prev          map[string]Departure
		before, after []*api.Node
		now           time.Time
		keep          time.Duration
		want          map[string]Departure
	}{
		{name: "nothing left", before: []*api.Node{n1, n2, n4}, after: []*api.Node{n1, n2, n4}, now: t0, keep: keep,
			want: map[string]Departure{}},
		{name: "first pass: no last nodes", after: []*api.Node{n1, n2}, now: t0, keep: keep,
			want: map[string]Departure{}},
		{name: "n4 removed: kept from now", before: []*api.Node{n1, n2, n4}, after: []*api.Node{n1, n2}, now: t0, keep: keep,
			want: map[string]Departure{"n4": {Node: n4, At: t0}}},
		{name: "still kept inside the window", prev: map[string]Departure{"n4": {Node: n4, At: t0}},
			before: []*api.Node{n1, n2}, after: []*api.Node{n1, n2}, now: t0.Add(keep - time.Millisecond), keep: keep,
			want: map[string]Departure{"n4": {Node: n4, At: t0}}},
		{name: "dropped once the window ends", prev: map[string]Departure{"n4": {Node: n4, At: t0}},
			before: []*api.Node{n1, n2}, after: []*api.Node{n1, n2}, now: t0.Add(keep), keep: keep,
			want: map[string]Departure{}},
		{name: "joined again: the new record wins", prev: map[string]Departure{"n4": {Node: n4, At: t0}},
			before: []*api.Node{n1, n2}, after: []*api.Node{n1, n2, {ID: "n4", Addr: "10.213.1.14", Subnet: "10.42.9.0/24"}},
			now: t0.Add(time.Second), keep: keep, want: map[string]Departure{}},
		{name: "its address taken by a new node", prev: map[string]Departure{"n4": {Node: n4, At: t0}},
			before: []*api.Node{n1, n2}, after: []*api.Node{n1, n2, {ID: "n5", Addr: "10.213.1.14", Subnet: "10.42.5.0/24"}},
			now: t0.Add(time.Second), keep: keep, want: map[string]Departure{}},
		{name: "its subnet taken by a new node", prev: map[string]Departure{"n4": {Node: n4, At: t0}},
			before: []*api.Node{n1, n2}, after: []*api.Node{n1, n2, {ID: "n5", Addr: "10.213.1.15", Subnet: "10.42.4.0/24"}},
			now: t0.Add(time.Second), keep: keep, want: map[string]Departure{}},
		{name: "self is never kept", before: []*api.Node{n1, n2}, after: []*api.Node{n2}, now: t0, keep: keep,
			want: map[string]Departure{}},
		{name: "a second departure keeps the first's time", prev: map[string]Departure{"n4": {Node: n4, At: t0}},
			before: []*api.Node{n1, n2}, after: []*api.Node{n1}, now: t0.Add(time.Second), keep: keep,
			want: map[string]Departure{"n4": {Node: n4, At: t0}, "n2": {Node: n2, At: t0.Add(time.Second)}}},
		{name: "keep 0: nothing kept", before: []*api.Node{n1, n2, n4}, after: []*api.Node{n1, n2}, now: t0,
			want: map[string]Departure{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Departures(c.prev, c.before, c.after, "n1", c.now, c.keep)
			if !maps.EqualFunc(got, c.want, func(a, b Departure) bool { return a.Node == b.Node && a.At.Equal(b.At) }) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

// TestDepartedOnTheDataPath: a departed node is still an overlay peer and
// a VXLAN peer of the load balancer, but none of its tasks is a backend,
// and the list is ordered.
func TestDepartedOnTheDataPath(t *testing.T) {
	n1 := &api.Node{ID: "n1", Addr: "10.213.1.11", Subnet: "10.42.1.0/24", Status: api.NodeReady}
	n2 := &api.Node{ID: "n2", Addr: "10.213.1.12", Subnet: "10.42.2.0/24", Status: api.NodeReady}
	n3 := &api.Node{ID: "n3", Addr: "10.213.1.13", Subnet: "10.42.3.0/24", Status: api.NodeReady}
	n4 := &api.Node{ID: "n4", Addr: "10.213.1.14", Subnet: "10.42.4.0/24", Status: api.NodeReady}
	deps := map[string]Departure{"n4": {Node: n4}, "n3": {Node: n3}}
	departed := DepartedNodes(deps)
	if ids := []string{departed[0].ID, departed[1].ID}; !slices.Equal(ids, []string{"n3", "n4"}) {
		t.Fatalf("DepartedNodes order: %v", ids)
	}
	if DepartedNodes(nil) != nil {
		t.Fatal("DepartedNodes(nil) is not nil")
	}
	svc := &api.Service{ID: "s1", Spec: api.ServiceSpec{Name: "web"}, VIP: "10.42.255.2"}
	task := func(id, node, ip string, desired string) *api.Task {
		return &api.Task{ID: id, ServiceID: "s1", NodeID: node, DesiredState: desired, State: api.TaskRunning,
			IP: ip}
	}
	st := State{
		Cluster:  nil,
		Nodes:    []*api.Node{n1, n2},
		Departed: departed,
		Services: []*api.Service{svc},
		Tasks: map[string][]*api.Task{"s1": {
			task("t1", "n1", "10.42.1.2", api.TaskRunning),
			task("t2", "n2", "10.42.2.2", api.TaskRunning),
			task("t4", "n4", "10.42.4.2", api.TaskShutdown), // the removal's entry stops it
		}},
	}
	var peers []string
	for _, p := range OverlayPeers(st, "n1") {
		peers = append(peers, p.NodeID)
	}
	if !slices.Equal(peers, []string{"n2", "n3", "n4"}) {
		t.Fatalf("overlay peers %v, want n2 then the departed n3, n4", peers)
	}
	alive := map[string]bool{"n1": true, "n2": true}
	lbState, _, _ := Traffic(st, alive, "n1")
	var vx []string
	for _, ip := range lbState.Peers {
		vx = append(vx, ip.String())
	}
	if !slices.Equal(vx, []string{"10.213.1.12", "10.213.1.13", "10.213.1.14"}) {
		t.Fatalf("load balancer VXLAN peers %v", vx)
	}
	var backends []string
	for _, s := range lbState.Services {
		for _, b := range s.Backends {
			backends = append(backends, b.IP.String())
		}
	}
	if !slices.Equal(backends, []string{"10.42.1.2", "10.42.2.2"}) {
		t.Fatalf("backends %v, want the two live nodes' tasks and not the departed node's", backends)
	}
	nw := &api.Network{Name: "back", Subnet: "10.50.0.0/16"}
	cluster := netip.MustParsePrefix("10.42.0.0/16")
	var plain []string
	for _, p := range NetworkPeers(st.DataPathNodes(), "n1", nw, cluster, netip.Prefix{}) {
		plain = append(plain, p.NodeID)
	}
	if !slices.Equal(plain, []string{"n2", "n3", "n4"}) {
		t.Fatalf("plain network peers %v", plain)
	}
	if got := (State{Nodes: []*api.Node{n1, n2}}).DataPathNodes(); len(got) != 2 {
		t.Fatalf("DataPathNodes without departures: %v", got)
	}
}
