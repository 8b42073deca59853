package output

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"web.1@node-a", "web.1@node-a"},
		{"tab\tand\nnewline stay", "tab\tand\nnewline stay"},
		{"é, 日本, emoji 🐟 stay", "é, 日本, emoji 🐟 stay"},
		{"osc52 \x1b]52;c;aGk=\x07", `osc52 \x1b]52;c;aGk=\x07`},
		{"clear\x1b[2J\rover", `clear\x1b[2J\x0dover`},
		{"del\x7f", `del\x7f`},
		{"c1 csi \u009b2J", `c1 csi \x9b2J`},
		{"bad utf8 \xff\xc2", `bad utf8 \xff\xc2`},
	} {
		if got := Sanitize(tc.in); got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestTablesEscapeWhatNodesWrote: a node's hostname, version and address
// and a task's error are printed by `node ls` and `service ps`; a node
// with a valid certificate must not reach the admin's terminal through
// them.
func TestTablesEscapeWhatNodesWrote(t *testing.T) {
	evil := "w\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J"
	var b bytes.Buffer
	if err := RenderNodes(&b, []api.Node{{ID: "n1", Hostname: evil, AgentVersion: evil, Addr: evil, Status: "ready", StatusMessage: evil}}, "", false); err != nil {
		t.Fatal(err)
	}
	b2 := bytes.Buffer{}
	now := time.Now()
	if err := RenderTasks(&b2, []api.Task{{ID: "t1", Name: "web.1", Node: evil, State: "failed", Error: evil, UpdatedAt: now}}, false, now); err != nil {
		t.Fatal(err)
	}
	b3 := bytes.Buffer{}
	if err := WriteList(&b3, Opts{Format: "{{.Hostname}}"}, []api.Node{{Hostname: evil}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	for what, out := range map[string]string{"node ls": b.String(), "service ps": b2.String(), "--format": b3.String()} {
		if strings.ContainsAny(out, "\x1b\x07") {
			t.Errorf("%s prints control characters: %q", what, out)
		}
		if !strings.Contains(out, `\x1b]52`) {
			t.Errorf("%s does not show the escaped text: %q", what, out)
		}
	}
}
