package servicespec

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestValidateEndpoint: endpoint modes and network aliases, each bad input
// refused with an error naming the field.
func TestValidateEndpoint(t *testing.T) {
	good := func() api.ServiceSpec {
		return api.ServiceSpec{Name: "web", Image: "nginx", Networks: []string{"front", "back"}}
	}
	cases := []struct {
		name   string
		mutate func(*api.ServiceSpec)
		want   string // substring of the error; "" = valid
	}{
		{"default vip", func(*api.ServiceSpec) {}, ""},
		{"vip", func(s *api.ServiceSpec) { s.EndpointMode = api.EndpointVIP }, ""},
		{"dnsrr", func(s *api.ServiceSpec) { s.EndpointMode = api.EndpointDNSRR }, ""},
		{"unknown mode", func(s *api.ServiceSpec) { s.EndpointMode = "rr" }, `endpoint_mode "rr": want vip or dnsrr`},
		{"upper case mode", func(s *api.ServiceSpec) { s.EndpointMode = "DNSRR" }, `endpoint_mode "DNSRR"`},
		{"dnsrr with a mesh port", func(s *api.ServiceSpec) {
			s.EndpointMode = api.EndpointDNSRR
			s.Ports = []api.PortConfig{{Published: 8080, Target: 80}}
		}, "ports[0] 8080:80: port published with ingress mode can't be used with dnsrr mode"},
		{"dnsrr with a port the cluster picks", func(s *api.ServiceSpec) {
			s.EndpointMode = api.EndpointDNSRR
			s.Ports = []api.PortConfig{{Target: 80}}
		}, "ports[0] 80: port published with ingress mode"},
		{"dnsrr with an ingress port", func(s *api.ServiceSpec) {
			s.EndpointMode = api.EndpointDNSRR
			s.Ports = []api.PortConfig{{Published: 53, Target: 53, Protocol: "udp", Mode: api.PublishIngress}}
		}, "port published with ingress mode can't be used with dnsrr mode"},
		{"dnsrr with a host port", func(s *api.ServiceSpec) {
			s.EndpointMode = api.EndpointDNSRR
			s.Ports = []api.PortConfig{{Published: 8080, Target: 80, Mode: api.PublishHost}}
		}, ""},
		{"vip with a mesh port", func(s *api.ServiceSpec) { s.Ports = []api.PortConfig{{Published: 8080, Target: 80}} }, ""},
		{"aliases", func(s *api.ServiceSpec) {
			s.NetworkAliases = map[string][]string{"back": {"www", "api_1"}, "front": {"edge"}}
		}, ""},
		{"aliases under dnsrr", func(s *api.ServiceSpec) {
			s.EndpointMode = api.EndpointDNSRR
			s.NetworkAliases = map[string][]string{"back": {"www"}}
		}, ""},
		{"alias on a network the service is not on", func(s *api.ServiceSpec) {
			s.NetworkAliases = map[string][]string{"side": {"www"}}
		}, "network_aliases[side]: the service is not on network side (it is on front, back)"},
		{"alias on the default network of a service without networks", func(s *api.ServiceSpec) {
			s.Networks = nil
			s.NetworkAliases = map[string][]string{api.DefaultNetwork: {"www"}}
		}, ""},
		{"dotted alias", func(s *api.ServiceSpec) { s.NetworkAliases = map[string][]string{"back": {"www.example"}} },
			`network_aliases[back][0] "www.example": character '.' not allowed (a network alias name is a DNS label`},
		{"empty alias", func(s *api.ServiceSpec) { s.NetworkAliases = map[string][]string{"back": {""}} },
			`network_aliases[back][0] "": must not be empty`},
		{"alias twice in any case", func(s *api.ServiceSpec) { s.NetworkAliases = map[string][]string{"back": {"www", "WWW"}} },
			`network_aliases[back][1] "WWW": listed twice`},
		{"one alias on two networks", func(s *api.ServiceSpec) {
			s.NetworkAliases = map[string][]string{"back": {"www"}, "front": {"www"}}
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := good()
			c.mutate(&s)
			err := Validate(s)
			if c.want == "" {
				if err != nil {
					t.Fatalf("valid spec refused: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestDefaultsEndpointMode: vip, the default, has one spelling, so a spec
// that says it compares equal to one that does not; dnsrr is kept.
func TestDefaultsEndpointMode(t *testing.T) {
	for _, c := range []struct{ in, want string }{{"", ""}, {api.EndpointVIP, ""}, {api.EndpointDNSRR, api.EndpointDNSRR}} {
		if got := Defaults(api.ServiceSpec{EndpointMode: c.in}).EndpointMode; got != c.want {
			t.Errorf("Defaults(endpoint_mode %q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestMaterialEqualEndpoint: neither the endpoint mode nor the aliases are
// in a task's container (the VIP is a load balancer rule, names are the
// embedded DNS's), so changing them rolls no task.
func TestMaterialEqualEndpoint(t *testing.T) {
	a := api.ServiceSpec{Name: "web", Image: "nginx", Networks: []string{"back"}}
	b := a
	b.EndpointMode = api.EndpointDNSRR
	b.NetworkAliases = map[string][]string{"back": {"www"}}
	if !MaterialEqual(&a, &b) {
		t.Fatal("an endpoint mode or alias change would roll the tasks")
	}
}
