package node

import "testing"

func TestIsSupervisorInvocation(t *testing.T) {
	for arg0, want := range map[string]bool{
		"shoal-supervisor": true, "/usr/local/bin/shoal-supervisor": true,
		"/usr/bin/shoal": false, "shoal": false, "/.shoal/init": false, "shoal-init": false,
	} {
		if got := IsSupervisorInvocation(arg0); got != want {
			t.Errorf("IsSupervisorInvocation(%q) = %v, want %v", arg0, got, want)
		}
	}
}
