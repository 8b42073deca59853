package node

import (
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/authz"
)

// TestNodeOwnsItsWireGuardKey: a node may publish its own key through an
// UpsertNode of its own record (authz), and nothing else with it.
func TestNodeOwnsItsWireGuardKey(t *testing.T) {
	cur := api.Node{ID: "me", Addr: "10.0.0.1", Status: api.NodeReady}
	next := cur
	next.WireGuardKey = "k"
	if f := authz.NodeFieldsNotOwned(cur, next); len(f) != 0 {
		t.Fatalf("publishing the key touches %v", f)
	}
	next.Status = api.NodeDown
	if f := authz.NodeFieldsNotOwned(cur, next); len(f) != 1 || f[0] != "status" {
		t.Fatalf("fields not owned: %v", f)
	}
}
