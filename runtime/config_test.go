package runtime

import (
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestHealthStep(t *testing.T) {
	const S, H, U = api.HealthStarting, api.HealthHealthy, api.HealthUnhealthy
	tests := []struct {
		name        string
		status      string
		streak      int
		ok, inStart bool
		retries     int
		want        string
		wantStreak  int
	}{
		{"success makes healthy", S, 0, true, false, 3, H, 0},
		{"success in start period", S, 0, true, true, 3, H, 0},
		{"failure in start period not counted", S, 0, false, true, 3, S, 0},
		{"failure after start period counts", S, 0, false, false, 3, S, 1},
		{"retries reached", S, 2, false, false, 3, U, 3},
		{"healthy then one failure", H, 0, false, false, 3, H, 1},
		{"healthy failures in start period count once started", H, 2, false, true, 3, U, 3},
		{"unhealthy recovers", U, 5, true, false, 3, H, 0},
		{"single retry", H, 0, false, false, 1, U, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, streak := healthStep(tt.status, tt.streak, tt.ok, tt.inStart, tt.retries)
			if got != tt.want || streak != tt.wantStreak {
				t.Errorf("got %s/%d want %s/%d", got, streak, tt.want, tt.wantStreak)
			}
		})
	}
}

func TestHealthArgs(t *testing.T) {
	tests := []struct {
		test    []string
		want    []string
		wantErr bool
	}{
		{[]string{"CMD", "true"}, []string{"true"}, false},
		{[]string{"CMD-SHELL", "test -e /x"}, []string{"/bin/sh", "-c", "test -e /x"}, false},
		{[]string{"curl -f localhost"}, []string{"/bin/sh", "-c", "curl -f localhost"}, false},
		{[]string{"CMD"}, nil, true},
		{nil, nil, true},
	}
	for _, tt := range tests {
		got, err := healthArgs(tt.test)
		if tt.wantErr != (err != nil) || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("healthArgs(%q) = %q, %v", tt.test, got, err)
		}
	}
}

func TestIsSupervisorInvocation(t *testing.T) {
	for arg0, want := range map[string]bool{
		"shoal-supervisor":                true,
		"/usr/local/bin/shoal-supervisor": true,
		"/.shoal/init":                    false,
		"/usr/bin/shoal":                  false,
		"shoal-supervisor2":               false,
	} {
		if got := IsSupervisorInvocation(arg0); got != want {
			t.Errorf("IsSupervisorInvocation(%q) = %v", arg0, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err == nil {
		t.Fatal("empty config validated")
	}
	c = DefaultConfig()
	c.Root, c.RuncRoot, c.CgroupParent = "/r", "/run/x", "/shoal-x"
	c.Images = fakeImages{}
	c.RuncBinary = "/bin/sh" // any executable will do for validation
	c.InitBinary = "/bin/sh"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, run := range []string{"/run/shoal/containers-x", ""} {
		c.RunRoot = run
		if err := c.Validate(); err != nil {
			t.Fatalf("RunRoot %q: %v", run, err)
		}
	}
	for _, run := range []string{"relative", "/r", "/r/"} {
		c.RunRoot = run
		if err := c.Validate(); err == nil {
			t.Fatalf("RunRoot %q validated", run)
		}
	}
	c.RunRoot = ""
	c.CgroupParent = "relative"
	if err := c.Validate(); err == nil {
		t.Fatal("relative cgroup parent validated")
	}
}
