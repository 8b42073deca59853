package containeropts

import (
	"strings"
	"testing"
)

func TestHostnameProblem(t *testing.T) {
	tests := []struct{ in, want string }{
		{"app-host", ""},
		{"db1.internal", ""},
		{"A1", ""},
		{strings.Repeat("a", 63), ""},
		{strings.Repeat("a", 64), "want 1 to 63 characters"},
		{"", "want 1 to 63 characters"},
		{"-app", "must start and end with a letter or digit"},
		{"app_1", `character '_' not allowed`},
		{"a..b", "empty label"},
		{"app.", "empty label"},
		{"{{.Service.Name}}-{{.Task.Slot}}", "templates are not supported"},
		{"a\x00b", "not allowed"},
	}
	for _, tt := range tests {
		got := HostnameProblem(tt.in)
		if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
			t.Errorf("%q: %q, want %q", tt.in, got, tt.want)
		}
	}
}
