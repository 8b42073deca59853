package netplan

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/lb"
	"github.com/shoal-org/shoal/lb/dns"
	"github.com/shoal-org/shoal/overlay"
)

// TestNetStateIsOneView: while entries are applied, every view a network
// loop pass reads is one the log produced. Each round adds a node with a
// subnet, a service with a VIP and a running task of it on that node; a
// table-by-table read that saw the nodes or services before a round and the
// tasks after it would show a task whose node or service is missing — and
// Traffic would then program a service without a backend it has, or
// a backend on a node it has no overlay peer for.
func TestNetStateIsOneView(t *testing.T) {
	r := newReplica(t)
	const rounds = 200
	done := make(chan error, 1)
	go func() {
		idx := r.idx
		for i := 0; i < rounds; i++ {
			n, s := fmt.Sprintf("n%d", i), fmt.Sprintf("s%d", i)
			for _, cmd := range []command.Command{
				command.UpsertNode{Node: api.Node{ID: n, Hostname: n, Addr: fmt.Sprintf("192.168.%d.%d", i/250, i%250+1),
					ClusterPort: 1, Status: api.NodeReady, CertSerial: n, Subnet: fmt.Sprintf("10.42.%d.0/24", i+1)}},
				command.CreateService{Service: api.Service{ID: s, Name: fmt.Sprintf("svc%d", i),
					VIP: fmt.Sprintf("10.43.%d.%d", i/250, i%250+2)}},
				command.UpsertTasks{Tasks: []api.Task{{ID: "t" + s, ServiceID: s, Slot: 1, NodeID: n,
					State: api.TaskRunning, DesiredState: api.TaskRunning, IP: fmt.Sprintf("10.42.%d.2", i+1)}}},
			} {
				idx++
				if res := r.fsm.ApplyCommand(idx, cmd); res.Err != nil {
					done <- fmt.Errorf("apply %T: %w", cmd, res.Err)
					return
				}
			}
		}
		done <- nil
	}()
	check := func(read int, ns State) {
		t.Helper()
		nodes, services, tasks := map[string]bool{}, map[string]bool{}, 0
		for _, n := range ns.Nodes {
			nodes[n.ID] = true
		}
		for _, s := range ns.Services {
			services[s.ID] = true
		}
		for sid, ts := range ns.Tasks {
			for _, tk := range ts {
				tasks++
				if !nodes[tk.NodeID] || !services[sid] {
					t.Fatalf("read %d: task %s of service %s on node %s, but the same read has node %v, service %v",
						read, tk.ID, sid, tk.NodeID, nodes[tk.NodeID], services[sid])
				}
			}
		}
		// Every node but the bootstrap one is a peer with a backend; the
		// pure halves agree with the view they were given.
		alive := map[string]struct{}{}
		for id := range nodes {
			alive[id] = struct{}{}
		}
		state, _, _ := Traffic(ns, alive, "boot")
		backends := 0
		for _, s := range state.Services {
			backends += len(s.Backends)
		}
		if backends != tasks || len(OverlayPeers(ns, "boot")) != len(ns.Nodes)-1 {
			t.Fatalf("read %d: %d tasks, %d backends, %d nodes, %d overlay peers",
				read, tasks, backends, len(ns.Nodes), len(OverlayPeers(ns, "boot")))
		}
	}
	reads := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			ns := Read(r.store)
			check(reads, ns)
			if len(ns.Services) != rounds || ns.Index != r.store.Index() {
				t.Fatalf("final view has %d services at index %d, want %d at %d", len(ns.Services), ns.Index, rounds, r.store.Index())
			}
			t.Logf("%d reads while %d rounds were applied", reads, rounds)
			return
		default:
		}
		reads++
		check(reads, Read(r.store))
	}
}

// trafficSummary renders what the tests compare of a load balancer state:
// per service, its name, network, VIP, published port count and backends
// ("*" marks a local one), in order.
func trafficSummary(st lb.State) []string {
	var out []string
	for _, s := range st.Services {
		var bs []string
		for _, b := range s.Backends {
			l := ""
			if b.Local {
				l = "*"
			}
			bs = append(bs, b.IP.String()+l)
		}
		out = append(out, fmt.Sprintf("%s@%s vip=%v ports=%d [%s]", s.Name, s.Network, s.VIP, len(s.Ports), strings.Join(bs, " ")))
	}
	return out
}

func TestTrafficState(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	nodes := []*api.Node{
		{ID: "self", Addr: "192.168.0.1", Subnet: "10.42.1.0/24"},
		{ID: "n2", Addr: "192.168.0.2", Subnet: "10.42.2.0/24"},
		{ID: "n3", Addr: "192.168.0.3", Subnet: "10.42.3.0/24"},
		{ID: "bad", Addr: "not-an-ip"},
	}
	networks := []*api.Network{
		{ID: "d", Name: api.DefaultNetwork, Subnet: "10.42.0.0/16"},
		{ID: "b", Name: "back", Subnet: "10.50.0.0/16", VNI: 0x1001},
		{ID: "x", Name: "broken", Subnet: "nonsense"},
	}
	task := func(id, svc, node, ip string, mod func(*api.Task)) *api.Task {
		tk := &api.Task{ID: id, ServiceID: svc, NodeID: node, State: api.TaskRunning, DesiredState: api.TaskRunning, IP: ip}
		if mod != nil {
			mod(tk)
		}
		return tk
	}
	web := &api.Service{ID: "s-web", Name: "web", VIP: "10.43.0.2", CreatedAt: t0,
		Spec: api.ServiceSpec{Ports: []api.PortConfig{{Published: 8080, Target: 80}}}}
	both := &api.Service{ID: "s-both", Name: "both", VIP: "10.43.0.3", VIPs: map[string]string{"back": "10.50.128.2"},
		CreatedAt: t0.Add(time.Second), Spec: api.ServiceSpec{Networks: []string{api.DefaultNetwork, "back"}}}
	novip := &api.Service{ID: "s-novip", Name: "novip", CreatedAt: t0.Add(2 * time.Second)}
	older := &api.Service{ID: "s-z", Name: "older", VIP: "10.43.0.9", CreatedAt: t0.Add(-time.Hour)}
	allAlive := map[string]struct{}{"self": {}, "n2": {}, "n3": {}}

	for _, tc := range []struct {
		name  string
		st    State
		alive map[string]struct{}
		want  []string
		dns   map[string]dns.Records // by network; nil: not checked
		// sources: nil: not checked
		sources map[netip.Addr]dns.Source
	}{{
		name:  "empty state: no services, peers are the other nodes with an address",
		st:    State{Nodes: nodes, Networks: networks},
		alive: allAlive,
	}, {
		name: "running tasks on live nodes are backends, local ones marked",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{web}, Tasks: map[string][]*api.Task{
			"s-web": {task("t1", "s-web", "self", "10.42.1.2", nil), task("t2", "s-web", "n2", "10.42.2.2", nil)}}},
		alive: allAlive,
		want:  []string{"web@default vip=10.43.0.2 ports=1 [10.42.1.2* 10.42.2.2]"},
		dns: map[string]dns.Records{api.DefaultNetwork: {
			"web": {mustIP("10.43.0.2")}, "tasks.web": {mustIP("10.42.1.2"), mustIP("10.42.2.2")}}},
	}, {
		name: "a task on a node gossip calls dead is dropped at once; this node's never",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{web}, Tasks: map[string][]*api.Task{
			"s-web": {task("t1", "s-web", "self", "10.42.1.2", nil), task("t2", "s-web", "n2", "10.42.2.2", nil),
				task("t3", "s-web", "n3", "10.42.3.2", nil)}}},
		alive: map[string]struct{}{"n3": {}},
		want:  []string{"web@default vip=10.43.0.2 ports=1 [10.42.1.2* 10.42.3.2]"},
	}, {
		name: "a task on a node the leader marked down (raft silent) is dropped though gossip calls it alive; this node's never",
		st: State{Nodes: []*api.Node{
			{ID: "self", Addr: "192.168.0.1", Subnet: "10.42.1.0/24", Status: api.NodeDown},
			{ID: "n2", Addr: "192.168.0.2", Subnet: "10.42.2.0/24", Status: api.NodeDown},
			{ID: "n3", Addr: "192.168.0.3", Subnet: "10.42.3.0/24", Status: api.NodeReady},
		}, Networks: networks, Services: []*api.Service{web}, Tasks: map[string][]*api.Task{
			"s-web": {task("t1", "s-web", "self", "10.42.1.2", nil), task("t2", "s-web", "n2", "10.42.2.2", nil),
				task("t3", "s-web", "n3", "10.42.3.2", nil)}}},
		alive: allAlive,
		want:  []string{"web@default vip=10.43.0.2 ports=1 [10.42.1.2* 10.42.3.2]"},
	}, {
		name: "told to stop, not running, no address, unhealthy or not yet healthy: no backend",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{web}, Tasks: map[string][]*api.Task{
			"s-web": {
				task("stop", "s-web", "n2", "10.42.2.2", func(t *api.Task) { t.DesiredState = api.TaskShutdown }),
				task("start", "s-web", "n2", "10.42.2.3", func(t *api.Task) { t.State = api.TaskStarting }),
				task("noip", "s-web", "n2", "", nil),
				task("sick", "s-web", "n2", "10.42.2.4", func(t *api.Task) { t.Health = api.HealthUnhealthy }),
				task("young", "s-web", "n2", "10.42.2.5", func(t *api.Task) { t.Health = api.HealthStarting }),
				task("ok", "s-web", "n2", "10.42.2.6", func(t *api.Task) { t.Health = api.HealthHealthy }),
			}}},
		alive: allAlive,
		want:  []string{"web@default vip=10.43.0.2 ports=1 [10.42.2.6]"},
	}, {
		name: "a service on two networks is one lb service per network; ports on the first",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{both}, Tasks: map[string][]*api.Task{
			"s-both": {task("t1", "s-both", "n2", "10.42.2.7", func(t *api.Task) {
				t.Spec = both.Spec
				t.IPs = map[string]string{api.DefaultNetwork: "10.42.2.7", "back": "10.50.1.7"}
			})}}},
		alive: allAlive,
		want: []string{"both@default vip=10.43.0.3 ports=0 [10.42.2.7]",
			"both@back@back vip=10.50.128.2 ports=0 [10.50.1.7]"},
		dns: map[string]dns.Records{
			api.DefaultNetwork: {"both": {mustIP("10.43.0.3")}, "tasks.both": {mustIP("10.42.2.7")}},
			"back":             {"both": {mustIP("10.50.128.2")}, "tasks.both": {mustIP("10.50.1.7")}},
		},
	}, {
		name: "a task is a source: its networks, its stack (for the stack's short names), its hostname's domain (its name's)",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{web}, Tasks: map[string][]*api.Task{
			"s-web": {task("t1", "s-web", "self", "10.42.1.2", func(t *api.Task) {
				t.Spec.Labels = map[string]string{api.StackLabel: "shop"}
				t.Name = "shop_web.1"
			}), task("t2", "s-web", "n2", "10.42.2.2", nil)}}},
		alive: allAlive,
		want:  []string{"web@default vip=10.43.0.2 ports=1 [10.42.1.2* 10.42.2.2]"},
		sources: map[netip.Addr]dns.Source{
			netip.MustParseAddr("10.42.1.2"): {Networks: []string{api.DefaultNetwork}, Stack: "shop", Domain: "1", NameDomain: true},
			netip.MustParseAddr("10.42.2.2"): {Networks: []string{api.DefaultNetwork}},
		},
	}, {
		name: "a task of a service with a hostname: that hostname's domain, not the task name's",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{web}, Tasks: map[string][]*api.Task{
			"s-web": {task("t1", "s-web", "self", "10.42.1.2", func(t *api.Task) {
				t.Name, t.Spec.Hostname = "web.1", "app-host"
			}), task("t2", "s-web", "n2", "10.42.2.2", func(t *api.Task) {
				t.Name, t.Spec.Hostname = "web.2", "db.internal"
			})}}},
		alive: allAlive,
		want:  []string{"web@default vip=10.43.0.2 ports=1 [10.42.1.2* 10.42.2.2]"},
		sources: map[netip.Addr]dns.Source{
			netip.MustParseAddr("10.42.1.2"): {Networks: []string{api.DefaultNetwork}},
			netip.MustParseAddr("10.42.2.2"): {Networks: []string{api.DefaultNetwork}, Domain: "internal"},
		},
	}, {
		name: "no VIP and no ports: nothing to program; oldest service first",
		st: State{Nodes: nodes, Networks: networks, Services: []*api.Service{novip, web, older}, Tasks: map[string][]*api.Task{
			"s-novip": {task("t1", "s-novip", "n2", "10.42.2.9", nil)}}},
		alive: allAlive,
		want:  []string{"older@default vip=10.43.0.9 ports=0 []", "web@default vip=10.43.0.2 ports=1 []"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			before := slices.Clone(tc.st.Services)
			state, views, sources := Traffic(tc.st, tc.alive, "self")
			if tc.sources != nil && !reflect.DeepEqual(sources, tc.sources) {
				t.Errorf("sources %v, want %v", sources, tc.sources)
			}
			if got := trafficSummary(state); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("services:\n got %q\nwant %q", got, tc.want)
			}
			var peers []string
			for _, p := range state.Peers {
				peers = append(peers, p.String())
			}
			if want := []string{"192.168.0.2", "192.168.0.3"}; !reflect.DeepEqual(peers, want) {
				t.Errorf("peers %v, want %v", peers, want)
			}
			var nets []string
			for _, n := range state.Networks {
				nets = append(nets, n.Name+"/"+n.Bridge)
			}
			sort.Strings(nets)
			if want := []string{"back/shb1001", "default/" + overlay.DefaultBridgeName}; !reflect.DeepEqual(nets, want) {
				t.Errorf("networks %v, want %v", nets, want)
			}
			for network, want := range tc.dns {
				if got := views[network].Records; !reflect.DeepEqual(got, want) {
					t.Errorf("DNS records on %s: %v, want %v", network, got, want)
				}
			}
			if !reflect.DeepEqual(tc.st.Services, before) {
				t.Errorf("Traffic reordered its input")
			}
		})
	}
}

func TestOverlayPeers(t *testing.T) {
	st := State{Nodes: []*api.Node{
		{ID: "a", Addr: "192.168.0.1", Subnet: "10.42.1.0/24"},
		{ID: "b", Addr: "192.168.0.2", Subnet: "10.42.2.0/24"},
		{ID: "nosubnet", Addr: "192.168.0.3"},
		{ID: "badaddr", Addr: "host.example", Subnet: "10.42.4.0/24"},
		{ID: "badsubnet", Addr: "192.168.0.5", Subnet: "10.42.5.0"},
		{ID: "self", Addr: "192.168.0.6", Subnet: "10.42.6.0/24"},
	}}
	for _, tc := range []struct {
		name string
		st   State
		self string
		want []overlay.Peer
	}{
		{"no nodes", State{}, "self", nil},
		{"every other node with a subnet and an address", st, "self", []overlay.Peer{
			{NodeID: "a", Subnet: netip.MustParsePrefix("10.42.1.0/24"), UnderlayIP: netip.MustParseAddr("192.168.0.1")},
			{NodeID: "b", Subnet: netip.MustParsePrefix("10.42.2.0/24"), UnderlayIP: netip.MustParseAddr("192.168.0.2")},
		}},
		{"self is never a peer", st, "a", []overlay.Peer{
			{NodeID: "b", Subnet: netip.MustParsePrefix("10.42.2.0/24"), UnderlayIP: netip.MustParseAddr("192.168.0.2")},
			{NodeID: "self", Subnet: netip.MustParsePrefix("10.42.6.0/24"), UnderlayIP: netip.MustParseAddr("192.168.0.6")},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := OverlayPeers(tc.st, tc.self); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("OverlayPeers:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func mustIP(s string) net.IP {
	ip := net.ParseIP(s)
	if ip == nil {
		panic("bad IP " + s)
	}
	return ip
}

// replica is a store with its FSM, bootstrapped, for tests that apply
// entries while reading.
type replica struct {
	fsm   *fsm.FSM
	store *consensus.Store
	idx   uint64
}

func newReplica(t *testing.T) *replica {
	t.Helper()
	s := consensus.NewStore()
	r := &replica{fsm: fsm.New(s), store: s, idx: 1}
	if res := r.fsm.ApplyCommand(r.idx, command.BootstrapCluster{
		Cluster: consensus.ClusterState{ClusterID: "c1", GossipKeys: [][]byte{make([]byte, 32)},
			ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16", TokenSecretHash: "x"},
		Node: api.Node{ID: "boot", Hostname: "boot", Addr: "127.0.0.1", Status: api.NodeReady, CertSerial: "b0"},
	}); res.Err != nil {
		t.Fatalf("bootstrap: %v", res.Err)
	}
	return r
}
