package consensus

import (
	"errors"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestResolveNetworkCase: a network name is unique regardless of case (the
// state machine refuses "Back" beside "back"), so a reference that differs
// only in case resolves to it; `--network FRONT` answered "not found".
func TestResolveNetworkCase(t *testing.T) {
	s := NewStore()
	putCluster(t, s, 1, &ClusterState{ClusterID: "c", ClusterCIDR: "10.42.0.0/16", VIPCIDR: "10.43.0.0/16"})
	w := s.BeginWrite(2)
	for _, n := range []*api.Network{
		{ID: "abc123", Name: "front", Subnet: "10.50.0.0/16"},
		{ID: "def456", Name: "Back_end-1", Subnet: "10.51.0.0/16"},
	} {
		if err := w.Insert(TableNetworks, n); err != nil {
			w.Abort()
			t.Fatal(err)
		}
	}
	w.Commit()
	s.Applied(2)
	for _, tc := range []struct {
		ref, want string // want "" = not found
	}{
		{"front", "front"},
		{"FRONT", "front"},
		{"Front", "front"},
		{"back_end-1", "Back_end-1"},
		{"BACK_END-1", "Back_end-1"},
		{"DEFAULT", api.DefaultNetwork},
		{"abc", "front"},   // ID prefix
		{"DEF456", ""},     // IDs are not folded
		{"fron", ""},       // names are not prefixes
		{"front ", ""},     // nor trimmed
		{"back-end-1", ""}, // nor otherwise loosened
	} {
		n, err := s.ResolveNetwork(tc.ref)
		switch {
		case tc.want == "" && !errors.Is(err, ErrNotFound):
			t.Errorf("%q: got %v, %v; want not found", tc.ref, n, err)
		case tc.want != "" && (err != nil || n.Name != tc.want):
			t.Errorf("%q: got %v, %v; want %s", tc.ref, n, err, tc.want)
		}
	}
}
