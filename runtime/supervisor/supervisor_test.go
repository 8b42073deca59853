package supervisor

import (
	"slices"
	"testing"
)

func TestShouldTrim(t *testing.T) {
	tests := []struct {
		name                string
		work, seen, trimmed uint64
		want                bool
	}{
		{"fresh, nothing done (trimmed at start)", 0, 0, 0, false},
		{"work during the last tick", 3, 1, 0, false},
		{"quiet for a tick after work", 3, 3, 0, true},
		{"already trimmed after that work", 3, 3, 3, false},
		{"new work after a trim, still busy", 5, 4, 3, false},
		{"new work after a trim, now quiet", 5, 5, 3, true},
	}
	for _, tt := range tests {
		if got := shouldTrim(tt.work, tt.seen, tt.trimmed); got != tt.want {
			t.Errorf("%s: shouldTrim(%d, %d, %d) = %v, want %v", tt.name, tt.work, tt.seen, tt.trimmed, got, tt.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for id, want := range map[string]bool{
		"":                 false,
		"a":                true,
		"0abc_d.e-f":       true,
		"_a":               false,
		".a":               false,
		"-a":               false,
		"a/b":              false,
		"a b":              false,
		"..":               false,
		"a\n":              false,
		"ABCdef0123456789": true,
	} {
		if got := ValidName(id); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestRuncEnv(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"none set", []string{"PATH=/bin"}, []string{"PATH=/bin", "GOMAXPROCS=1"}},
		{"one set is replaced", []string{"GOMAXPROCS=8", "PATH=/bin"}, []string{"PATH=/bin", "GOMAXPROCS=1"}},
		{"every one set is replaced", []string{"GOMAXPROCS=8", "GOMAXPROCS=", "HOME=/"}, []string{"HOME=/", "GOMAXPROCS=1"}},
		{"a longer name stays", []string{"GOMAXPROCSX=2"}, []string{"GOMAXPROCSX=2", "GOMAXPROCS=1"}},
		{"empty", nil, []string{"GOMAXPROCS=1"}},
	}
	for _, tt := range tests {
		if got := runcEnv(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("%s: runcEnv(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}
