package test

// Linearizability of the cluster state under faults, checked with porcupine
// (test/lin explains the model). Concurrent clients, one per node, create,
// remove, scale, update and read services and set and read node labels
// through each node's API socket while a nemesis kills leaders, partitions
// minorities, restarts and pauses agents. Every history is checked: writes
// and ?consistent=1 reads must be linearizable, plain reads monotonic per
// node incarnation. A failing history and its visualization are kept in
// /tmp/shoal-lin-<test>-<time>/ (the path is logged).
//
//	go test -count=1 -run TestLinearizability -v ./test/
//	SHOAL_LIN_DURATION=10m SHOAL_LIN_NODES=5 go test -run TestLinearizability -timeout 30m ./test/   # make soak
//	SHOAL_LIN_BROKEN=stale-reads ...   # plain reads checked as linearizable: the checker must fail
//
// Knobs (environment): SHOAL_LIN_DURATION (total chaos time, default 60s),
// SHOAL_LIN_SEGMENT (one history per segment, default 60s), SHOAL_LIN_NODES
// (3), SHOAL_LIN_SEED, SHOAL_LIN_BROKEN.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/test/harness"
	"github.com/shoal-org/shoal/test/lin"
)

// linOpTimeout bounds one client operation: above the agent's write
// timeout (10 s), so an agent that answers at all answers in time; an
// operation cut by it has an unknown outcome.
const linOpTimeout = 15 * time.Second

func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return d
}

func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// keptDir is a directory that outlives the test (t.TempDir does not), for
// histories and visualizations of failures.
func keptDir(t testing.TB, prefix string) string {
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	return filepath.Join(os.TempDir(), fmt.Sprintf("%s-%s-%s", prefix, name, time.Now().Format("20060102-150405")))
}

func TestLinearizability(t *testing.T) {
	if testing.Short() {
		t.Skip("linearizability under faults skipped in -short mode")
	}
	total := envDuration(t, "SHOAL_LIN_DURATION", 60*time.Second)
	segment := envDuration(t, "SHOAL_LIN_SEGMENT", time.Minute)
	nodes := envInt(t, "SHOAL_LIN_NODES", 3)
	seed := int64(envInt(t, "SHOAL_LIN_SEED", int(time.Now().UnixNano()%1_000_000)))
	broken := os.Getenv("SHOAL_LIN_BROKEN") == "stale-reads"
	t.Logf("seed %d (SHOAL_LIN_SEED), %d nodes, %s of chaos in segments of %s", seed, nodes, total, segment)
	harness.Context(t, total+10*time.Minute)

	c := harness.New(t, nodes)
	c.Form(t)
	tar := busyboxTar(t)
	c.Host(1).MustCLI(t, "image", "import", tar, "bb:1")
	svcImportV2(t, c.Host(1), tar)

	hosts := c.Hosts()
	ids := nodeIDs(t, hosts...)
	nem := newNemesis(c, seed, t.Logf)
	dir := keptDir(t, "shoal-lin")

	histories, ops, violations := 0, 0, 0
	for seg := 0; total > 0; seg++ {
		d := min(segment, total)
		total -= d
		rep := linSegment(t, c, nem, ids, seg, seed+int64(seg), d, broken, filepath.Join(dir, fmt.Sprintf("segment-%d", seg)))
		histories++
		ops += rep.Ops + rep.PlainReads
		if !rep.OK() {
			violations++
		}
		if broken {
			if rep.OK() {
				t.Errorf("segment %d: broken mode (plain reads checked as linearizable) passed: no stale read was caught (%s)", seg, rep)
			}
			continue
		}
		if !rep.OK() {
			t.Errorf("segment %d: history is not linearizable: %s\nhistory and visualization kept in %s\nmonotonic-read violations:\n%s",
				seg, rep, rep.Written, strings.Join(rep.Monotonic, "\n"))
		}
	}
	t.Logf("figures: %d histories checked, %d operations (%.0f per history), faults injected: %d (%s), violations: %d",
		histories, ops, float64(ops)/float64(max(histories, 1)), nem.total(), nem.summary(), violations)
}

// linSegment runs one history: clients and nemesis for d, then heal, final
// reads through every node, and the check.
func linSegment(t *testing.T, c *harness.Cluster, nem *nemesis, ids []string, seg int, seed int64, d time.Duration, broken bool, dir string) lin.Report {
	t.Helper()
	hosts := c.Hosts()
	rec := lin.NewRecorder()
	svcs := []string{fmt.Sprintf("lin%d-a", seg), fmt.Sprintf("lin%d-b", seg)}
	label := fmt.Sprintf("lin%d", seg)
	clients := make([]*linClient, 0, 3)
	for i := 0; i < 3; i++ {
		h := hosts[i%len(hosts)]
		clients = append(clients, &linClient{
			id: i, h: h, rec: rec, nem: nem, rng: rand.New(rand.NewSource(seed*31 + int64(i))),
			svcs: svcs, nodeIDs: ids, label: label, api: mustClient(t, h),
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for _, cl := range clients {
		wg.Add(1)
		go func() { defer wg.Done(); cl.run(ctx) }()
	}
	nemDone := make(chan struct{})
	go func() { defer close(nemDone); nem.run(ctx, 3*time.Second, 12*time.Second, 2*time.Second) }()
	wg.Wait()
	<-nemDone // healed

	// Every node up and one leader again, then the final word: a
	// consistent read of every key through every node. An acknowledged
	// write that was lost shows here at the latest.
	c.WaitReady(t, 3*time.Minute, len(hosts))
	for i, h := range hosts {
		f := &linClient{id: 3 + i, h: h, rec: rec, nem: nem, rng: rand.New(rand.NewSource(seed)),
			svcs: svcs, nodeIDs: ids, label: label, api: mustClient(t, h)}
		for _, s := range svcs {
			f.readService(context.Background(), s, true)
		}
		for _, id := range ids {
			f.readLabel(context.Background(), id, true)
		}
	}
	// Replicas converge: every node's plain read matches the leader's.
	harness.Eventually(t, 2*time.Minute, func() (bool, string) {
		var want []string
		for i, h := range hosts {
			var got []string
			cl := mustClient(t, h)
			for _, s := range svcs {
				svc, err := cl.Service(context.Background(), s)
				switch {
				case client.IsNotFound(err):
					got = append(got, s+"=absent")
				case err != nil:
					return false, err.Error()
				default:
					got = append(got, fmt.Sprintf("%s=%d/%s", s, svc.Spec.Replicas, svc.Spec.Image))
				}
			}
			if i == 0 {
				want = got
			} else if strings.Join(got, " ") != strings.Join(want, " ") {
				return false, fmt.Sprintf("%s sees %v, h1 %v", h.Name, got, want)
			}
		}
		return true, ""
	}, "replicas converge after the last fault")

	history := rec.Operations()
	start := time.Now()
	rep, err := lin.Check(history, lin.Options{Timeout: 2 * time.Minute, PlainReadsLinearizable: broken, Dir: dir})
	if err != nil {
		t.Errorf("segment %d: %v", seg, err)
	}
	t.Logf("segment %d: %s (checked in %s)", seg, rep, time.Since(start).Round(time.Millisecond))
	if rep.Written != "" {
		t.Logf("segment %d: history and porcupine visualization kept in %s", seg, rep.Written)
	}
	return rep
}

func mustClient(t testing.TB, h *harness.Host) *client.Client {
	t.Helper()
	cl, err := client.New("unix://" + h.Socket)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// linClient issues random operations through one node's API and records
// them.
type linClient struct {
	id      int
	h       *harness.Host
	api     *client.Client
	rec     *lin.Recorder
	nem     *nemesis
	rng     *rand.Rand
	svcs    []string
	nodeIDs []string
	label   string
	seq     int
}

func (c *linClient) run(ctx context.Context) {
	for ctx.Err() == nil {
		if !c.h.Running() { // its agent is down: every call would fail at the dial
			wait(ctx, 200*time.Millisecond)
			continue
		}
		svc := c.svcs[c.rng.Intn(len(c.svcs))]
		node := c.nodeIDs[c.rng.Intn(len(c.nodeIDs))]
		// The operation itself is not cut by the end of the run: its
		// outcome would become unknown for no reason.
		opCtx := context.Background()
		switch p := c.rng.Intn(100); {
		case p < 18:
			c.readService(opCtx, svc, true)
		case p < 26:
			c.readService(opCtx, svc, false)
		case p < 32:
			c.listServices(opCtx)
		case p < 42:
			c.create(opCtx, svc)
		case p < 50:
			c.remove(opCtx, svc)
		case p < 64:
			c.scale(opCtx, svc)
		case p < 74:
			c.update(opCtx, svc)
		case p < 84:
			c.setLabel(opCtx, node)
		case p < 94:
			c.readLabel(opCtx, node, true)
		default:
			c.readLabel(opCtx, node, false)
		}
		wait(ctx, time.Duration(20+c.rng.Intn(60))*time.Millisecond)
	}
}

// invoke starts an operation on key through this client's node.
func (c *linClient) invoke(in lin.Input) (*lin.Pending, int) {
	in.Node = c.h.Name
	epoch := c.nem.epoch(c.h)
	in.Epoch = epoch
	return c.rec.Invoke(c.id, in), epoch
}

// done completes p, marking a read whose node restarted under it.
func (c *linClient) done(p *lin.Pending, epoch int, out lin.Output) {
	if c.nem.epoch(c.h) != epoch {
		p.Input().Epoch = -1
	}
	p.Complete(out)
}

func svcKey(name string) string { return "svc/" + name }

func (c *linClient) spec(name string, replicas uint64, image string) api.ServiceSpec {
	return api.ServiceSpec{Name: name, Replicas: replicas, Image: image,
		Command: []string{"sleep", "100000"}, StopGracePeriod: 2 * time.Second}
}

func (c *linClient) image() string { return []string{"bb:1", "bb:2"}[c.rng.Intn(2)] }

func (c *linClient) create(ctx context.Context, name string) {
	in := lin.Input{Kind: lin.Create, Key: svcKey(name), Replicas: uint64(c.rng.Intn(3)), Image: c.image()}
	p, ep := c.invoke(in)
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	_, err := c.api.CreateService(ctx, c.spec(name, in.Replicas, in.Image))
	c.done(p, ep, writeOutput(err))
}

func (c *linClient) remove(ctx context.Context, name string) {
	p, ep := c.invoke(lin.Input{Kind: lin.Remove, Key: svcKey(name)})
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	c.done(p, ep, writeOutput(c.api.RemoveService(ctx, name)))
}

func (c *linClient) scale(ctx context.Context, name string) {
	in := lin.Input{Kind: lin.Scale, Key: svcKey(name), Replicas: uint64(c.rng.Intn(3))}
	p, ep := c.invoke(in)
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	_, err := c.api.ScaleService(ctx, name, in.Replicas)
	c.done(p, ep, writeOutput(err))
}

// update is `service update --image`: a consistent read, then the whole
// spec written back under the version read (409 if it changed since).
func (c *linClient) update(ctx context.Context, name string) {
	in := lin.Input{Kind: lin.Update, Key: svcKey(name), Image: c.image()}
	p, ep := c.invoke(in)
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	cur, err := c.api.ServiceConsistent(ctx, name)
	if err != nil {
		out := writeOutput(err)
		if out.Result == lin.Unknown {
			out.Result = lin.FailRefused // nothing was written
		}
		c.done(p, ep, out)
		return
	}
	spec := cur.Spec
	spec.Image = in.Image
	_, err = c.api.UpdateService(ctx, cur.ID, cur.Version, spec)
	c.done(p, ep, writeOutput(err))
}

func (c *linClient) readService(ctx context.Context, name string, consistent bool) {
	p, ep := c.invoke(lin.Input{Kind: lin.Read, Key: svcKey(name), Consistent: consistent})
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	var s *api.Service
	var err error
	if consistent {
		s, err = c.api.ServiceConsistent(ctx, name)
	} else {
		s, err = c.api.Service(ctx, name)
	}
	c.done(p, ep, serviceOutput(s, err))
}

// listServices is a consistent `service ls`: one atomic read of every
// service, recorded as one read per key with the same interval (sound,
// though it does not check the atomicity across keys).
func (c *linClient) listServices(ctx context.Context) {
	type pend struct {
		p  *lin.Pending
		ep int
	}
	ps := map[string]pend{}
	for _, name := range c.svcs {
		p, ep := c.invoke(lin.Input{Kind: lin.Read, Key: svcKey(name), Consistent: true})
		ps[name] = pend{p, ep}
	}
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	all, err := c.api.ServicesConsistent(ctx)
	byName := map[string]*api.Service{}
	for i := range all {
		byName[all[i].Name] = &all[i]
	}
	for _, name := range c.svcs {
		out := lin.Output{Result: lin.Unknown}
		if err == nil {
			out = serviceOutput(byName[name], nil)
		}
		c.done(ps[name].p, ps[name].ep, out)
	}
}

func (c *linClient) setLabel(ctx context.Context, nodeID string) {
	c.seq++
	in := lin.Input{Kind: lin.LabelSet, Key: "node/" + nodeID, Value: fmt.Sprintf("c%d-%d", c.id, c.seq)}
	p, ep := c.invoke(in)
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	_, err := c.api.UpdateNode(ctx, nodeID, api.NodeUpdate{LabelAdd: map[string]string{c.label: in.Value}})
	c.done(p, ep, writeOutput(err))
}

func (c *linClient) readLabel(ctx context.Context, nodeID string, consistent bool) {
	p, ep := c.invoke(lin.Input{Kind: lin.LabelGet, Key: "node/" + nodeID, Consistent: consistent})
	ctx, cancel := context.WithTimeout(ctx, linOpTimeout)
	defer cancel()
	var n *api.Node
	var err error
	if consistent {
		n, err = nodeConsistent(ctx, c.h.Socket, nodeID)
	} else {
		n, err = c.api.Node(ctx, nodeID)
	}
	if err != nil {
		c.done(p, ep, lin.Output{Result: lin.Unknown, Err: err.Error()})
		return
	}
	c.done(p, ep, lin.Output{Result: lin.OK, Value: n.Labels[c.label], Version: n.Version})
}

// serviceOutput turns a service read into an Output; a 404 is a read of an
// absent service, any other error a read that observed nothing.
func serviceOutput(s *api.Service, err error) lin.Output {
	switch {
	case client.IsNotFound(err) || (err == nil && s == nil):
		return lin.Output{Result: lin.OK}
	case err != nil:
		return lin.Output{Result: lin.Unknown, Err: err.Error()}
	}
	return lin.Output{Result: lin.OK, Exists: true, Replicas: s.Spec.Replicas, Image: s.Spec.Image, Version: s.Version}
}

// writeOutput classifies the outcome of a write. Only answers that prove
// nothing was applied are failures: a refusal of the API or the state
// machine (4xx), or an agent that could not be dialled. Timeouts, 5xx (no
// quorum included: an earlier attempt of the agent's retry loop may have
// committed) and broken connections are unknown.
func writeOutput(err error) lin.Output {
	if err == nil {
		return lin.Output{Result: lin.OK}
	}
	out := lin.Output{Result: lin.Unknown, Err: err.Error()}
	var ae *client.APIError
	switch {
	case errors.Is(err, client.ErrUnreachable):
		out.Result = lin.FailRefused
	case errors.As(err, &ae):
		msg := strings.ToLower(ae.Message)
		switch {
		case ae.Status == http.StatusNotFound:
			out.Result = lin.FailNotFound
		case ae.Status == http.StatusConflict:
			out.Result = lin.FailConflict
		case ae.Status == http.StatusBadRequest && (strings.Contains(msg, "exists") || strings.Contains(msg, "taken")):
			out.Result = lin.FailExists
		case ae.Status >= 400 && ae.Status < 500:
			out.Result = lin.FailRefused
		}
	}
	return out
}

// nodeConsistent is GET /v1/nodes/{id}?consistent=1, which client.Client has
// no method for.
func nodeConsistent(ctx context.Context, socket, id string) (*api.Node, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	defer hc.CloseIdleConnections()
	u := "http://shoal/" + api.APIVersion + "/nodes/" + url.PathEscape(id) + "?consistent=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var er api.ErrorResponse
		_ = json.Unmarshal(body, &er)
		return nil, &client.APIError{Status: resp.StatusCode, Message: er.Error}
	}
	var n api.Node
	if err := json.Unmarshal(body, &n); err != nil {
		return nil, fmt.Errorf("decode node: %w", err)
	}
	return &n, nil
}
