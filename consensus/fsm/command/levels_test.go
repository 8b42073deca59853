package command

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// Every type the decoder knows has a since-level, no level is above this
// binary's, and ProtocolLevel is reached by some type (raise it together
// with the first type of a new level).
func TestCommandSinceTable(t *testing.T) {
	top := 0
	for typ := range decoders {
		lvl, ok := commandSince[typ]
		if !ok {
			t.Errorf("command type %d has no entry in commandSince: give it the level that introduces it (raise ProtocolLevel)", typ)
			continue
		}
		if lvl < BaseProtocolLevel || lvl > ProtocolLevel {
			t.Errorf("command type %d: since level %d outside %d..%d", typ, lvl, BaseProtocolLevel, ProtocolLevel)
		}
		top = max(top, lvl)
	}
	for typ := range commandSince {
		if _, ok := decoders[typ]; !ok {
			t.Errorf("commandSince lists type %d, which does not decode", typ)
		}
	}
	for _, lvl := range bodySince {
		top = max(top, lvl)
	}
	for _, lvl := range behaviourSince {
		top = max(top, lvl)
	}
	if top != ProtocolLevel {
		t.Errorf("ProtocolLevel is %d but the newest type, field or behaviour is of level %d", ProtocolLevel, top)
	}
}

// TestSinceLevelServiceFields: a service command that sets the endpoint
// mode or network aliases needs EndpointLevel (an older state machine
// would allocate VIPs and skip alias checks), in a batch too; one that
// does not keeps its type's level.
func TestSinceLevelServiceFields(t *testing.T) {
	rr := api.Service{Spec: api.ServiceSpec{EndpointMode: api.EndpointDNSRR}}
	aliased := api.Service{Spec: api.ServiceSpec{NetworkAliases: map[string][]string{"back": {"www"}}}}
	for _, tc := range []struct {
		name string
		cmd  Command
		want int
	}{
		{"plain create", CreateService{}, BaseProtocolLevel},
		{"plain update", &UpdateService{}, BaseProtocolLevel},
		{"dnsrr create", CreateService{Service: rr}, EndpointLevel},
		{"dnsrr update", &UpdateService{Service: rr}, EndpointLevel},
		{"aliases update", UpdateService{Service: aliased}, EndpointLevel},
		{"aliases create by pointer", &CreateService{Service: aliased}, EndpointLevel},
		{"in a batch", Batch{Commands: []Command{TrimTasks{}, CreateService{Service: rr}}}, EndpointLevel},
		{"log options", CreateService{Service: api.Service{Spec: api.ServiceSpec{LogOptions: map[string]string{"max-size": "8k"}}}}, LoggingLevel},
		{"log driver", &UpdateService{Service: api.Service{Spec: api.ServiceSpec{LogDriver: "none"}}}, LoggingLevel},
		{"max per node", CreateService{Service: api.Service{Spec: api.ServiceSpec{MaxReplicasPerNode: 1}}}, PlacementLevel},
		// A rollback's spec rides along in PreviousSpec: an older replica
		// would store it without the fields, and should it lead, roll back
		// to a spec without them.
		{"previous spec with log driver", &UpdateService{Service: api.Service{PreviousSpec: &api.ServiceSpec{LogDriver: "none"}}}, LoggingLevel},
		{"previous spec dnsrr", UpdateService{Service: api.Service{PreviousSpec: &rr.Spec}}, EndpointLevel},
		{"previous spec spread", CreateService{Service: api.Service{PreviousSpec: &api.ServiceSpec{PlacementPreferences: []api.PlacementPreference{{Spread: "node.labels.zone"}}}}}, PlacementLevel},
		{"spread", &UpdateService{Service: api.Service{Spec: api.ServiceSpec{PlacementPreferences: []api.PlacementPreference{{Spread: "node.labels.zone"}}}}}, PlacementLevel},
		// Jobs: an older replica would plan a mode it does not know.
		{"replicated-job create", CreateService{Service: api.Service{Spec: api.ServiceSpec{Mode: api.ModeReplicatedJob}}}, JobLevel},
		{"global-job update", &UpdateService{Service: api.Service{Spec: api.ServiceSpec{Mode: api.ModeGlobalJob}}}, JobLevel},
		{"max concurrent", UpdateService{Service: api.Service{Spec: api.ServiceSpec{Mode: api.ModeReplicatedJob, MaxConcurrent: 2}}}, JobLevel},
		{"previous spec a job", UpdateService{Service: api.Service{PreviousSpec: &api.ServiceSpec{Mode: api.ModeReplicatedJob}}}, JobLevel},
		{"job in a batch", Batch{Commands: []Command{TrimTasks{}, &CreateService{Service: api.Service{Spec: api.ServiceSpec{Mode: api.ModeGlobalJob}}}}}, JobLevel},
		{"replicated stays base", CreateService{Service: api.Service{Spec: api.ServiceSpec{Mode: api.ModeReplicated, Replicas: 3}}}, BaseProtocolLevel},
	} {
		if got := SinceLevel(tc.cmd); got != tc.want {
			t.Errorf("%s: level %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestSinceLevel(t *testing.T) {
	if got := SinceLevel(RotateToken{}); got != commandSince[TypeRotateToken] {
		t.Fatalf("RotateToken level %d", got)
	}
	b := Batch{Commands: []Command{TrimTasks{}, &DeleteTasks{}}}
	if got := SinceLevel(b); got != BaseProtocolLevel {
		t.Fatalf("batch level %d", got)
	}
	if got := SinceLevel(&b); got != BaseProtocolLevel {
		t.Fatalf("*batch level %d", got)
	}
	if got := SinceLevel(unlistedCommand{}); got != ProtocolLevel {
		t.Fatalf("a type missing from the table must count as the newest level, got %d", got)
	}
}

// unlistedCommand is a command type that commandSince does not list.
type unlistedCommand struct{}

func (unlistedCommand) Type() Type { return 250 }
func (unlistedCommand) isCommand() {}

func TestCheckLevel(t *testing.T) {
	cur := PeerLevel{ID: "n1", Level: 2, Version: "v1.1.0", Known: true}
	old := PeerLevel{ID: "n2aaaaaaaaaaaaaaaaaa", Level: 1, Version: "v1.0.0", Known: true}
	silent := PeerLevel{ID: "n3", Known: true} // a release before levels were gossiped
	unknown := PeerLevel{ID: "n4", Level: 9}   // gossip never reported it
	for _, tc := range []struct {
		name  string
		need  int
		peers []PeerLevel
		bad   []string // substrings of the refusal; nil = accepted
	}{
		{"base level always passes", 1, []PeerLevel{cur, old, silent, unknown}, nil},
		{"all upgraded", 2, []PeerLevel{cur, {ID: "n5", Level: 3, Known: true}}, nil},
		{"one old voter", 2, []PeerLevel{cur, old}, []string{"n2aaaaaaaaaa (v1.0.0, level 1)", "needs protocol level 2"}},
		{"no level advertised counts as base", 2, []PeerLevel{cur, silent}, []string{"n3 (unknown release, level 1)"}},
		{"never seen counts as base", 2, []PeerLevel{cur, unknown}, []string{"n4 (unknown release, level 1)"}},
		{"names every node behind", 3, []PeerLevel{cur, old}, []string{"n1 (v1.1.0, level 2), n2aaaaaaaaaa"}},
		{"no peers", 5, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLevel(TypeRotateToken, tc.need, tc.peers)
			if tc.bad == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			for _, s := range tc.bad {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

// TestAutoPortLevel: a service write with a port left at 0 (the leader
// picks it) needs AutoPortLevel, whatever its form; one whose ports are
// all given keeps its type's level, so a cluster mid-upgrade still
// creates and updates those.
func TestAutoPortLevel(t *testing.T) {
	auto := api.Service{Spec: api.ServiceSpec{Ports: []api.PortConfig{{Published: 8080, Target: 80}, {Target: 53, Protocol: "udp"}}}}
	given := api.Service{Spec: api.ServiceSpec{Ports: []api.PortConfig{{Published: 8080, Target: 80}}}}
	none := api.Service{}
	for _, tc := range []struct {
		name string
		cmd  Command
		want int
	}{
		{"create value", CreateService{Service: auto}, AutoPortLevel},
		{"create pointer", &CreateService{Service: auto}, AutoPortLevel},
		{"update value", UpdateService{Service: auto}, AutoPortLevel},
		{"update pointer", &UpdateService{Service: auto}, AutoPortLevel},
		{"in a batch", Batch{Commands: []Command{TrimTasks{}, UpdateService{Service: auto}}}, AutoPortLevel},
		{"create, ports given", CreateService{Service: given}, commandSince[TypeCreateService]},
		{"update, ports given", &UpdateService{Service: given}, commandSince[TypeUpdateService]},
		{"no ports", CreateService{Service: none}, commandSince[TypeCreateService]},
	} {
		if got := SinceLevel(tc.cmd); got != tc.want {
			t.Errorf("%s: level %d, want %d", tc.name, got, tc.want)
		}
	}
	old := PeerLevel{ID: "n2", Level: AutoPortLevel - 1, Version: "v1.2.0", Known: true}
	if err := CheckPeers(CreateService{Service: auto}, []PeerLevel{old}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("an older member must hold back an auto port: %v", err)
	}
	if err := CheckPeers(CreateService{Service: given}, []PeerLevel{old}); err != nil {
		t.Fatalf("given ports need no upgrade: %v", err)
	}
}

// TestSinceLevelNetworkShares: a network with allocated shares needs
// SharesLevel (an older state machine refuses the subnet as too small and
// assigns no shares), in a batch too; a large network keeps level 1, and
// ClaimNetworkShare is of SharesLevel.
func TestSinceLevelNetworkShares(t *testing.T) {
	small := api.Network{ID: "n", Name: "small", Subnet: "172.28.0.0/24", ShareBits: api.AllocatedShareBits}
	large := api.Network{ID: "n", Name: "large", Subnet: "10.50.0.0/16"}
	for _, tc := range []struct {
		name string
		cmd  Command
		want int
	}{
		{"large", CreateNetwork{Network: large}, BaseProtocolLevel},
		{"small", CreateNetwork{Network: small}, SharesLevel},
		{"small by pointer", &CreateNetwork{Network: small}, SharesLevel},
		{"small in a batch", Batch{Commands: []Command{DeleteTasks{}, CreateNetwork{Network: small}}}, SharesLevel},
		{"claim", ClaimNetworkShare{Network: "n", NodeID: "x"}, SharesLevel},
		// Now is stored by VoterTimeLevel's state machine only.
		{"voter without a time", SetNodeVoter{ID: "x", Voter: true}, BaseProtocolLevel},
		{"voter with a time", SetNodeVoter{ID: "x", Voter: true, Now: time.Unix(1, 0)}, VoterTimeLevel},
		{"voter with a time by pointer", &SetNodeVoter{ID: "x", Now: time.Unix(1, 0)}, VoterTimeLevel},
	} {
		if got := SinceLevel(tc.cmd); got != tc.want {
			t.Errorf("%s: SinceLevel %d, want %d", tc.name, got, tc.want)
		}
	}
}
