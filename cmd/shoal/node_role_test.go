package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// `node promote` and `node demote` (docker's words, which a Swarm operator
// types; before they were unknown commands) update each node's role in
// turn, print each node, and report a failing one without stopping.
func TestNodePromoteDemote(t *testing.T) {
	var mu sync.Mutex
	var got []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/nodes/{id}/update", func(w http.ResponseWriter, r *http.Request) {
		var u api.NodeUpdate
		_ = json.NewDecoder(r.Body).Decode(&u)
		id := r.PathValue("id")
		if id == "ghost" {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: "no such node: ghost"})
			return
		}
		mu.Lock()
		got = append(got, id+"="+u.Role+"/"+u.Availability)
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(api.Node{ID: id, Role: u.Role})
	})
	sock := filepath.Join(t.TempDir(), "shoal.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	host := "unix://" + sock

	out, errOut, code := runCLI(t, host, "", "node", "promote", "h1", "h2")
	if code != 0 || out != "h1\nh2\n" || errOut != "" {
		t.Fatalf("promote: exit %d, %q, %q", code, out, errOut)
	}
	out, errOut, code = runCLI(t, host, "", "node", "demote", "ghost", "h3")
	if code == 0 || out != "h3\n" || !strings.Contains(errOut, "demote node ghost") || !strings.Contains(errOut, "no such node") {
		t.Fatalf("demote: exit %d, %q, %q", code, out, errOut)
	}
	want := []string{"h1=manager/", "h2=manager/", "h3=worker/"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("updates %v, want %v", got, want)
	}
	if _, _, code := runCLI(t, host, "", "node", "promote"); code != 2 {
		t.Fatalf("promote without NODE: exit %d, want 2", code)
	}
}

// TestVoterNote: after a role change, an even count of ready managers is
// said to leave one of them without a vote (autopilot keeps 1, 3 or 5).
func TestVoterNote(t *testing.T) {
	mk := func(roles ...string) []api.Node {
		var out []api.Node
		for i, r := range roles {
			st := api.NodeReady
			if r == "down" {
				r, st = api.RoleManager, api.NodeDown
			}
			out = append(out, api.Node{ID: fmt.Sprint(i), Role: r, Status: st})
		}
		return out
	}
	m, w := api.RoleManager, api.RoleWorker
	for _, tc := range []struct {
		name  string
		nodes []api.Node
		want  string
	}{
		{"3 managers", mk(m, m, m, w), ""},
		{"2 managers", mk(m, m, w), "Note: 2 ready nodes have the manager role; Shoal keeps an odd number of voters (1, 3 or 5), so only 1 of them votes"},
		{"4 managers", mk(m, m, m, m, w), "so 3 of them vote"},
		{"a down manager is not counted", mk(m, m, "down"), "Note: 2 ready"},
		{"1 manager", mk(m, w, w), ""},
		{"6 managers: 5 vote anyway", mk(m, m, m, m, m, m), ""},
	} {
		got := voterNote(tc.nodes)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestNodeInspectSelf: `node inspect self` is the node the CLI talks to, as
// docker's node inspect takes it; before, it answered "no such node: self".
// Outside a cluster it says so.
func TestNodeInspectSelf(t *testing.T) {
	f := newFakeAgent(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"node", "inspect", "self", "-q"}, "node1aaaaaaaaaaaaaaa\n"},
		{[]string{"node", "inspect", "h2", "self", "--format", "{{.Hostname}}"}, "h2\nh1\n"},
	}
	for _, tt := range tests {
		out, errOut, code := runCLI(t, f.host, "", tt.args...)
		if code != 0 || out != tt.want {
			t.Errorf("%v: exit %d, %q (stderr %q), want %q", tt.args, code, out, errOut, tt.want)
		}
	}
	f.status = api.Status{NodeID: "node1aaaaaaaaaaaaaaa", Hostname: "h1"}
	_, errOut, code := runCLI(t, f.host, "", "node", "inspect", "self")
	if code != 1 || !strings.Contains(errOut, "inspect node self: this node is not part of a cluster") {
		t.Errorf("self outside a cluster: exit %d, stderr %q", code, errOut)
	}
}
