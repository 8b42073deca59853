package containeropts

import (
	"reflect"
	"strings"
	"testing"
)

func TestNormalizeCapability(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"NET_ADMIN", "CAP_NET_ADMIN", ""},
		{"CAP_NET_ADMIN", "CAP_NET_ADMIN", ""},
		{"cap_sys_time", "CAP_SYS_TIME", ""},
		{"all", "ALL", ""},
		{" CHOWN ", "CAP_CHOWN", ""},
		{"NET_ADMINN", "", `unknown capability "NET_ADMINN"`},
		{"CAP_ALL", "", "unknown capability"},
		{"", "", "unknown capability"},
	}
	for _, tt := range tests {
		got, err := NormalizeCapability(tt.in)
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

func TestCapabilities(t *testing.T) {
	base := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"}
	tests := []struct {
		name        string
		adds, drops []string
		want        []string
		err         string
	}{
		{"none", nil, nil, base, ""},
		{"add", []string{"NET_ADMIN"}, nil, []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_NET_ADMIN"}, ""},
		{"add one already there", []string{"kill"}, nil, base, ""},
		{"drop", nil, []string{"CAP_NET_RAW", "chown"}, []string{"CAP_KILL"}, ""},
		{"drop all add one", []string{"NET_BIND_SERVICE"}, []string{"ALL"}, []string{"CAP_NET_BIND_SERVICE"}, ""},
		{"drop all", nil, []string{"all"}, nil, ""},
		{"add all drop one", []string{"ALL"}, []string{"SYS_ADMIN"}, nil, ""},
		{"added and dropped: added", []string{"KILL"}, []string{"KILL"}, []string{"CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"}, ""},
		{"unknown add", []string{"FLY"}, nil, nil, `cap_add: unknown capability "FLY"`},
		{"unknown drop", nil, []string{"FLY"}, nil, `cap_drop: unknown capability "FLY"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Capabilities(base, tt.adds, tt.drops)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "add all drop one" {
				if len(got) != len(AllCapabilities)-1 || strings.Contains(strings.Join(got, ","), "CAP_SYS_ADMIN") {
					t.Fatalf("got %v", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
