package specflags

import (
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestEndpointFlags: --endpoint-mode and the long form of --network and
// --network-add (aliases per network), on create and update.
func TestEndpointFlags(t *testing.T) {
	tests := []struct {
		name   string
		update bool
		from   func(*api.ServiceSpec)
		args   []string
		want   func(*api.ServiceSpec)
		err    string
	}{
		{name: "dnsrr", args: []string{"--endpoint-mode", "dnsrr"}, want: func(s *api.ServiceSpec) { s.EndpointMode = api.EndpointDNSRR }},
		{name: "vip is the default's spelling", args: []string{"--endpoint-mode", "VIP"}, want: func(*api.ServiceSpec) {}},
		{name: "bad mode", args: []string{"--endpoint-mode", "rr"}, err: `invalid --endpoint-mode "rr": want vip or dnsrr`},
		{name: "update to vip", update: true, from: func(s *api.ServiceSpec) { s.EndpointMode = api.EndpointDNSRR },
			args: []string{"--endpoint-mode", "vip"}, want: func(s *api.ServiceSpec) { s.EndpointMode = "" }},
		{name: "update leaves the mode alone", update: true, from: func(s *api.ServiceSpec) { s.EndpointMode = api.EndpointDNSRR },
			args: []string{"--replicas", "2"}, want: func(s *api.ServiceSpec) { s.EndpointMode = api.EndpointDNSRR; s.Replicas = 2 }},
		{name: "short form", args: []string{"--network", "back"}, want: func(s *api.ServiceSpec) { s.Networks = []string{"back"} }},
		{name: "long form with aliases", args: []string{"--network", "name=back,alias=www,alias=api", "--network", "front"},
			want: func(s *api.ServiceSpec) {
				s.Networks = []string{"back", "front"}
				s.NetworkAliases = map[string][]string{"back": {"www", "api"}}
			}},
		{name: "long form without alias", args: []string{"--network", "name=back"}, want: func(s *api.ServiceSpec) { s.Networks = []string{"back"} }},
		{name: "network twice", args: []string{"--network", "back", "--network", "name=back,alias=x"}, err: "network back given twice"},
		{name: "empty network", args: []string{"--network", ""}, err: `--network: "": want NAME or name=NAME,alias=ALIAS`},
		{name: "dotted alias", args: []string{"--network", "name=back,alias=www.x"}, err: `--network: "name=back,alias=www.x": alias "www.x": character '.' not allowed`},
		{name: "alias twice", args: []string{"--network", "name=back,alias=www,alias=WWW"}, err: `alias "WWW" given twice`},
		{name: "unknown key", args: []string{"--network", "name=back,driver-opt=x"}, err: `unknown key "driver-opt" (want name, alias)`},
		{name: "no name", args: []string{"--network", "alias=www"}, err: "no name="},
		{name: "empty value", args: []string{"--network", "name=back,alias="}, err: `"alias=" needs a value`},
		{name: "network-add with aliases", update: true, args: []string{"--network-add", "name=back,alias=www"},
			want: func(s *api.ServiceSpec) {
				s.Networks = []string{"default", "back"}
				s.NetworkAliases = map[string][]string{"back": {"www"}}
			}},
		{name: "network-add long form sets the aliases of a network it is on", update: true,
			from: func(s *api.ServiceSpec) {
				s.Networks = []string{"back"}
				s.NetworkAliases = map[string][]string{"back": {"old"}}
			},
			args: []string{"--network-add", "name=back,alias=new"},
			want: func(s *api.ServiceSpec) {
				s.Networks = []string{"back"}
				s.NetworkAliases = map[string][]string{"back": {"new"}}
			}},
		{name: "network-add short form keeps them", update: true,
			from: func(s *api.ServiceSpec) {
				s.Networks = []string{"back"}
				s.NetworkAliases = map[string][]string{"back": {"old"}}
			},
			args: []string{"--network-add", "back"},
			want: func(s *api.ServiceSpec) {
				s.Networks = []string{"back"}
				s.NetworkAliases = map[string][]string{"back": {"old"}}
			}},
		{name: "network-add long form without alias drops them", update: true,
			from: func(s *api.ServiceSpec) {
				s.Networks = []string{"back"}
				s.NetworkAliases = map[string][]string{"back": {"old"}}
			},
			args: []string{"--network-add", "name=back"},
			want: func(s *api.ServiceSpec) { s.Networks, s.NetworkAliases = []string{"back"}, nil }},
		{name: "network-rm drops the network's aliases", update: true,
			from: func(s *api.ServiceSpec) {
				s.Networks = []string{"back", "front"}
				s.NetworkAliases = map[string][]string{"back": {"www"}, "front": {"edge"}}
			},
			args: []string{"--network-rm", "back"},
			want: func(s *api.ServiceSpec) {
				s.Networks = []string{"front"}
				s.NetworkAliases = map[string][]string{"front": {"edge"}}
			}},
		// A service left on no network is on the default one: leaving
		// the default one alone changed nothing, and said done.
		{name: "network-rm of the default network alone", update: true,
			args: []string{"--network-rm", "default"}, err: "invalid --network-rm default: a service on no other network stays on the default network"},
		{name: "network-rm of the default network, put back", update: true,
			from: func(s *api.ServiceSpec) { s.Networks = []string{"default", "back"} },
			args: []string{"--network-rm", "default", "--network-rm", "back", "--network-add", "default"},
			err:  "invalid --network-rm default"},
		{name: "network-rm of the default network, onto another", update: true,
			args: []string{"--network-rm", "default", "--network-add", "back"},
			want: func(s *api.ServiceSpec) { s.Networks = []string{"back"} }},
		{name: "network-rm of the last other network goes back to default", update: true,
			from: func(s *api.ServiceSpec) { s.Networks = []string{"back"} },
			args: []string{"--network-rm", "back"},
			want: func(s *api.ServiceSpec) { s.Networks = []string{} }},
		{name: "bad network-add", update: true, args: []string{"--network-add", "name=back,alias=-x"}, err: `--network-add: "name=back,alias=-x": alias "-x": must start with a letter or digit`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := api.ServiceSpec{Name: "web", Image: "x"}
			if tt.from != nil {
				tt.from(&from)
			}
			orig := from
			orig.NetworkAliases = map[string][]string{}
			for k, v := range from.NetworkAliases {
				orig.NetworkAliases[k] = v
			}
			got, err := applyArgs(t, tt.update, from, tt.args...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := api.ServiceSpec{Name: "web", Image: "x"}
			if tt.from != nil {
				tt.from(&want)
			}
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("spec\n got %+v\nwant %+v", got, want)
			}
			if len(orig.NetworkAliases) > 0 && !reflect.DeepEqual(from.NetworkAliases, orig.NetworkAliases) {
				t.Fatalf("the spec updated from was changed: %v", from.NetworkAliases)
			}
		})
	}
}
