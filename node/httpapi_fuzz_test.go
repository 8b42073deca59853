package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/node/identity"
	"github.com/shoal-org/shoal/node/scheduler/servicespec"
)

// specSeeds are service spec bodies as the CLI and compose send them, and
// the shapes a hostile or broken client might send instead.
var specSeeds = []string{
	`{"name":"web","mode":"replicated","replicas":3,"image":"bb:1","command":["sleep","1000"]}`,
	`{"name":"web","replicas":2,"image":"bb:1","ports":[{"published":8080,"target":80,"protocol":"tcp"},{"published":53,"target":53,"protocol":"udp","mode":"host"}]}`,
	`{"name":"db","mode":"global","image":"bb:1","env":["A=1"],"labels":{"k":"v"},"constraints":["node.labels.disk==ssd"],` +
		`"resources":{"limits":{"memory_bytes":67108864,"nano_cpus":500000000}},"restart_policy":{"condition":"on-failure","max_attempts":3},` +
		`"update_config":{"parallelism":1,"delay":1000000000,"failure_action":"rollback"},"healthcheck":{"test":["CMD","true"],"interval":1000000000,"retries":3},"stop_grace_period":2000000000}`,
	`{"name":"x","replicas":18446744073709551615,"image":"bb:1"}`,
	`{"name":"x","replicas":-1}`,
	`{"name":"x","ports":[{"published":70000,"target":0}]}`,
	`{"name":"x","unknown_field":1}`,
	`{"name":"WEB","image":"bb:1"}`,
	`{"name":"a.b","image":"bb:1"}`,
	`{"name":"x","image":"bb:1","mounts":[{"type":"bind","source":"/","target":"/host"}]}`,
	`{"name":"x","image":"bb:1","stop_grace_period":-5}`,
	`{"name":"x","image":"bb:1"} {"name":"y"}`,
	`null`, `[]`, `"x"`, ``, `{`, `{"name":`, `{"name":"x","ports":null,"env":null}`,
}

// FuzzServiceSpecBody fuzzes the body of POST /v1/services and
// /v1/services/{id}/update — the untrusted bytes a client sends — through
// the API's decoder and the checks every spec passes before it is
// proposed:
//
//   - decoding never panics and refuses with 400 (or 413), never 5xx;
//   - servicespec.Defaults, Validate and CheckPortClash never panic;
//   - a spec that passes is stable: encoded and decoded again (as the
//     leader does when it re-validates a forwarded command) it is the same
//     spec and still passes;
//   - the update route of an agent in no cluster answers 4xx whatever the
//     body (it decodes the body first).
func FuzzServiceSpecBody(f *testing.F) {
	for _, s := range specSeeds {
		f.Add([]byte(s))
	}
	a := newTestAgentF(f)
	routes := a.routes()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/services", bytes.NewReader(body))
		var spec api.ServiceSpec
		if err := httpapi.DecodeBody(req, &spec); err != nil {
			var he httpapi.StatusError
			if !errors.As(err, &he) || (he.HTTPStatus() != http.StatusBadRequest && he.HTTPStatus() != http.StatusRequestEntityTooLarge) {
				t.Fatalf("decode error %v is not a 400/413", err)
			}
		} else {
			checkSpecStable(t, spec)
		}

		rec := httptest.NewRecorder()
		routes.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/services/web/update?version=1", bytes.NewReader(body)))
		if rec.Code < 400 || rec.Code >= 500 {
			t.Fatalf("update route answered %d to %q: %s", rec.Code, body, rec.Body.String())
		}
	})
}

// checkSpecStable runs a decoded spec through what checkSpec does without
// a cluster and checks that a valid spec round-trips.
func checkSpecStable(t *testing.T, spec api.ServiceSpec) {
	t.Helper()
	replicas := spec.Replicas
	spec = servicespec.Defaults(spec)
	if spec.Mode == api.ModeReplicated {
		spec.Replicas = replicas
	}
	if err := servicespec.Validate(spec); err != nil {
		if err.Error() == "" {
			t.Fatal("a refusal with an empty message")
		}
		return
	}
	_ = servicespec.CheckPortClash(spec, []api.Service{{ID: "other", Name: "other", Spec: spec}})
	enc, err := json.Marshal(spec)
	if err != nil {
		t.Fatalf("encode a valid spec: %v", err)
	}
	var again api.ServiceSpec
	if err := httpapi.DecodeBody(httptest.NewRequest(http.MethodPost, "/v1/services", bytes.NewReader(enc)), &again); err != nil {
		t.Fatalf("a valid spec does not decode again: %v\n%s", err, enc)
	}
	enc2, _ := json.Marshal(again)
	if !bytes.Equal(enc, enc2) {
		t.Fatalf("spec changed in a round trip:\n%s\n%s", enc, enc2)
	}
	if err := servicespec.Validate(again); err != nil {
		t.Fatalf("a valid spec is refused after a round trip: %v\n%s", err, enc)
	}
}

// newTestAgentF is newTestAgent for a fuzz target's setup (no *testing.T
// there): an agent in no cluster, enough for routes that answer before
// touching one.
func newTestAgentF(f *testing.F) *Agent {
	f.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = f.TempDir()
	cfg.AdvertiseAddr = "127.0.0.1"
	cfg.Hostname = "test-host"
	cfg.WriteTimeout = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	return &Agent{
		cfg: cfg,
		ctx: ctx,
		id:  identity.Node{NodeID: identity.NewID(), Hostname: cfg.Hostname},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}
