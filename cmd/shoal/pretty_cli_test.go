package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestCLIInspectPretty: `service inspect --pretty` and `node inspect
// --pretty` (docker's flags, which a Swarm user types) print the text
// summary; with --format or -q they are a usage error. Before, both were
// "flag provided but not defined: -pretty".
func TestCLIInspectPretty(t *testing.T) {
	f := newFakeAgent(t)
	f.services = []*api.Service{{ID: "svc1", Name: "web", Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 2, Image: "busybox"}}}
	out, errOut, code := runCLI(t, f.host, "", "service", "inspect", "--pretty", "web")
	if code != 0 || !strings.Contains(out, "Name:               web\n") || !strings.Contains(out, " Replicas:          2\n") {
		t.Errorf("service inspect --pretty: exit %d, stderr %q:\n%s", code, errOut, out)
	}
	out, errOut, code = runCLI(t, f.host, "", "node", "inspect", "--pretty", "self", "h2")
	if code != 0 || !strings.Contains(out, "Hostname:           h1\n") || !strings.Contains(out, "\n\nID:                 node2bbbbbbbbbbbbbbb\n") {
		t.Errorf("node inspect --pretty: exit %d, stderr %q:\n%s", code, errOut, out)
	}
	if _, _, code := runCLI(t, f.host, "", "service", "inspect", "--pretty", "--format", "json", "web"); code != 2 {
		t.Errorf("--pretty --format: exit %d, want 2", code)
	}
	if _, errOut, code := runCLI(t, f.host, "", "service", "inspect", "--pretty", "nope"); code != 1 || !strings.Contains(errOut, "inspect service nope") {
		t.Errorf("--pretty of a missing service: exit %d, %q", code, errOut)
	}
}

// TestCLITokenQuiet: `token -q` (docker swarm join-token -q) prints the
// token alone; before, -q was an unknown flag.
func TestCLITokenQuiet(t *testing.T) {
	f := newFakeAgent(t)
	for _, args := range [][]string{{"token"}, {"token", "-q"}, {"token", "--quiet"}} {
		out, errOut, code := runCLI(t, f.host, "", args...)
		if code != 0 || out != "SHOAL-1-abc-def\n" {
			t.Errorf("%v: exit %d, %q, stderr %q", args, code, out, errOut)
		}
	}
}

// TestCLIJoinErrorOnce: a join the agent refuses names the address once
// (the agent's answer already starts "join ADDR: "); an answer that does
// not is still prefixed. Before: "join A: join A: connect to A: ...".
func TestCLIJoinErrorOnce(t *testing.T) {
	for _, tc := range []struct{ answer, want string }{
		{"join 10.0.0.9:2377: connect to 10.0.0.9:2377: dial tcp 10.0.0.9:2377: i/o timeout",
			"Error: join 10.0.0.9:2377: connect to 10.0.0.9:2377: dial tcp 10.0.0.9:2377: i/o timeout\n"},
		{"this node is already part of a cluster c1: run `shoal leave` first",
			"Error: join 10.0.0.9:2377: this node is already part of a cluster c1: run `shoal leave` first\n"},
	} {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/join", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: tc.answer})
		})
		sock := filepath.Join(t.TempDir(), "shoal.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(mux)
		srv.Listener = ln
		srv.Start()
		_, errOut, code := runCLI(t, "unix://"+sock, "", "join", "--token", "SHOAL-1-a-b", "10.0.0.9")
		srv.Close()
		if code != 1 || errOut != tc.want {
			t.Errorf("exit %d, stderr %q, want %q", code, errOut, tc.want)
		}
	}
}

// TestCLIScaleOutsideAutoscale: a scale of an autoscaled service outside
// its min-max is refused before anything is scaled (the autoscaler would
// set it back at once); inside the range it goes through.
func TestCLIScaleOutsideAutoscale(t *testing.T) {
	f := newFakeAgent(t)
	f.services = []*api.Service{
		{ID: "svc1", Name: "worker", Version: 1, Spec: api.ServiceSpec{Name: "worker", Mode: api.ModeReplicated, Replicas: 2, Image: "busybox",
			Autoscale: &api.AutoscaleConfig{Min: 2, Max: 4, CPUPercent: 70}}},
		{ID: "svc2", Name: "web", Version: 1, Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 1, Image: "busybox"}},
	}
	_, errOut, code := runCLI(t, f.host, "", "service", "scale", "-d", "web=3", "worker=5")
	if code != 1 || !strings.Contains(errOut, "scale worker: 5 is outside its autoscale range 2-4") {
		t.Fatalf("scale outside the range: exit %d, stderr %q", code, errOut)
	}
	if f.services[1].Spec.Replicas != 1 || f.services[0].Spec.Replicas != 2 {
		t.Fatalf("a refused scale changed replicas: web %d, worker %d", f.services[1].Spec.Replicas, f.services[0].Spec.Replicas)
	}
	if out, errOut, code := runCLI(t, f.host, "", "service", "scale", "-d", "worker=3"); code != 0 || out != "worker scaled to 3\n" {
		t.Fatalf("scale inside the range: exit %d, %q, stderr %q", code, out, errOut)
	}
}
