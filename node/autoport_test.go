package node

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/runtime/image"
)

// TestAutoPortThroughTheAPI: `service create -p 80` stores a port of
// 30000-32767, a second service gets another, and an update that resends
// the port without it (`stack deploy`, an API client) keeps it without
// counting as a spec change: a paused update stays paused.
func TestAutoPortThroughTheAPI(t *testing.T) {
	a := newSoloAgent(t)
	imgs, err := image.Open(image.DefaultConfig(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	a.images = imgs // empty: the image is known from the cluster's record
	h := a.routes()
	if _, err := a.cl.Raft.Apply(context.Background(), &command.UpsertImage{Image: api.Image{ID: "sha256:" + strings.Repeat("b", 64), Tags: []string{"bb:1"}}}); err != nil {
		t.Fatal(err)
	}
	body := func(name string, env ...string) string {
		b, _ := json.Marshal(api.ServiceSpec{Name: name, Image: "bb:1", Replicas: 1, Env: env,
			Ports: []api.PortConfig{{Target: 80, Protocol: "tcp"}}})
		return string(b)
	}
	published := func(name string) int {
		t.Helper()
		s, err := a.cl.Store.ServiceByName(name)
		if err != nil || len(s.Spec.Ports) != 1 {
			t.Fatalf("service %s: %v %+v", name, err, s)
		}
		return s.Spec.Ports[0].Published
	}
	for _, name := range []string{"one", "two"} {
		if code, b := do(t, h, "POST", "/v1/services", body(name)); code != 200 {
			t.Fatalf("create %s: %d %s", name, code, b)
		}
	}
	one, two := published("one"), published("two")
	if one < api.AutoPortMin || one > api.AutoPortMax || two < api.AutoPortMin || two > api.AutoPortMax || one == two {
		t.Fatalf("published ports %d and %d: want two of %d-%d", one, two, api.AutoPortMin, api.AutoPortMax)
	}

	cur, _ := a.cl.Store.ServiceByName("one")
	cur.UpdateStatus = &api.UpdateStatus{State: api.UpdatePaused, Message: "test"}
	if _, err := a.cl.Raft.Apply(context.Background(), &command.UpdateService{Service: *cur}); err != nil {
		t.Fatal(err)
	}
	if code, b := do(t, h, "POST", "/v1/services/one/update", body("one")); code != 200 {
		t.Fatalf("resend: %d %s", code, b)
	}
	if s, _ := a.cl.Store.ServiceByName("one"); s.UpdateStatus == nil || s.UpdateStatus.State != api.UpdatePaused {
		t.Fatalf("resending the spec as written resumed a paused update: %+v", s.UpdateStatus)
	}
	if code, b := do(t, h, "POST", "/v1/services/one/update", body("one", "X=1")); code != 200 {
		t.Fatalf("update: %d %s", code, b)
	}
	if got := published("one"); got != one {
		t.Fatalf("update --env moved the port from %d to %d", one, got)
	}
}
