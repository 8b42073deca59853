package service

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestInspectViewEndpoint: inspect spells the endpoint mode out (vip, the
// default, is stored empty), shows a dnsrr service without VIPs and the
// aliases per network.
func TestInspectViewEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   api.Service
		want []string
	}{
		{"vip by default", api.Service{Name: "web", VIP: "10.43.0.2", VIPs: map[string]string{"default": "10.43.0.2"}},
			[]string{`"vips":{"default":"10.43.0.2"}`, `"endpoint_mode":"vip"`}},
		{"dnsrr", api.Service{Name: "rr", Spec: api.ServiceSpec{EndpointMode: api.EndpointDNSRR}},
			[]string{`"vip":""`, `"vips":{}`, `"endpoint_mode":"dnsrr"`}},
		{"aliases", api.Service{Name: "web", Spec: api.ServiceSpec{Networks: []string{"back"}, NetworkAliases: map[string][]string{"back": {"www"}}}},
			[]string{`"network_aliases":{"back":["www"]}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(inspectView(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("inspect %s\nlacks %s", b, w)
				}
			}
		})
	}
}
