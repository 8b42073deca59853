package test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestDNSEndpointModeAndAliases: a dnsrr service's name resolves to its
// tasks' addresses and no VIP, a network alias resolves to the VIP on its
// network only, a switch to vip rolls no task, and dnsrr with a port
// published through the routing mesh is refused.
func TestDNSEndpointModeAndAliases(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)
	h1.MustCLI(t, "network", "create", "back")
	h1.MustCLI(t, "network", "create", "other")
	h1.MustCLI(t, "service", "create", "--name", "rr", "--replicas", "2", "--endpoint-mode", "dnsrr", "bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "web", "--network", "name=back,alias=www", "bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "cdef", "bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "cback", "--network", "back", "bb:1", "sh", "-c", webCmd)
	h1.MustCLI(t, "service", "create", "--name", "cother", "--network", "other", "bb:1", "sh", "-c", webCmd)
	for svc, n := range map[string]int{"rr": 2, "web": 1, "cdef": 1, "cback": 1, "cother": 1} {
		waitSlots(t, h1, svc, n, "", 90*time.Second)
	}
	var rr, web api.Service
	if err := h1.JSON(&rr, "service", "inspect", "rr"); err != nil {
		t.Fatal(err)
	}
	if err := h1.JSON(&web, "service", "inspect", "web"); err != nil {
		t.Fatal(err)
	}
	if rr.VIP != "" || len(rr.VIPs) != 0 || rr.Spec.EndpointMode != api.EndpointDNSRR {
		t.Fatalf("dnsrr service inspect: vip %q vips %v endpoint_mode %q", rr.VIP, rr.VIPs, rr.Spec.EndpointMode)
	}
	if web.VIPs["back"] == "" || web.Spec.EndpointMode != api.EndpointVIP || !slices.Equal(web.Spec.NetworkAliases["back"], []string{"www"}) {
		t.Fatalf("aliased service inspect: vips %v endpoint_mode %q aliases %v", web.VIPs, web.Spec.EndpointMode, web.Spec.NetworkAliases)
	}

	// dnsrr: from another task's container the name is the two tasks.
	rrTasks := runningTasks(t, h1, "rr")
	def := runningTasks(t, h1, "cdef")[0]
	nsDef, dnsDef := netnsOf(t, c, def), dnsOf(t, h1, def)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		ok, out := resolves(nsDef, dnsDef, "rr")
		if !ok {
			return false, "rr from cdef: " + out
		}
		for _, tk := range rrTasks {
			if !strings.Contains(out, tk.IP) {
				return false, fmt.Sprintf("rr from cdef lacks task %s (%s): %q", tk.Name, tk.IP, out)
			}
		}
		if n := strings.Count(out, "Address"); n != len(rrTasks) {
			return false, fmt.Sprintf("rr from cdef: %d addresses, want the %d tasks' only: %q", n, len(rrTasks), out)
		}
		return true, ""
	}, "a dnsrr name resolves to its tasks")

	// An alias: the VIP on its network, nothing on another.
	back, other := runningTasks(t, h1, "cback")[0], runningTasks(t, h1, "cother")[0]
	nsBack, dnsBack := netnsOf(t, c, back), dnsOf(t, h1, back)
	nsOther, dnsOther := netnsOf(t, c, other), dnsOf(t, h1, other)
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		ok, out := resolves(nsBack, dnsBack, "www")
		return ok && strings.Contains(out, web.VIPs["back"]), "www from cback: " + out
	}, "an alias resolves to the VIP on its network")
	if ok, out := resolves(nsOther, dnsOther, "www"); ok {
		t.Errorf("www resolves on another network: %q", out)
	}
	if ok, out := resolves(nsDef, dnsDef, "www"); ok {
		t.Errorf("www resolves on the default network: %q", out)
	}

	// A clashing alias is refused and changes nothing.
	_, _, err := h1.CLI("service", "create", "--name", "web2", "--network", "name=back,alias=www", "bb:1", "sh", "-c", webCmd)
	mustFail(t, err, "a second service with alias www on back", "the name is taken there by alias www of service web")

	// dnsrr with a port through the routing mesh is refused.
	_, _, err = h1.CLI("service", "create", "--name", "rrpub", "--endpoint-mode", "dnsrr", "--publish", "8080:80", "bb:1", "sh", "-c", webCmd)
	mustFail(t, err, "dnsrr with --publish 8080:80", "port published with ingress mode can't be used with dnsrr mode")
	var all []api.Service
	if err := h1.JSON(&all, "service", "ls"); err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Name == "rrpub" || s.Name == "web2" {
			t.Fatalf("a refused create left service %s", s.Name)
		}
	}

	// rr → vip: a VIP is allocated, the name answers with it, no task rolls.
	h1.MustCLI(t, "service", "update", "--endpoint-mode", "vip", "rr")
	if err := h1.JSON(&rr, "service", "inspect", "rr"); err != nil {
		t.Fatal(err)
	}
	if rr.VIP == "" || rr.Spec.EndpointMode != api.EndpointVIP {
		t.Fatalf("after the switch to vip: vip %q endpoint_mode %q", rr.VIP, rr.Spec.EndpointMode)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		ok, out := resolves(nsDef, dnsDef, "rr")
		return ok && strings.Contains(out, rr.VIP) && strings.Count(out, "Address") == 1, "rr from cdef: " + out
	}, "the name resolves to the new VIP")
	after := runningTasks(t, h1, "rr")
	var ids, idsAfter []string
	for _, tk := range rrTasks {
		ids = append(ids, tk.ID)
	}
	for _, tk := range after {
		idsAfter = append(idsAfter, tk.ID)
	}
	slices.Sort(ids)
	slices.Sort(idsAfter)
	if !slices.Equal(ids, idsAfter) {
		t.Fatalf("the endpoint mode switch replaced tasks: %v → %v", ids, idsAfter)
	}
}
