package main

import (
	"strings"
	"testing"
)

// TestCLINetworkCreateOneSubnet: a network has one subnet, so a second
// --subnet (docker takes several) is refused before anything is sent;
// before, the last one was used silently. One --subnet is sent as given.
func TestCLINetworkCreateOneSubnet(t *testing.T) {
	f := newFakeAgent(t)
	_, errOut, code := runCLI(t, f.host, "", "network", "create", "--subnet", "10.70.0.0/16", "--subnet", "10.71.0.0/16", "two")
	if code != 2 || !strings.Contains(errOut, "--subnet: given twice (10.70.0.0/16, then 10.71.0.0/16)") {
		t.Errorf("two --subnet: exit %d, stderr %q", code, errOut)
	}
	f.mu.Lock()
	made := len(f.networks)
	f.mu.Unlock()
	if made != 0 {
		t.Fatalf("a refused create sent %d networks", made)
	}
	out, errOut, code := runCLI(t, f.host, "", "network", "create", "--subnet", "10.70.0.0/16", "one")
	f.mu.Lock()
	defer f.mu.Unlock()
	if code != 0 || out != "net1\n" || len(f.networks) != 1 || f.networks[0].Subnet != "10.70.0.0/16" {
		t.Errorf("one --subnet: exit %d, stdout %q, stderr %q, sent %+v", code, out, errOut, f.networks)
	}
}
