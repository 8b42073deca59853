package api

import (
	"slices"
	"testing"
)

// KeepPublished: a port resent without its published port keeps the one
// the stored spec has for the same target, protocol and mode; one given
// explicitly claims its own first; what matches nothing stays 0 (new).
func TestKeepPublished(t *testing.T) {
	p := func(pub, tgt int, proto string) PortConfig {
		return PortConfig{Published: pub, Target: tgt, Protocol: proto}
	}
	host := func(pc PortConfig) PortConfig { pc.Mode = PublishHost; return pc }
	for _, tc := range []struct {
		name     string
		old, new []PortConfig
		want     []PortConfig
	}{
		{"create: nothing to keep", nil, []PortConfig{p(0, 80, "tcp")}, []PortConfig{p(0, 80, "tcp")}},
		{"update keeps the chosen port", []PortConfig{p(30000, 80, "tcp")}, []PortConfig{p(0, 80, "tcp")}, []PortConfig{p(30000, 80, "tcp")}},
		{"empty protocol is tcp", []PortConfig{p(30000, 80, "")}, []PortConfig{p(0, 80, "tcp")}, []PortConfig{p(30000, 80, "tcp")}},
		{"ingress is empty mode", []PortConfig{{Published: 30000, Target: 80, Mode: PublishIngress}}, []PortConfig{p(0, 80, "")}, []PortConfig{p(30000, 80, "")}},
		{"other target: new", []PortConfig{p(30000, 80, "tcp")}, []PortConfig{p(0, 81, "tcp")}, []PortConfig{p(0, 81, "tcp")}},
		{"other protocol: new", []PortConfig{p(30000, 80, "tcp")}, []PortConfig{p(0, 80, "udp")}, []PortConfig{p(0, 80, "udp")}},
		{"other mode: new", []PortConfig{p(30000, 80, "tcp")}, []PortConfig{host(p(0, 80, "tcp"))}, []PortConfig{host(p(0, 80, "tcp"))}},
		{"host mode kept", []PortConfig{host(p(30000, 80, "tcp"))}, []PortConfig{host(p(0, 80, "tcp"))}, []PortConfig{host(p(30000, 80, "tcp"))}},
		{"a given port stays given", []PortConfig{p(30000, 80, "tcp")}, []PortConfig{p(8080, 80, "tcp")}, []PortConfig{p(8080, 80, "tcp")}},
		{"an explicit port the user gave is kept too (as Swarm)", []PortConfig{p(8080, 80, "tcp")}, []PortConfig{p(0, 80, "tcp")}, []PortConfig{p(8080, 80, "tcp")}},
		{"a given port claims its own first", []PortConfig{p(30000, 80, "tcp"), p(30001, 80, "tcp")},
			[]PortConfig{p(0, 80, "tcp"), p(30000, 80, "tcp")}, []PortConfig{p(30001, 80, "tcp"), p(30000, 80, "tcp")}},
		{"each old port kept once", []PortConfig{p(30000, 80, "tcp")},
			[]PortConfig{p(0, 80, "tcp"), p(0, 80, "tcp")}, []PortConfig{p(30000, 80, "tcp"), p(0, 80, "tcp")}},
		{"removed port not kept", []PortConfig{p(30000, 80, "tcp"), p(30001, 81, "tcp")},
			[]PortConfig{p(0, 81, "tcp")}, []PortConfig{p(30001, 81, "tcp")}},
		{"no ports", []PortConfig{p(30000, 80, "tcp")}, nil, nil},
	} {
		in := slices.Clone(tc.new)
		got := KeepPublished(tc.old, tc.new)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		if !slices.Equal(tc.new, in) {
			t.Errorf("%s: KeepPublished modified its input", tc.name)
		}
	}
}
