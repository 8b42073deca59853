package containeropts

import (
	"strings"
	"testing"
)

func TestParseSignal(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		name string
		err  string
	}{
		{"SIGQUIT", 3, "SIGQUIT", ""},
		{"quit", 3, "SIGQUIT", ""},
		{"3", 3, "SIGQUIT", ""},
		{"SIGTERM", 15, "SIGTERM", ""},
		{"sigint", 2, "SIGINT", ""},
		{"USR1", 10, "SIGUSR1", ""},
		{"SIGWINCH", 28, "SIGWINCH", ""},
		{"POLL", 29, "SIGIO", ""},
		{"KILL", 9, "SIGKILL", ""},
		{"SIGRTMIN", 34, "SIGRTMIN", ""},
		{"SIGRTMIN+3", 37, "SIGRTMIN+3", ""},
		{"RTMAX-2", 62, "SIGRTMAX-2", ""},
		{"64", 64, "SIGRTMAX", ""},
		{"SIGSTOP", 0, "", "does not pass it on"},
		{"SEGV", 0, "", "does not pass it on"},
		{"CHLD", 0, "", "does not pass it on"},
		{"SIGFOO", 0, "", `unknown signal "SIGFOO"`},
		{"0", 0, "", "not a signal"},
		{"65", 0, "", "not a signal"},
		{"32", 0, "", "not a signal"},
		{"RTMIN+40", 0, "", "not a signal"},
		{"", 0, "", "unknown signal"},
	}
	for _, tt := range tests {
		n, name, err := ParseSignal(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || n != tt.n || name != tt.name {
			t.Errorf("%q = %d %q %v; want %d %q", tt.in, n, name, err, tt.n, tt.name)
		}
	}
}
