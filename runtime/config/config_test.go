package config

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// noImages is an ImageResolver that resolves nothing: Validate only
// checks that there is one.
type noImages struct{}

func (noImages) Resolve(ref string) (api.Image, api.ImageConfig, []string, error) {
	return api.Image{}, api.ImageConfig{}, nil, nil
}

func TestConfigValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err == nil {
		t.Fatal("empty config validated")
	}
	c = Default()
	c.Root, c.RuncRoot, c.CgroupParent = "/r", "/run/x", "/shoal-x"
	c.Images = noImages{}
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
