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

func TestParseExtraHost(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"somehost:162.242.195.82", "somehost:162.242.195.82", ""},
		{"db=10.0.0.5", "db:10.0.0.5", ""},
		{"v6:::1", "v6:::1", ""},
		{"v6:[2001:db8::1]", "v6:2001:db8::1", ""},
		{"v6=2001:db8::1", "v6:2001:db8::1", ""},
		{" a.b : 10.0.0.1 ", "a.b:10.0.0.1", ""},
		{"db", "", "want HOST:IP"},
		{"db:10.0.0", "", `address "10.0.0"`},
		{":10.0.0.1", "", "want a hostname"},
		{"d b:10.0.0.1", "", "not allowed"},
		{"gw:host-gateway", "", "host-gateway is not supported"},
	}
	for _, tt := range tests {
		got, err := ParseExtraHost(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
