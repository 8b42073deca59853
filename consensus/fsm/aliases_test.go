package fsm

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// TestServiceEndpointModeVIPs: a dnsrr service holds no VIP on any
// network; switching to dnsrr releases them, switching back allocates.
func TestServiceEndpointModeVIPs(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(netCmd("nb", "back", "10.51.0.0/16"))
	rr := func(id, name string, nets ...string) api.Service {
		return api.Service{ID: id, Name: name, Spec: api.ServiceSpec{Name: name, Replicas: 1, Networks: nets, EndpointMode: api.EndpointDNSRR}}
	}
	plain := h.must(command.CreateService{Service: rr("s0", "plain")}).(*api.Service)
	if plain.VIP != "" || len(plain.VIPs) != 0 {
		t.Fatalf("dnsrr on the default network: VIP %q VIPs %v", plain.VIP, plain.VIPs)
	}
	both := h.must(command.CreateService{Service: rr("s1", "both", "default", "back")}).(*api.Service)
	if both.VIP != "" || len(both.VIPs) != 0 {
		t.Fatalf("dnsrr on two networks: VIP %q VIPs %v", both.VIP, both.VIPs)
	}
	if r := h.apply(command.CreateService{Service: rr("s2", "x", "nowhere")}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("dnsrr on an unknown network: %v", r.Err)
	}

	// dnsrr → vip allocates on every network.
	next := *both
	next.Spec.EndpointMode = ""
	up := h.must(command.UpdateService{Service: next}).(*api.Service)
	if up.VIP == "" || up.VIPs["default"] != up.VIP || up.VIPs["back"] != "10.51.128.1" || len(up.VIPs) != 2 {
		t.Fatalf("switched to vip: VIP %q VIPs %v", up.VIP, up.VIPs)
	}
	// vip → dnsrr releases them: a new service may take them.
	next = *up
	next.Spec.EndpointMode = api.EndpointDNSRR
	down := h.must(command.UpdateService{Service: next}).(*api.Service)
	if down.VIP != "" || len(down.VIPs) != 0 {
		t.Fatalf("switched to dnsrr: VIP %q VIPs %v", down.VIP, down.VIPs)
	}
	other := h.must(command.CreateService{Service: api.Service{ID: "s3", Name: "other",
		Spec: api.ServiceSpec{Name: "other", Replicas: 1, Networks: []string{"back"}}}}).(*api.Service)
	if !maps.Equal(other.VIPs, map[string]string{"back": "10.51.128.1"}) {
		t.Fatalf("the released VIP on back was not free: %v", other.VIPs)
	}
}

// TestServiceAliasClash: an alias that would answer for two services on
// one network is refused, whichever service came first and whichever of
// the two names is the alias; on another network it is fine.
func TestServiceAliasClash(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(netCmd("na", "front", "10.50.0.0/16"))
	h.must(netCmd("nb", "back", "10.51.0.0/16"))
	svc := func(id, name string, aliases map[string][]string, nets ...string) api.Service {
		return api.Service{ID: id, Name: name, Spec: api.ServiceSpec{Name: name, Replicas: 1, Networks: nets, NetworkAliases: aliases}}
	}
	h.must(command.CreateService{Service: svc("s0", "web", map[string][]string{"back": {"www", "web"}}, "back")})
	h.must(command.CreateService{Service: svc("s1", "db", nil, "back", "front")})
	cases := []struct {
		name string
		svc  api.Service
		msg  string // "" = accepted
	}{
		{"alias of another service", svc("s2", "api", map[string][]string{"back": {"www"}}, "back"),
			"alias www of service api on network back: the name is taken there by alias www of service web"},
		{"alias in another case", svc("s2", "api", map[string][]string{"back": {"WWW"}}, "back"),
			"alias WWW of service api on network back: the name is taken there by alias www of service web"},
		{"alias is another service's name", svc("s2", "api", map[string][]string{"front": {"db"}}, "front"),
			"alias db of service api on network front: the name is taken there by service db"},
		{"name is another service's alias", svc("s2", "www", nil, "back"),
			"service www on network back: the name is taken there by alias www of service web"},
		{"same alias on another network", svc("s2", "api", map[string][]string{"front": {"www"}}, "front"), ""},
		{"another service's name off its networks", svc("s3", "api2", map[string][]string{"default": {"db"}}), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.store.Services())
			r := h.apply(command.CreateService{Service: tc.svc})
			if tc.msg == "" {
				if r.Err != nil {
					t.Fatalf("refused: %v", r.Err)
				}
				return
			}
			if !errors.Is(r.Err, consensus.ErrNameTaken) || !strings.Contains(r.Err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrNameTaken containing %q", r.Err, tc.msg)
			}
			if after := len(h.store.Services()); after != before {
				t.Fatalf("a refused create changed the table: %d → %d services", before, after)
			}
		})
	}

	// Updates: joining a network where the service's name is an alias,
	// or adding a clashing alias, is refused and changes nothing.
	get := func(id string) *api.Service {
		s, err := h.store.Service(id)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	db := *get("s1")
	db.Spec.NetworkAliases = map[string][]string{"back": {"www"}}
	if r := h.apply(command.UpdateService{Service: db}); !errors.Is(r.Err, consensus.ErrNameTaken) {
		t.Fatalf("update adding a clashing alias: %v", r.Err)
	}
	if got := get("s1"); got.Spec.NetworkAliases != nil {
		t.Fatalf("a refused update changed the service: %v", got.Spec.NetworkAliases)
	}
	// Keeping its own alias while changing something else is fine.
	web := *get("s0")
	web.Spec.Replicas = 3
	h.must(command.UpdateService{Service: web})
}
