package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
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

// TestCLIServiceUpdateNetworkRmByID: --network-rm takes a network's ID
// or ID prefix, as --network-add does; the network of that ID goes, with
// its aliases. Before, it was refused: "the service is not on that
// network (it is on back, front)".
func TestCLIServiceUpdateNetworkRmByID(t *testing.T) {
	f := newFakeAgent(t)
	f.networks = []api.Network{{ID: "backid0000", Name: "back"}, {ID: "frontid000", Name: "front"}}
	f.services = []*api.Service{{ID: "svc1", Name: "web", Version: 1, Spec: api.ServiceSpec{
		Name: "web", Mode: api.ModeReplicated, Replicas: 1, Image: "busybox", Networks: []string{"back", "front"},
		NetworkAliases: map[string][]string{"back": {"www"}, "front": {"edge"}},
	}}}
	if _, errOut, code := runCLI(t, f.host, "", "service", "update", "-d", "--network-rm", "nosuch", "web"); code != 2 || !strings.Contains(errOut, "not on that network") {
		t.Errorf("--network-rm nosuch: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := runCLI(t, f.host, "", "service", "update", "-d", "--network-rm", "backid", "web"); code != 0 {
		t.Fatalf("--network-rm backid: exit %d, stderr %q", code, errOut)
	}
	sp := f.service("web").Spec
	if !slices.Equal(sp.Networks, []string{"front"}) || len(sp.NetworkAliases) != 1 || sp.NetworkAliases["front"][0] != "edge" {
		t.Fatalf("after --network-rm backid: networks %v aliases %v, want [front] with front's alias", sp.Networks, sp.NetworkAliases)
	}
}

// TestCLINetworkCreateDriver: docker's -d overlay (how Swarm guides make a
// network) is taken; another driver is refused before anything is sent.
// Before, -d and --driver were unknown flags.
func TestCLINetworkCreateDriver(t *testing.T) {
	f := newFakeAgent(t)
	for _, args := range [][]string{{"-d", "overlay", "n1"}, {"--driver", "overlay", "--attachable", "n2"}, {"n3"}} {
		if out, errOut, code := runCLI(t, f.host, "", append([]string{"network", "create"}, args...)...); code != 0 || out == "" {
			t.Errorf("network create %v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	_, errOut, code := runCLI(t, f.host, "", "network", "create", "-d", "bridge", "n4")
	if code != 2 || !strings.Contains(errOut, `invalid --driver "bridge": only overlay networks exist`) {
		t.Errorf("-d bridge: exit %d, stderr %q", code, errOut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.networks) != 3 || !f.networks[1].Attachable {
		t.Fatalf("sent %+v, want n1, n2 (attachable), n3", f.networks)
	}
}

// `volume create -d local NAME`, docker's usual line, works; another
// driver is a usage error and nothing is created.
func TestCLIVolumeCreateDriver(t *testing.T) {
	f := newFakeAgent(t)
	for _, args := range [][]string{{"-d", "local", "v1"}, {"--driver", "local", "v2"}, {"v3"}} {
		if out, errOut, code := runCLI(t, f.host, "", append([]string{"volume", "create"}, args...)...); code != 0 || out == "" {
			t.Errorf("volume create %v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	_, errOut, code := runCLI(t, f.host, "", "volume", "create", "-d", "nfs", "v4")
	if code != 2 || !strings.Contains(errOut, `invalid --driver "nfs": only local volumes exist`) {
		t.Errorf("-d nfs: exit %d, stderr %q", code, errOut)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(f.volumes, []string{"v1", "v2", "v3"}) {
		t.Fatalf("created %v, want v1, v2, v3", f.volumes)
	}
}
