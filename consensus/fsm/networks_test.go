package fsm

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func netCmd(id, name, subnet string) command.CreateNetwork {
	return command.CreateNetwork{Network: api.Network{ID: id, Name: name, Subnet: subnet, CreatedAt: t0}}
}

// smallNetCmd creates a network with allocated shares (as the API asks
// for a subnet too small for index-derived ones).
func smallNetCmd(id, name, subnet string) command.CreateNetwork {
	c := netCmd(id, name, subnet)
	c.Network.ShareBits = api.AllocatedShareBits
	return c
}

func TestCreateNetwork(t *testing.T) {
	h := newHarness(t)
	if r := h.apply(netCmd("x", "early", "")); !errors.Is(r.Err, consensus.ErrNotBootstrapped) {
		t.Fatalf("before bootstrap: %v", r.Err)
	}
	h.bootstrap()
	a := h.must(netCmd("na", "front", "")).(*api.Network)
	if a.Subnet != "10.44.0.0/16" || a.VNI != api.DefaultVNI+1 {
		t.Fatalf("allocated %s VNI %d", a.Subnet, a.VNI)
	}
	b := h.must(netCmd("nb", "back", "")).(*api.Network)
	if b.Subnet != "10.45.0.0/16" || b.VNI != api.DefaultVNI+2 {
		t.Fatalf("allocated %s VNI %d", b.Subnet, b.VNI)
	}
	c := h.must(netCmd("nc", "given", "10.60.0.0/19")).(*api.Network)
	if c.Subnet != "10.60.0.0/19" {
		t.Fatalf("given subnet stored as %s", c.Subnet)
	}
	cases := []struct {
		name string
		cmd  command.CreateNetwork
		want error
		msg  string
	}{
		{"same name", netCmd("n1", "front", "10.70.0.0/16"), consensus.ErrNameTaken, "a network named front exists"},
		{"same name other case", netCmd("n1", "FRONT", "10.70.0.0/16"), consensus.ErrNameTaken, "exists"},
		{"default name", netCmd("n1", "default", ""), consensus.ErrNameTaken, "reserved"},
		{"bad name", netCmd("n1", "a.b", ""), consensus.ErrInvalid, "not allowed"},
		{"same ID", netCmd("na", "other", "10.70.0.0/16"), consensus.ErrExists, "ID na"},
		{"overlaps network", netCmd("n1", "x", "10.44.128.0/17"), consensus.ErrInUse, "overlaps network front"},
		{"overlaps cluster", netCmd("n1", "x", "10.40.0.0/14"), consensus.ErrInUse, "cluster CIDR"},
		{"overlaps VIPs", netCmd("n1", "x", "10.43.0.0/17"), consensus.ErrInUse, "VIP range"},
		{"small without share_bits", netCmd("n1", "x", "10.80.0.0/24"), consensus.ErrInvalid, "smaller than a /19, so its node shares must be allocated"},
		{"too small", smallNetCmd("n1", "x", "10.80.0.0/28"), consensus.ErrInvalid, "must be a /27 or larger"},
		{"share_bits on a large one", smallNetCmd("n1", "x", "10.80.0.0/16"), consensus.ErrInvalid, "share_bits must be 0"},
		{"wrong share_bits", command.CreateNetwork{Network: api.Network{ID: "n1", Name: "x", Subnet: "10.80.0.0/24", ShareBits: 26}}, consensus.ErrInvalid, "share_bits 26"},
		{"shares given", command.CreateNetwork{Network: api.Network{ID: "n1", Name: "x", Subnet: "10.80.0.0/24", ShareBits: 28, Shares: map[string]string{"n1": "10.80.0.0/28"}}}, consensus.ErrInvalid, "not given at creation"},
		{"host bits", netCmd("n1", "x", "10.80.0.1/16"), consensus.ErrInvalid, "host bits"},
		{"not v4", netCmd("n1", "x", "fd00::/64"), consensus.ErrInvalid, "not an IPv4 prefix"},
		{"taken VNI", command.CreateNetwork{Network: api.Network{ID: "n1", Name: "x", VNI: a.VNI}}, consensus.ErrInUse, "VNI 4243 is taken by network front"},
		{"default VNI", command.CreateNetwork{Network: api.Network{ID: "n1", Name: "x", VNI: api.DefaultVNI}}, consensus.ErrInvalid, "VNI 4242"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.store.Networks()
			r := h.apply(tc.cmd)
			if !errors.Is(r.Err, tc.want) || !strings.Contains(r.Err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v containing %q", r.Err, tc.want, tc.msg)
			}
			if after := h.store.Networks(); len(after) != len(before) {
				t.Fatalf("a refused create changed the table: %d → %d networks", len(before), len(after))
			}
		})
	}
	var names []string
	for _, n := range h.store.Networks() {
		names = append(names, n.Name)
	}
	if want := []string{"default", "back", "front", "given"}; !slices.Equal(names, want) {
		t.Fatalf("networks %v, want %v", names, want)
	}
	if d, err := h.store.ResolveNetwork("default"); err != nil || d.Subnet != "10.42.0.0/16" || d.VNI != api.DefaultVNI {
		t.Fatalf("default network %+v, %v", d, err)
	}
	if n, err := h.store.ResolveNetwork("nb"); err != nil || n.Name != "back" {
		t.Fatalf("resolve by ID: %+v, %v", n, err)
	}
}

func TestServiceNetworksAndVIPs(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(netCmd("na", "front", "10.50.0.0/16"))
	h.must(netCmd("nb", "back", "10.51.0.0/16"))
	svc := func(id, name string, nets ...string) api.Service {
		return api.Service{ID: id, Name: name, Spec: api.ServiceSpec{Name: name, Replicas: 1, Networks: nets}}
	}
	plain := h.must(command.CreateService{Service: svc("s0", "plain")}).(*api.Service)
	if plain.VIP == "" || !maps.Equal(plain.VIPs, map[string]string{"default": plain.VIP}) {
		t.Fatalf("default-network service: VIP %q VIPs %v", plain.VIP, plain.VIPs)
	}
	both := h.must(command.CreateService{Service: svc("s1", "both", "front", "back")}).(*api.Service)
	if both.VIP != "" || both.VIPs["front"] != "10.50.128.1" || both.VIPs["back"] != "10.51.128.1" || len(both.VIPs) != 2 {
		t.Fatalf("two-network service: VIP %q VIPs %v", both.VIP, both.VIPs)
	}
	other := h.must(command.CreateService{Service: svc("s2", "other", "front")}).(*api.Service)
	if other.VIPs["front"] != "10.50.128.2" {
		t.Fatalf("second VIP on front: %v", other.VIPs)
	}
	if r := h.apply(command.CreateService{Service: svc("s3", "x", "nowhere")}); !errors.Is(r.Err, consensus.ErrNotFound) || !strings.Contains(r.Err.Error(), "network nowhere") {
		t.Fatalf("unknown network: %v", r.Err)
	}
	if r := h.apply(command.CreateService{Service: svc("s3", "x", "front", "front")}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("network twice: %v", r.Err)
	}

	// Update: keeps the VIP of a network it stays on, drops the other,
	// allocates on a new one (default included).
	next := *both
	next.Spec.Networks = []string{"front", "default"}
	up := h.must(command.UpdateService{Service: next}).(*api.Service)
	if up.VIPs["front"] != "10.50.128.1" || up.VIP == "" || up.VIPs["default"] != up.VIP || len(up.VIPs) != 2 {
		t.Fatalf("after update: VIP %q VIPs %v", up.VIP, up.VIPs)
	}
	next = *up
	next.Spec.Networks = []string{"back"}
	up = h.must(command.UpdateService{Service: next}).(*api.Service)
	if up.VIP != "" || !maps.Equal(up.VIPs, map[string]string{"back": "10.51.128.1"}) {
		t.Fatalf("moved to back only: VIP %q VIPs %v", up.VIP, up.VIPs)
	}

	// rm is refused while a service names the network.
	if r := h.apply(command.DeleteNetwork{ID: "nb"}); !errors.Is(r.Err, consensus.ErrInUse) || !strings.Contains(r.Err.Error(), "used by service both") {
		t.Fatalf("rm in use: %v", r.Err)
	}
	if r := h.apply(command.DeleteNetwork{ID: "default"}); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("rm default: %v", r.Err)
	}
	h.must(command.DeleteService{ID: "s1", Now: t0})
	h.must(command.DeleteNetwork{ID: "nb"})
	if _, err := h.store.ResolveNetwork("back"); !errors.Is(err, consensus.ErrNotFound) {
		t.Fatalf("removed network still resolves: %v", err)
	}
	if r := h.apply(command.DeleteNetwork{ID: "nb"}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("rm twice: %v", r.Err)
	}
}

func TestTaskStatusIPs(t *testing.T) {
	h := newHarness(t).withRefs()
	h.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "n1", DesiredState: api.TaskRunning, State: api.TaskAssigned, CreatedAt: t0}}})
	ips := map[string]string{"front": "10.50.0.2", "default": "10.42.0.2"}
	h.must(command.TaskStatus{NodeID: "n1", Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskRunning, IP: "10.50.0.2", IPs: ips, Timestamp: t0}}})
	got, _ := h.store.Task("t1")
	if !maps.Equal(got.IPs, ips) {
		t.Fatalf("IPs %v", got.IPs)
	}
	// A scheduler write of the task read before the report keeps them.
	h.must(command.UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Slot: 1, NodeID: "n1", DesiredState: api.TaskShutdown, State: api.TaskAssigned, CreatedAt: t0}}})
	got, _ = h.store.Task("t1")
	if !maps.Equal(got.IPs, ips) {
		t.Fatalf("IPs after a stale upsert: %v", got.IPs)
	}
}

func TestNetworkSnapshot(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(netCmd("na", "front", ""))
	var buf strings.Builder
	if err := consensus.WriteSnapshot(h.store, &buf); err != nil {
		t.Fatal(err)
	}
	s := consensus.NewStore()
	if err := s.Restore(strings.NewReader(buf.String())); err != nil {
		t.Fatal(err)
	}
	n, err := s.ResolveNetwork("front")
	if err != nil || n.Subnet != "10.44.0.0/16" || n.VNI != api.DefaultVNI+1 {
		t.Fatalf("restored network %+v, %v", n, err)
	}
}
