package test

// End-to-end tests of what every write path refuses (issue 15) and of
// reading your own writes through another node (issue 14): real agents,
// driven through the CLI, and through the raw API where the CLI cannot send
// the bad input (a NUL byte in argv, a body over the limit).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/test/harness"
)

// apiClient talks to host h's socket directly.
func apiClient(t *testing.T, h *harness.Host) *client.Client {
	t.Helper()
	cl, err := client.New("unix://" + h.Socket)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// servicesState is what a refused write must leave untouched: every
// service's name, version and spec as host h sees them.
func servicesState(t *testing.T, h *harness.Host) string {
	t.Helper()
	var svcs []api.Service
	if err := h.JSON(&svcs, "service", "ls"); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range svcs {
		fmt.Fprintf(&b, "%s v%d %d %s %v;", s.Name, s.Version, s.Spec.Replicas, s.Spec.Image, s.Spec.Env)
	}
	return b.String()
}

// TestScaleBeyondLimitRefused: `service scale web=2000000` is refused with
// the very message `service create --replicas 2000000` gets, through a node
// that is not the leader, and the cluster carries on: nodes stay ready and
// a normal scale works.
func TestScaleBeyondLimitRefused(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "service", "create", "-d", "--name", "web", "bb:1", "sleep", "1000")
	waitSlots(t, h1, "web", 1, "bb:1", 2*time.Minute)

	_, createErr, err := h2.CLI("service", "create", "-d", "--name", "big", "--replicas", "2000000", "bb:1")
	mustFail(t, err, "create with 2,000,000 replicas", "more than 65536")
	before := servicesState(t, h1)
	_, scaleErr, err := h2.CLI("service", "scale", "-d", "web=2000000")
	mustFail(t, err, "scale to 2,000,000 replicas", "replicas 2000000: more than 65536")
	// Same words as create's refusal (the CLI prefixes the service name).
	reason := func(s string) string {
		_, r, _ := strings.Cut(s, "replicas 2000000")
		return strings.TrimSpace(r)
	}
	if reason(createErr) == "" || reason(createErr) != reason(scaleErr) {
		t.Errorf("create says %q, scale says %q", createErr, scaleErr)
	}
	if after := servicesState(t, h1); after != before {
		t.Fatalf("the refused scale changed the services: %s → %s", before, after)
	}
	var svc api.Service
	if err := h1.JSON(&svc, "service", "inspect", "web"); err != nil || svc.Spec.Replicas != 1 {
		t.Fatalf("web after the refused scale: replicas %d, %v", svc.Spec.Replicas, err)
	}

	// The leader survives: every node stays ready and a later scale works.
	harness.Consistently(t, 5*time.Second, c.ReadyCondition(3, c.Hosts()...), "nodes stay ready after the refused scale")
	h2.MustCLI(t, "service", "scale", "-d", "web=3")
	waitSlots(t, h1, "web", 3, "bb:1", 2*time.Minute)
}

// TestServiceWriteRoutesRefuseBadSpecs: malformed specs through every write
// route (create, update, scale, stack deploy; the API where the CLI cannot
// carry the input) get a 4xx with a clear message and change nothing.
func TestServiceWriteRoutesRefuseBadSpecs(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "service", "create", "-d", "--name", "web", "--replicas", "0", "bb:1", "sleep", "1000")
	h1.MustCLI(t, "service", "create", "-d", "--name", "agent", "--mode", "global", "--constraint", "node.labels.none==1", "bb:1", "sleep", "1000")
	h1.MustCLI(t, "service", "create", "-d", "--name", "auto", "--replicas", "1", "--autoscale", "min=1,max=2,cpu=50%", "bb:1", "sleep", "1000")
	before := servicesState(t, h1)
	ctx := harness.Context(t, testTimeout)
	cl := apiClient(t, h2)
	cur, err := cl.Service(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	spec := func(mutate func(*api.ServiceSpec)) api.ServiceSpec {
		s := cur.Spec
		mutate(&s)
		return s
	}
	newSpec := func(mutate func(*api.ServiceSpec)) api.ServiceSpec {
		return spec(func(s *api.ServiceSpec) { s.Name = "fresh"; mutate(s) })
	}
	huge := strings.Repeat("x", 5<<20)
	apiCases := []struct {
		name   string
		call   func() error
		status int
		want   string
	}{
		{"create: NUL in env", func() error {
			_, err := cl.CreateService(ctx, newSpec(func(s *api.ServiceSpec) { s.Env = []string{"A=b\x00c"} }))
			return err
		}, 400, "contains a NUL byte"},
		{"create: NUL in command", func() error {
			_, err := cl.CreateService(ctx, newSpec(func(s *api.ServiceSpec) { s.Command = []string{"sleep", "1\x00"} }))
			return err
		}, 400, "command[1]"},
		{"create: global with replicas", func() error {
			_, err := cl.CreateService(ctx, newSpec(func(s *api.ServiceSpec) { s.Mode = api.ModeGlobal; s.Replicas = 3 }))
			return err
		}, 400, "a global service runs one task on every eligible node"},
		{"create: body too large", func() error {
			_, err := cl.CreateService(ctx, newSpec(func(s *api.ServiceSpec) { s.Env = []string{"A=" + huge} }))
			return err
		}, 413, "request body larger than 4 MiB"},
		{"update: NUL in env", func() error {
			_, err := cl.UpdateService(ctx, cur.ID, cur.Version, spec(func(s *api.ServiceSpec) { s.Env = []string{"A=\x00"} }))
			return err
		}, 400, "contains a NUL byte"},
		{"update: too many replicas", func() error {
			_, err := cl.UpdateService(ctx, cur.ID, cur.Version, spec(func(s *api.ServiceSpec) { s.Replicas = 2000000 }))
			return err
		}, 400, "replicas 2000000: more than 65536"},
		{"scale: too many replicas", func() error {
			_, err := cl.ScaleService(ctx, "web", 2000000)
			return err
		}, 400, "replicas 2000000: more than 65536"},
		{"scale: global service", func() error {
			_, err := cl.ScaleService(ctx, "agent", 3)
			return err
		}, 400, "scale can only be used with replicated or replicated-job mode"},
		{"scale: outside the autoscale range", func() error {
			_, err := cl.ScaleService(ctx, "auto", 5)
			return err
		}, 400, "auto: 5 is outside its autoscale range 1-2"},
		{"image rm without a reference", func() error {
			return cl.RemoveImage(ctx, "")
		}, 400, "image rm needs an image reference"},
	}
	for _, tc := range apiCases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("accepted or failed oddly: %v", err)
			}
			if ae.Status != tc.status || !strings.Contains(ae.Message, tc.want) {
				t.Fatalf("answer %d %q, want %d mentioning %q", ae.Status, ae.Message, tc.status, tc.want)
			}
			if strings.Count(ae.Message, "invalid service spec") > 1 {
				t.Errorf("message repeats itself: %q", ae.Message)
			}
		})
	}

	// Through the CLI: update, scale and stack deploy.
	dir := t.TempDir()
	compose := filepath.Join(dir, "compose.yml")
	if err := os.WriteFile(compose, []byte("services:\n  web:\n    image: bb:1\n    deploy:\n      replicas: 2000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cliCases := []struct {
		name string
		args []string
		want string
	}{
		{"update --replicas", []string{"service", "update", "-d", "--replicas", "2000000", "web"}, "more than 65536"},
		{"update --restart-condition", []string{"service", "update", "-d", "--restart-condition", "always", "web"}, "always"},
		{"scale", []string{"service", "scale", "-d", "web=2000000"}, "more than 65536"},
		{"stack deploy", []string{"stack", "deploy", "-c", compose, "shop"}, "more than 65536"},
	}
	for _, tc := range cliCases {
		t.Run("cli "+tc.name, func(t *testing.T) {
			_, _, err := h2.CLI(tc.args...)
			mustFail(t, err, strings.Join(tc.args, " "), tc.want)
		})
	}
	if after := servicesState(t, h1); after != before {
		t.Fatalf("refused writes changed the services:\n%s\n%s", before, after)
	}
}

// TestReadYourWritesAcrossNodes: an image imported on node 1 can be used by
// a service created through node 2 right after the import returns, every
// time (node 2's replica may trail the leader; the API must not decide on
// it).
func TestReadYourWritesAcrossNodes(t *testing.T) {
	c := harness.New(t, 3)
	c.Form(t)
	tar := busyboxTar(t)
	h1, h2 := c.Host(1), c.Host(2)
	failed := 0
	for i := 1; i <= 10; i++ {
		ref := fmt.Sprintf("ryw%d:1", i)
		h1.MustCLI(t, "image", "import", tar, ref)
		_, stderr, err := h2.CLI("service", "create", "-d", "--replicas", "0", "--name", fmt.Sprintf("ryw%d", i), ref)
		if err != nil {
			failed++
			t.Errorf("round %d: create of %s through node 2 right after its import on node 1: %s", i, ref, cliStderr(err)+stderr)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 10 rounds refused", failed)
	}
	// A service created through node 1 can be updated through node 3 at
	// once (the version node 3 reads must be the new one).
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("upd%d", i)
		h1.MustCLI(t, "service", "create", "-d", "--replicas", "0", "--name", name, "ryw1:1")
		if _, stderr, err := c.Host(3).CLI("service", "update", "-d", "--env-add", "A=1", name); err != nil {
			t.Errorf("update of %s through node 3 right after its creation: %s %s", name, cliStderr(err), stderr)
		}
	}
}
