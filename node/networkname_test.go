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

// TestServiceNetworkByID: a service's network may be given by ID or ID
// prefix, as `network ls` shows it and `shoal run --network` takes it;
// the service stores the network's name (aliases follow), and one network
// given by name and by ID counts once. Before, create and update were
// refused with "network ID: not found".
func TestServiceNetworkByID(t *testing.T) {
	a := deployCheckAgent(t) // network back
	h := a.routes()
	back, err := a.cl.Store.ResolveNetwork("back")
	if err != nil {
		t.Fatal(err)
	}
	spec := api.ServiceSpec{Name: "byid", Image: "bb:1", Replicas: 1, Networks: []string{back.ID[:6]},
		NetworkAliases: map[string][]string{back.ID[:6]: {"db"}}}
	code, b := do(t, h, "POST", "/v1/services", jsonOf(t, spec))
	if code != 200 {
		t.Fatalf("create on network %s (back's ID prefix): %d %s", back.ID[:6], code, b)
	}
	s, err := a.cl.Store.ServiceByName("byid")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Spec.Networks, ","); got != "back" || strings.Join(s.Spec.NetworkAliases["back"], ",") != "db" || len(s.Spec.NetworkAliases) != 1 {
		t.Fatalf("stored networks %q aliases %v, want back with alias db", got, s.Spec.NetworkAliases)
	}
	if s.VIPs["back"] == "" {
		t.Fatalf("no VIP on back: %v", s.VIPs)
	}

	// An update naming back twice, by name and full ID (--network-add of
	// a network the service is on), and an unknown one.
	upd := s.Spec
	upd.Networks = []string{"back", back.ID}
	code, b = do(t, h, "POST", "/v1/services/byid/update", jsonOf(t, upd))
	if code != 200 {
		t.Fatalf("update with back and its ID: %d %s", code, b)
	}
	if s, _ = a.cl.Store.ServiceByName("byid"); strings.Join(s.Spec.Networks, ",") != "back" {
		t.Fatalf("networks after update %v, want [back]", s.Spec.Networks)
	}
	upd.Networks = []string{"zzzz"}
	upd.NetworkAliases = nil
	if code, b = do(t, h, "POST", "/v1/services/byid/update", jsonOf(t, upd)); code < 400 || !strings.Contains(string(b), "zzzz") {
		t.Fatalf("update on an unknown network: %d %s", code, b)
	}
}

// TestServiceNetworkCase: network names are unique regardless of case
// (the state machine refuses "Back" beside "back"), so --network BACK is
// back: the service stores the network's own name. It answered "network
// BACK: not found".
func TestServiceNetworkCase(t *testing.T) {
	a := deployCheckAgent(t) // network back
	h := a.routes()
	spec := api.ServiceSpec{Name: "upper", Image: "bb:1", Replicas: 1, Networks: []string{"BACK"},
		NetworkAliases: map[string][]string{"BACK": {"db"}}}
	code, b := do(t, h, "POST", "/v1/services", jsonOf(t, spec))
	if code != 200 {
		t.Fatalf("create on network BACK: %d %s", code, b)
	}
	s, err := a.cl.Store.ServiceByName("upper")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Spec.Networks, ","); got != "back" || strings.Join(s.Spec.NetworkAliases["back"], ",") != "db" {
		t.Fatalf("stored networks %q aliases %v, want back with alias db", got, s.Spec.NetworkAliases)
	}
	code, b = do(t, h, "GET", "/v1/networks/Back", "")
	var got api.Network
	if err := json.Unmarshal(b, &got); code != 200 || err != nil || got.Name != "back" {
		t.Fatalf("inspect Back: %d %s, want back", code, b)
	}
}
