package servicespec

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestMaterialEqualNetworks: a change of networks replaces the tasks (their
// interfaces are made when they start); naming the default network is the
// same as naming none.
func TestMaterialEqualNetworks(t *testing.T) {
	base := api.ServiceSpec{Image: "bb:1"}
	with := func(nets ...string) *api.ServiceSpec { s := base; s.Networks = nets; return &s }
	cases := []struct {
		a, b *api.ServiceSpec
		want bool
	}{
		{with(), with(), true},
		{with(), with(api.DefaultNetwork), true},
		{with(), with("front"), false},
		{with("front", "back"), with("back", "front"), false},
		{with("front"), with("front"), true},
	}
	for _, tc := range cases {
		if got := MaterialEqual(tc.a, tc.b); got != tc.want {
			t.Errorf("%v vs %v: %v, want %v", tc.a.Networks, tc.b.Networks, got, tc.want)
		}
	}
}
