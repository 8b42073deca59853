package runtime

import (
	"testing"
)

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
