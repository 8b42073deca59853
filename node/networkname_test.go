package node

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestNetworkNameMayBeAnIDPrefix: a network may be named what another
// network's ID begins with (IDs are lowercase base32, so short names such
// as "b" or "db" often are), through network create and a deploy's check,
// and its name then finds it. Before, the create route looked the name up
// as a reference, which also matches ID prefixes, and refused with "a
// network named X already exists" while no network had that name.
func TestNetworkNameMayBeAnIDPrefix(t *testing.T) {
	a := newSoloAgent(t)
	h := a.routes()
	code, b := do(t, h, "POST", "/v1/networks", `{"name":"back"}`)
	if code != 200 {
		t.Fatalf("create back: %d %s", code, b)
	}
	var back api.Network
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	prefix := back.ID[:3]
	if api.NetworkNameProblem(prefix) != "" {
		t.Fatalf("ID %s: its prefix is no network name", back.ID)
	}

	code, b = do(t, h, "POST", "/v1/services/check", jsonOf(t, api.DeployCheck{Networks: []api.Network{{Name: prefix}}}))
	if code != 200 {
		t.Fatalf("deploy check of network %s (a prefix of back's ID %s): %d %s", prefix, back.ID, code, b)
	}
	code, b = do(t, h, "POST", "/v1/networks", `{"name":"`+prefix+`"}`)
	if code != 200 {
		t.Fatalf("create network %s (a prefix of back's ID %s): %d %s", prefix, back.ID, code, b)
	}
	code, b = do(t, h, "GET", "/v1/networks/"+prefix, "")
	var got api.Network
	if err := json.Unmarshal(b, &got); code != 200 || err != nil || got.Name != prefix {
		t.Fatalf("inspect %s: %d %s, want the network of that name", prefix, code, b)
	}

	// A name taken is still refused, in any case, naming the network.
	for _, name := range []string{"back", "BACK", strings.ToUpper(prefix)} {
		code, b = do(t, h, "POST", "/v1/networks", `{"name":"`+name+`"}`)
		if msg := errorBody(t, b); code != 400 || !strings.Contains(msg, "already exists") {
			t.Errorf("create %s: %d %s, want 400 already exists", name, code, b)
		}
	}
}
