package output

import (
	"bytes"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestNodeStatus(t *testing.T) {
	for _, tc := range []struct {
		status, msg, want string
	}{
		{"ready", "", "ready"},
		{"down", "", "down"},
		{"ready", "disk full: raft log writes fail", "ready (disk full)"},
		{"ready", "disk full: 3 MiB free, below the 256 MiB reserve", "ready (disk full)"},
		{"ready", "no colon", "ready (no colon)"},
	} {
		if got := NodeStatus(api.Node{Status: tc.status, StatusMessage: tc.msg}); got != tc.want {
			t.Errorf("NodeStatus(%q, %q) = %q, want %q", tc.status, tc.msg, got, tc.want)
		}
	}
	var b bytes.Buffer
	if err := RenderNodes(&b, []api.Node{{ID: "n1", Hostname: "h4", Status: "ready", StatusMessage: "disk full: raft log writes fail"}}, "", false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "ready (disk full)") {
		t.Fatalf("node ls does not say why:\n%s", b.String())
	}
}
