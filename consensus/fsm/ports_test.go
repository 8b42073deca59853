package fsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// autoSvc is a service that asks for a published port for each target.
func autoSvc(id string, env []string, targets ...int) api.Service {
	var ports []api.PortConfig
	for _, t := range targets {
		ports = append(ports, api.PortConfig{Target: t, Protocol: "tcp"})
	}
	return api.Service{ID: id, Name: id, Spec: api.ServiceSpec{Name: id, Env: env, Ports: ports}}
}

func (h *harness) published(id string) []int {
	h.t.Helper()
	s, err := h.store.Service(id)
	if err != nil {
		h.t.Fatalf("service %s: %v", id, err)
	}
	var out []int
	for _, p := range s.Spec.Ports {
		out = append(out, p.Published)
	}
	return out
}

// TestFSMAutoPorts: a port left at 0 gets the lowest free port of the
// range where the create applies (two creates in one batch, as two
// concurrent creates reach the log, get two ports), an update that resends
// it at 0 keeps it, and a removed service or port frees it.
func TestFSMAutoPorts(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.CreateService{Service: autoSvc("a", nil, 80)})
	if got := h.published("a"); !slices.Equal(got, []int{30000}) {
		t.Fatalf("a: %v", got)
	}
	r := h.apply(command.Batch{Commands: []command.Command{
		command.CreateService{Service: autoSvc("b", nil, 80)},
		command.CreateService{Service: autoSvc("c", nil, 80, 81)},
	}})
	for i, res := range r.Value.([]Result) {
		if res.Err != nil {
			t.Fatalf("batch create %d: %v", i, res.Err)
		}
	}
	if b, c := h.published("b"), h.published("c"); !slices.Equal(b, []int{30001}) || !slices.Equal(c, []int{30002, 30003}) {
		t.Fatalf("b %v, c %v", b, c)
	}
	// `service update --env X=1` and a redeploy resend the spec as written.
	h.must(command.UpdateService{Service: autoSvc("a", []string{"X=1"}, 80)})
	if got := h.published("a"); !slices.Equal(got, []int{30000}) {
		t.Fatalf("a after update: %v, want its port kept", got)
	}
	// A port removed is freed, and so is a removed service's.
	h.must(command.UpdateService{Service: autoSvc("c", nil, 81)})
	if got := h.published("c"); !slices.Equal(got, []int{30003}) {
		t.Fatalf("c after removing target 80: %v", got)
	}
	h.must(command.DeleteService{ID: "b"})
	h.must(command.CreateService{Service: autoSvc("d", nil, 80, 80)})
	if got := h.published("d"); !slices.Equal(got, []int{30001, 30002}) {
		t.Fatalf("d: %v, want the freed ports", got)
	}
}

// TestFSMAutoPortRangeFull: with every port of the range published, a
// create or an update asking for one is refused with ErrInUse and changes
// nothing; giving a port still works.
func TestFSMAutoPortRangeFull(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	var all []api.PortConfig
	for p := api.AutoPortMin; p <= api.AutoPortMax; p++ {
		all = append(all, api.PortConfig{Published: p, Target: 80, Protocol: "tcp"})
	}
	h.must(command.CreateService{Service: api.Service{ID: "full", Name: "full", Spec: api.ServiceSpec{Name: "full", Ports: all}}})
	h.must(command.CreateService{Service: api.Service{ID: "u", Name: "u", Spec: api.ServiceSpec{Name: "u"}}})
	before := stateOf(t, h.store)
	for _, cmd := range []command.Command{
		command.CreateService{Service: autoSvc("x", nil, 80)},
		command.UpdateService{Service: autoSvc("u", nil, 80)},
	} {
		err := h.apply(cmd).Err
		if !errors.Is(err, consensus.ErrInUse) || !containsAll(err.Error(), "no free published port", fmt.Sprint(api.AutoPortMin)) {
			t.Fatalf("%T: err %v, want the range full", cmd, err)
		}
	}
	if after := stateOf(t, h.store); after != before {
		t.Fatalf("a refused allocation changed the state:\n%s\n%s", before, after)
	}
	// udp is another range.
	h.must(command.CreateService{Service: api.Service{ID: "dns", Name: "dns", Spec: api.ServiceSpec{Name: "dns",
		Ports: []api.PortConfig{{Target: 53, Protocol: "udp"}}}}})
	if got := h.published("dns"); !slices.Equal(got, []int{30000}) {
		t.Fatalf("dns: %v", got)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
