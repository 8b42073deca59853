package containeropts

import (
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestParseUlimit(t *testing.T) {
	tests := []struct {
		in   string
		want api.Ulimit
		err  string
	}{
		{"nofile=1024:2048", api.Ulimit{Name: "nofile", Soft: 1024, Hard: 2048}, ""},
		{"nproc=65535", api.Ulimit{Name: "nproc", Soft: 65535, Hard: 65535}, ""},
		{"core=-1", api.Ulimit{Name: "core", Soft: -1, Hard: -1}, ""},
		{"memlock=1024:-1", api.Ulimit{Name: "memlock", Soft: 1024, Hard: -1}, ""},
		{" stack = 8192 : 16384 ", api.Ulimit{Name: "stack", Soft: 8192, Hard: 16384}, ""},
		{"nofile=2048:1024", api.Ulimit{}, "nofile: soft limit 2048 above the hard limit 1024"},
		{"memlock=-1:1024", api.Ulimit{}, "soft limit -1 above the hard limit"},
		{"nofile=-1", api.Ulimit{}, "at most 1048576"},
		{"nofile=1:2000000", api.Ulimit{}, "hard limit 2000000: at most 1048576"},
		{"files=10", api.Ulimit{}, `unknown limit "files"`},
		{"nofile", api.Ulimit{}, "want NAME=SOFT[:HARD]"},
		{"nofile=a", api.Ulimit{}, `soft limit "a"`},
		{"nofile=1:b", api.Ulimit{}, `hard limit "b"`},
		{"nproc=-2", api.Ulimit{}, "want a count or -1"},
	}
	for _, tt := range tests {
		got, err := ParseUlimit(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestUlimitsProblems(t *testing.T) {
	p := UlimitsProblems("ulimits", []api.Ulimit{{Name: "nofile", Soft: 1, Hard: 2}, {Name: "nproc", Soft: 1, Hard: 1}, {Name: "nofile", Soft: 1, Hard: 1}})
	if len(p) != 1 || p[0] != "ulimits[2]: nofile given twice" {
		t.Errorf("problems %q", p)
	}
}
