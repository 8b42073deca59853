package authz

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/consensus/raftnode"
)

// authzCase is one command in two forms: about the caller's own objects
// and about another node's (the same command when it names no node).
type authzCase struct {
	own, other command.Command
	// want: leader, node for its own objects, node for others', admin from
	// a manager, admin from a worker.
	leader, nodeOwn, nodeOther, admin, adminWorker bool
}

func TestAuthorizeTable(t *testing.T) {
	const me, them = "node-me", "node-them"
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	self := &api.Node{ID: me, Hostname: "me", Addr: "10.0.0.1", ClusterPort: 2377, GossipPort: 7946,
		Status: api.NodeReady, Availability: api.AvailabilityActive, Labels: map[string]string{"a": "b"},
		Subnet: "10.42.1.0/24", Voter: true, CertSerial: "s1", CreatedAt: now, UpdatedAt: now, Version: 7}
	moved := *self
	moved.Resources, moved.UpdatedAt, moved.Version = api.Resources{NanoCPUs: 4e9}, now.Add(time.Hour), 0
	otherNode := moved
	otherNode.ID = them
	svc := api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Image: "busybox"}}
	status := func(id string) command.Command {
		return command.TaskStatus{NodeID: id, Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskRunning, IP: "10.42.9.9"}}}
	}
	same := func(c command.Command) (command.Command, command.Command) { return c, c }
	internal := func(c command.Command) authzCase {
		o, x := same(c)
		return authzCase{own: o, other: x, leader: true}
	}
	adminCase := func(c command.Command) authzCase {
		o, x := same(c)
		return authzCase{own: o, other: x, leader: true, admin: true}
	}
	cases := map[command.Type]authzCase{
		command.TypeBootstrapCluster: internal(command.BootstrapCluster{Node: *self}),
		command.TypeUpsertNode: {own: command.UpsertNode{Node: moved}, other: command.UpsertNode{Node: otherNode},
			leader: true, nodeOwn: true},
		command.TypeUpdateOwnNode: {own: command.UpdateOwnNode{Node: moved}, other: command.UpdateOwnNode{Node: otherNode},
			leader: true, nodeOwn: true},
		command.TypeUpdateNode:    adminCase(command.UpdateNode{ID: them, Update: api.NodeUpdate{Role: api.RoleWorker}}),
		command.TypeSetNodeStatus: internal(command.SetNodeStatus{Statuses: []command.NodeStatus{{ID: me, Status: api.NodeReady}}}),
		command.TypeSetNodeVoter:  internal(command.SetNodeVoter{ID: me, Voter: true}),
		command.TypeRemoveNode:    internal(command.RemoveNode{ID: them}),
		command.TypeRotateToken:   adminCase(command.RotateToken{SecretHash: "h"}),
		command.TypeSetGossipKeys: internal(command.SetGossipKeys{Keys: [][]byte{make([]byte, 32)}}),
		command.TypeCreateService: adminCase(command.CreateService{Service: svc}),
		command.TypeUpdateService: adminCase(command.UpdateService{Service: svc}),
		command.TypeDeleteService: adminCase(command.DeleteService{ID: "s1"}),
		command.TypeUpsertTasks:   internal(command.UpsertTasks{Tasks: []api.Task{{ID: "t1", NodeID: me}}}),
		command.TypeTaskStatus:    {own: status(me), other: status(them), leader: true, nodeOwn: true},
		command.TypeDeleteTasks:   internal(command.DeleteTasks{IDs: []string{"t1"}}),
		command.TypeUpsertImage: {own: command.UpsertImage{Image: api.Image{ID: "sha256:1", Nodes: []string{me}}},
			other: command.UpsertImage{Image: api.Image{ID: "sha256:1", Nodes: []string{me, them}}}, leader: true, nodeOwn: true},
		command.TypeSetImageNode: {own: command.SetImageNode{ImageID: "sha256:1", NodeID: me, Present: true},
			other: command.SetImageNode{ImageID: "sha256:1", NodeID: them}, leader: true, nodeOwn: true},
		command.TypeDeleteImage: internal(command.DeleteImage{ID: "sha256:1"}),
		command.TypeBatch: {own: command.Batch{Commands: []command.Command{status(me), command.SetImageNode{ImageID: "x", NodeID: me}}},
			other: command.Batch{Commands: []command.Command{status(me), command.UpsertTasks{}}}, leader: true, nodeOwn: true},
		command.TypeTrimTasks:        internal(command.TrimTasks{}),
		command.TypeRevokeCert:       internal(command.RevokeCert{Serial: "s2"}),
		command.TypeSetVoterTarget:   internal(command.SetVoterTarget{Target: 5}),
		command.TypeSetClusterEpoch:  internal(command.SetClusterEpoch{Epoch: 2}),
		command.TypeSealClusterKeys:  internal(command.SealClusterKeys{KEKID: "k"}),
		command.TypeRotateCA:         internal(command.RotateCA{ExpectFingerprint: "f"}),
		command.TypeFinishCARotation: internal(command.FinishCARotation{CAFingerprint: "f"}),
		command.TypeSetNodeCert:      internal(command.SetNodeCert{ID: me, Serial: "s9"}),
		// A node's renewal and its confirmation go through the renewal
		// RPCs; the leader proposes both.
		command.TypeStageNodeCert:    internal(command.StageNodeCert{ID: me, Serial: "s9", CAFingerprint: "f"}),
		command.TypeConfirmNodeCert:  internal(command.ConfirmNodeCert{ID: me, Serial: "s9"}),
		command.TypeRecordCertExpiry: internal(command.RecordCertExpiry{Serial: "s1", NotAfter: now.Add(1000 * time.Hour)}),
		command.TypeTrimRevoked:      internal(command.TrimRevoked{ExpiredBefore: now}),
		// Secrets and configs.
		command.TypeCreateSecret:  adminCase(command.CreateSecret{Secret: consensus.Secret{ID: "x", Name: "pw"}, Plaintext: []byte("pw")}),
		command.TypeDeleteSecret:  adminCase(command.DeleteSecret{ID: "x"}),
		command.TypeCreateConfig:  adminCase(command.CreateConfig{Config: consensus.ConfigObject{ID: "x", Name: "c"}}),
		command.TypeDeleteConfig:  adminCase(command.DeleteConfig{ID: "x"}),
		command.TypeCreateNetwork: adminCase(command.CreateNetwork{Network: api.Network{ID: "n1", Name: "front"}}),
		command.TypeDeleteNetwork: adminCase(command.DeleteNetwork{ID: "n1"}),
		// A `shoal run` container's share of an allocated-share network.
		command.TypeClaimNetworkShare: {own: command.ClaimNetworkShare{Network: "n1", NodeID: me},
			other: command.ClaimNetworkShare{Network: "n1", NodeID: them}, leader: true, nodeOwn: true},
		command.TypeSetRunAttachments: {own: command.SetRunAttachments{NodeID: me, Networks: map[string][]string{"n1": {"onback"}}},
			other: command.SetRunAttachments{NodeID: them, Networks: map[string][]string{"n1": {"onback"}}}, leader: true, nodeOwn: true},
	}
	// Every command type the log knows is in the table.
	for ty := 1; ty < 256; ty++ {
		if _, err := command.Decode([]byte{byte(ty), command.Version, '{', '}'}); err != nil {
			continue
		}
		if _, ok := cases[command.Type(ty)]; !ok {
			t.Errorf("command type %d has no row in the authorization table", ty)
		}
	}
	for ty, tc := range cases {
		if tc.own.Type() != ty || tc.other.Type() != ty {
			t.Fatalf("row %d holds commands of types %d and %d", ty, tc.own.Type(), tc.other.Type())
		}
		for _, k := range []struct {
			name  string
			c     Caller
			cmd   command.Command
			allow bool
		}{
			{"leader", Caller{Kind: Leader, NodeID: me}, tc.other, tc.leader},
			{"node, own objects", Caller{Kind: Node, NodeID: me, Member: true}, tc.own, tc.nodeOwn},
			{"node, others' objects", Caller{Kind: Node, NodeID: me, Member: true}, tc.other, tc.nodeOther},
			{"admin forward from a manager", Caller{Kind: Admin, NodeID: me, Member: true}, tc.other, tc.admin},
			{"admin forward from a worker", Caller{Kind: Admin, NodeID: me, Member: true, Worker: true}, tc.other, tc.adminWorker},
			// A certified peer the replica holds no record of (removed,
			// or not admitted) may propose nothing: it has no role.
			{"node without a record, own objects", Caller{Kind: Node, NodeID: me}, tc.own, false},
			{"admin forward from a node without a record", Caller{Kind: Admin, NodeID: me}, tc.other, false},
		} {
			t.Run(fmt.Sprintf("%s/%s", TypeName(tc.own), k.name), func(t *testing.T) {
				for _, cmd := range []command.Command{k.cmd, roundTrip(t, k.cmd)} {
					err := Authorize(k.c, cmd, self)
					if k.allow && err != nil {
						t.Fatalf("refused: %v", err)
					}
					if !k.allow {
						if err == nil {
							t.Fatal("allowed")
						}
						if !errors.Is(err, ErrForbidden) && !errors.Is(err, ErrWorker) {
							t.Fatalf("refusal %v wraps neither ErrForbidden nor ErrWorker", err)
						}
					}
				}
			})
		}
	}
}

// roundTrip returns cmd as the leader decodes it from the wire.
func roundTrip(t *testing.T, cmd command.Command) command.Command {
	t.Helper()
	enc, err := command.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	out, err := command.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAuthorizeOwnNodeRecord(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cur := api.Node{ID: "me", Hostname: "me", Addr: "10.0.0.1", ClusterPort: 2377, GossipPort: 7946,
		Status: api.NodeReady, Availability: api.AvailabilityActive, Labels: map[string]string{"zone": "a"},
		Subnet: "10.42.1.0/24", Voter: true, CertSerial: "s1", CreatedAt: now, UpdatedAt: now, Version: 7, Role: api.RoleWorker}
	tests := []struct {
		name   string
		change func(n *api.Node)
		refuse string // field named in the refusal, "" = allowed
	}{
		{"unchanged", func(n *api.Node) {}, ""},
		{"resources", func(n *api.Node) {
			n.Resources = api.Resources{NanoCPUs: 2e9, MemoryBytes: 1 << 30}
			n.UpdatedAt = now.Add(time.Minute)
		}, ""},
		// Fixed at admission: others act on them (a hostname that shadows
		// another node's short ID, an address others dial, ports reserved
		// cluster-wide).
		{"hostname", func(n *api.Node) { n.Hostname = "7f3a9c2b1d4e" }, "hostname"},
		{"address", func(n *api.Node) { n.Addr = "10.0.0.2" }, "addr"},
		{"cluster port", func(n *api.Node) { n.ClusterPort = 443 }, "cluster_port"},
		{"gossip port", func(n *api.Node) { n.GossipPort = 80 }, "gossip_port"},
		{"wireguard keys and their rotation", func(n *api.Node) {
			n.WireGuardKey, n.WireGuardKeyEpoch = "a2V5", 40
			n.WireGuardNextKey, n.WireGuardNextEpoch = "bmV4dA==", 57
		}, ""},
		{"version and manager status are derived", func(n *api.Node) { n.Version, n.ManagerStatus = 99, api.ManagerLeader }, ""},
		{"role", func(n *api.Node) { n.Role = api.RoleManager }, "role"},
		{"labels", func(n *api.Node) { n.Labels = map[string]string{"zone": "b"} }, "labels"},
		{"availability", func(n *api.Node) { n.Availability = api.AvailabilityDrain }, "availability"},
		{"status", func(n *api.Node) { n.Status = api.NodeDown }, "status"},
		{"subnet", func(n *api.Node) { n.Subnet = "10.42.2.0/24" }, "subnet"},
		{"voter", func(n *api.Node) { n.Voter = false }, "voter"},
		{"certificate serial", func(n *api.Node) { n.CertSerial = "s9" }, "cert_serial"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := cur
			next.Labels = map[string]string{"zone": "a"}
			tt.change(&next)
			err := Authorize(Caller{Kind: Node, NodeID: "me", Member: true}, &command.UpsertNode{Node: next}, &cur)
			if tt.refuse == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tt.refuse) {
				t.Fatalf("err = %v, want a refusal naming %s", err, tt.refuse)
			}
		})
	}
	if err := Authorize(Caller{Kind: Node, NodeID: "me", Member: true}, command.UpsertNode{Node: cur}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("upsert without a stored record: %v", err)
	}
	if err := Authorize(Caller{Kind: Node, Member: true}, command.TaskStatus{}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("node Caller without an ID: %v", err)
	}
	if err := Authorize(Caller{Kind: Node, NodeID: "me", Member: true}, nil, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("nil command: %v", err)
	}
}

func TestAdminOpCheck(t *testing.T) {
	for _, tt := range []struct {
		name string
		op   string
		c    Caller
		want error // nil: allowed
	}{
		{"remove from a worker", "remove", Caller{Kind: Admin, NodeID: "w", Member: true, Worker: true}, ErrWorker},
		{"leave from a worker", "leave", Caller{Kind: Admin, NodeID: "w", Member: true, Worker: true}, nil},
		{"remove from a manager", "remove", Caller{Kind: Admin, NodeID: "m", Member: true}, nil},
		// A certificate that outlived its node's record is nobody's admin.
		{"remove from a node without a record", "remove", Caller{Kind: Admin, NodeID: "gone"}, ErrForbidden},
		{"leave from a node without a record", "leave", Caller{Kind: Admin, NodeID: "gone"}, ErrForbidden},
	} {
		err := AdminOpCheck(tt.op, tt.c)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestRaftPeerAllowed(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	servers := []raftnode.Server{{ID: "a", Voter: true}, {ID: "b", Voter: true}, {ID: "c"}}
	tests := []struct {
		name        string
		servers     []raftnode.Server
		peer        string
		leader      bool
		joining     bool
		lastContact time.Time
		allow       bool
	}{
		{"voter", servers, "a", false, false, now, true},
		{"non-voter member to the leader", servers, "c", true, false, now, false},
		{"non-voter member to a follower with a live leader", servers, "c", false, false, now.Add(-time.Second), false},
		{"voter to the leader (a term it may have missed)", servers, "b", true, false, now, true},
		{"non-member to a follower with a live leader", servers, "x", false, false, now.Add(-time.Second), false},
		{"non-member to the leader", servers, "x", true, false, time.Time{}, false},
		{"joining node: empty configuration", nil, "x", false, false, time.Time{}, true},
		{"joining node: replica short of its admission, configuration from before the leader voted", servers, "x", false, true, now, true},
		{"a leader is never joining", servers, "x", true, true, time.Time{}, false},
		{"follower without a leader for long: configuration may be stale", servers, "x", false, false, now.Add(-time.Minute), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := RaftPeerAllowed(tt.servers, tt.peer, tt.leader, tt.joining, tt.lastContact, now)
			if (err == nil) != tt.allow {
				t.Fatalf("err = %v, want allowed %v", err, tt.allow)
			}
		})
	}
}

func TestCheckReservedPorts(t *testing.T) {
	nodes := []*api.Node{{Hostname: "h1", ClusterPort: 2377, GossipPort: 7946}, {Hostname: "h2", ClusterPort: 12377, GossipPort: 17946}}
	spec := func(ports ...int) api.ServiceSpec {
		s := api.ServiceSpec{Name: "web", Image: "busybox"}
		for _, p := range ports {
			s.Ports = append(s.Ports, api.PortConfig{Published: p, Target: 80, Protocol: "tcp"})
		}
		return s
	}
	for _, tt := range []struct {
		ports []int
		keep  []int
		bad   string
	}{
		{ports: []int{8080}},
		{ports: []int{2377}, bad: "2377"},
		{ports: []int{8080, 7946}, bad: "7946"},
		{ports: []int{4789}, bad: "4789"},
		{ports: []int{51820}, bad: "51820"},
		{ports: []int{12377}, bad: "cluster port of node h2"},
		{ports: []int{17946}, bad: "gossip port of node h2"},
		{ports: []int{2377, 8080}, keep: []int{2377}}, // stored before the rule: may still be scaled
	} {
		var keep []api.PortConfig
		for _, p := range tt.keep {
			keep = append(keep, api.PortConfig{Published: p})
		}
		err := CheckReservedPorts(spec(tt.ports...), ReservedPorts(nodes), keep)
		if tt.bad == "" {
			if err != nil {
				t.Errorf("ports %v: %v", tt.ports, err)
			}
			continue
		}
		if !errors.Is(err, ErrReservedPort) || !strings.Contains(err.Error(), tt.bad) {
			t.Errorf("ports %v: err = %v, want a reserved-port refusal naming %s", tt.ports, err, tt.bad)
		}
	}
	// On the leader the refusal is an invalid spec, which crosses RPC.
	if err := CheckSpecOnLeader(spec(2377), nil, nodes); !errors.Is(err, consensus.ErrInvalid) || !errors.Is(err, ErrReservedPort) {
		t.Fatalf("checkSpecOnLeader: %v", err)
	}
	if err := CheckSpecOnLeader(api.ServiceSpec{Name: "-bad-", Image: "x"}, nil, nodes); !errors.Is(err, consensus.ErrInvalid) {
		t.Fatalf("checkSpecOnLeader does not validate the spec: %v", err)
	}
}

func TestAuthorizeUpdateOwnNode(t *testing.T) {
	self := &api.Node{ID: "me"}
	me := Caller{Kind: Node, NodeID: "me", Member: true}
	if err := Authorize(me, &command.UpdateOwnNode{Node: api.Node{ID: "me", Role: api.RoleManager}}, self); err != nil {
		t.Fatalf("own report refused: %v", err)
	}
	if err := Authorize(me, command.UpdateOwnNode{Node: api.Node{ID: "them"}}, self); !errors.Is(err, ErrForbidden) {
		t.Fatalf("report about another node: %v", err)
	}
	if err := Authorize(me, command.UpdateOwnNode{Node: api.Node{ID: "me"}}, nil); !errors.Is(err, ErrForbidden) {
		t.Fatalf("report without a record: %v", err)
	}
}
