package main

import (
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
