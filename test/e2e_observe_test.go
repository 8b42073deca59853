package test

// End-to-end tests of `shoal events` and --metrics-addr: real agents in
// network namespaces, the stream read on a node other than the one acted
// on, the metrics scraped from the root namespace over the bridge and
// parsed with the Prometheus text parser.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// metricsPort is where every agent of these tests serves /metrics: each
// host has its own namespace, so they all bind the same port.
const metricsPort = 9323

// eventStream runs `shoal events ARGS --format json` on h and collects
// what it prints until the test ends.
type eventStream struct{ lines *lineStream }

func startEventStream(t *testing.T, c *harness.Cluster, h *harness.Host, args ...string) *eventStream {
	t.Helper()
	return &eventStream{lines: startLineStream(t, c, h, append([]string{"events", "--format", "json"}, args...)...)}
}

// waitLive returns once the stream shows a change made after it started:
// it changes label key on h1's node until an `updated` event of that node
// comes (the first change may come before the CLI has connected).
func (s *eventStream) waitLive(t *testing.T, h1 *harness.Host, key string) {
	t.Helper()
	probe := 0
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		evs, err := s.snapshot()
		if err != nil {
			return false, err.Error()
		}
		if ok, _ := inOrder(evs, []milestone{{api.EventNode, "updated", hostname(h1)}}); ok {
			return true, ""
		}
		probe++
		if _, _, err := h1.CLI("node", "update", "--label-add", fmt.Sprintf("%s=%d", key, probe), hostname(h1)); err != nil {
			return false, err.Error()
		}
		return false, fmt.Sprintf("no node updated event after %d label changes", probe)
	}, "the event stream is live")
}

// snapshot returns the events printed so far; a line that is not an
// event is an error.
func (s *eventStream) snapshot() ([]api.Event, error) {
	lines, err := s.lines.snapshot()
	evs := make([]api.Event, 0, len(lines))
	for _, l := range lines {
		var ev api.Event
		if jerr := json.Unmarshal([]byte(l), &ev); jerr != nil {
			err = errors.Join(err, fmt.Errorf("line %q: %w", l, jerr))
			continue
		}
		evs = append(evs, ev)
	}
	return evs, err
}

// milestone is an event a test expects, matched by type, action, name.
type milestone struct{ typ, action, name string }

func (m milestone) String() string { return m.typ + " " + m.action + " " + m.name }

// inOrder reports whether evs contains want as a subsequence, and where it
// got stuck otherwise.
func inOrder(evs []api.Event, want []milestone) (bool, string) {
	i := 0
	for _, ev := range evs {
		if i < len(want) && ev.Type == want[i].typ && ev.Action == want[i].action && ev.Name == want[i].name {
			i++
		}
	}
	if i == len(want) {
		return true, ""
	}
	var seen []string
	for _, ev := range evs {
		if ev.Type != api.EventContainer {
			seen = append(seen, ev.Type+" "+ev.Action+" "+ev.Name)
		}
	}
	if len(seen) > 40 {
		seen = seen[len(seen)-40:]
	}
	return false, fmt.Sprintf("waiting for %q (after %d of %d); seen (last 40): %q", want[i], i, len(want), seen)
}

// TestEventsAndMetrics: three nodes serving metrics; `shoal events` on
// node 3 sees a service created, scaled and removed and a node killed, all
// done through node 1, in that order, and `--since` replays them; every
// node's metrics parse, exactly one node reports itself leader, and the
// running containers each node reports match the tasks running there.
func TestEventsAndMetrics(t *testing.T) {
	c := harness.New(t, 3, harness.WithAgentArgs("--metrics-addr", fmt.Sprintf(":%d", metricsPort)))
	c.Form(t)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	h1.MustCLI(t, "image", "import", busyboxTar(t), "bb:1")
	start := time.Now().Add(-time.Second) // the same clock as the agents'
	stream := startEventStream(t, c, h3)
	stream.waitLive(t, h1, "observe")
	h1.MustCLI(t, "service", "create", "--name", "ev", "--replicas", "2", "bb:1", "sleep", "1000")
	// ev.1 running and the scale are not ordered by anything but this wait:
	// without it the scale may commit before ev.1 reports running (CI saw
	// it), and the milestones below would be out of order by design.
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		tasks := tasksOf(t, h1, "ev")
		perNode, bad := runningBySlot(tasks, 2, "")
		return bad == "", fmt.Sprintf("%v %s", perNode, bad)
	}, "2 tasks of ev running")
	h1.MustCLI(t, "service", "scale", "ev=4")
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		tasks := tasksOf(t, h1, "ev")
		perNode, bad := runningBySlot(tasks, 4, "")
		return bad == "", fmt.Sprintf("%v %s", perNode, bad)
	}, "4 tasks of ev running")

	// Metrics, while every node is up and ev runs.
	ids := map[string]*harness.Host{}
	for _, h := range c.Hosts() {
		ids[h.NodeID(t)] = h
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		return checkMetrics(t, ids, h1)
	}, "metrics of every node agree with the cluster")

	h1.MustCLI(t, "service", "rm", "ev")
	if err := h2.Kill(); err != nil {
		t.Fatal(err)
	}
	want := []milestone{
		{api.EventService, "created", "ev"},
		{api.EventTask, api.TaskRunning, "ev.1"},
		{api.EventService, "scaled", "ev"},
		{api.EventTask, api.TaskRunning, "ev.4"},
		{api.EventService, "removed", "ev"},
		{api.EventNode, api.NodeDown, hostname(h2)},
	}
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		evs, err := stream.snapshot()
		if err != nil {
			return false, err.Error()
		}
		return inOrder(evs, want)
	}, "the live stream on node 3 shows create, scale, rm and the node down in order")
	evs, _ := stream.snapshot()
	// Node 3's own containers of ev started and died in its stream.
	h3ID := h3.NodeID(t)
	var h3Tasks int
	for _, ev := range evs {
		if ev.Type == api.EventTask && ev.Action == api.TaskRunning && ev.NodeID == h3ID && ev.Attributes["service"] == "ev" {
			h3Tasks++
		}
	}
	if h3Tasks > 0 {
		var starts, dies int
		for _, ev := range evs {
			if ev.Type == api.EventContainer && ev.Attributes["service"] == "ev" && ev.NodeID == h3ID {
				if ev.Action == "start" {
					starts++
				}
			}
		}
		if starts < h3Tasks {
			t.Errorf("node 3 ran %d tasks of ev but its stream shows %d container starts", h3Tasks, starts)
		}
		harness.Eventually(t, 60*time.Second, func() (bool, string) {
			evs, _ := stream.snapshot()
			dies = 0
			for _, ev := range evs {
				if ev.Type == api.EventContainer && ev.Action == "die" && ev.Attributes["service"] == "ev" {
					dies++
				}
			}
			return dies >= h3Tasks, fmt.Sprintf("%d container die events of ev, want %d", dies, h3Tasks)
		}, "node 3's containers of ev die after the service is removed")
	}
	for _, ev := range evs {
		if ev.Type == api.EventService && ev.Action == "scaled" && ev.Name == "ev" {
			if ev.Attributes["replicas"] != "4" || ev.Attributes["previous_replicas"] != "2" {
				t.Errorf("scaled event attributes %v, want replicas 4 from 2", ev.Attributes)
			}
		}
		if ev.Time.IsZero() || ev.ID == "" {
			t.Errorf("event without time or id: %+v", ev)
		}
	}

	// --since replays after the fact; --until ends the stream.
	var replay []api.Event
	out := h3.MustCLI(t, "events", "--format", "json", "--since", start.UTC().Format(time.RFC3339Nano),
		"--until", time.Now().UTC().Format(time.RFC3339Nano))
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("replay line %q: %v", line, err)
		}
		replay = append(replay, ev)
	}
	if ok, status := inOrder(replay, want); !ok {
		t.Fatalf("--since replay: %s", status)
	}
	for _, ev := range replay {
		t.Logf("replayed: %s %s %s %s %v", ev.Time.Format("15:04:05.000"), ev.Type, ev.Action, ev.Name, ev.Attributes)
	}
	// Filters: only service events of ev.
	out = h3.MustCLI(t, "events", "--format", "json", "--filter", "type=service", "--filter", "name=ev",
		"--since", start.UTC().Format(time.RFC3339Nano), "--until", time.Now().UTC().Format(time.RFC3339Nano))
	var actions []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("filtered line %q: %v", line, err)
		}
		if ev.Type != api.EventService || ev.Name != "ev" {
			t.Errorf("filter let through %s %s %s", ev.Type, ev.Action, ev.Name)
		}
		actions = append(actions, ev.Action)
	}
	if strings.Join(actions, " ") != "created scaled removed" {
		t.Errorf("filtered service events %q, want created scaled removed", actions)
	}
	// Bad input is refused.
	for _, bad := range []struct {
		args []string
		word string
	}{
		{[]string{"--filter", "type=pod"}, "type is node, service, task or container"},
		{[]string{"--filter", "colour=red"}, "keys are type and name"},
		{[]string{"--since", "yesterday"}, "--since"},
		{[]string{"--format", "yaml"}, "--format"},
	} {
		_, _, err := h3.CLI(append([]string{"events"}, bad.args...)...)
		mustFail(t, err, "events "+strings.Join(bad.args, " "), bad.word)
	}
}

// scrape fetches and parses one host's metrics from the root namespace.
func scrape(h *harness.Host) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d/metrics", h.IP, metricsPort), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// value returns the value of the sample of family name whose labels
// include want (nil: the only sample), and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// checkMetrics scrapes every host and checks the required families and
// their values against the cluster as h lists it.
func checkMetrics(t *testing.T, ids map[string]*harness.Host, h *harness.Host) (bool, string) {
	t.Helper()
	var tasks []api.Task
	if err := h.JSON(&tasks, "service", "ps", "ev"); err != nil {
		return false, err.Error()
	}
	runningOn := map[string]int{}
	for _, tk := range tasks {
		if tk.State == api.TaskRunning {
			runningOn[tk.NodeID]++
		}
	}
	required := []string{
		"shoal_node_info", "shoal_raft_leader", "shoal_raft_term", "shoal_raft_last_log_index",
		"shoal_raft_commit_index", "shoal_raft_applied_index", "shoal_raft_voters", "shoal_raft_log_size_bytes",
		"shoal_raft_commit_duration_seconds", "shoal_raft_apply_duration_seconds",
		"shoal_gossip_members", "shoal_gossip_probe_duration_seconds",
		"shoal_tasks", "shoal_node_tasks", "shoal_scheduler_pending_tasks", "shoal_scheduler_plan_duration_seconds",
		"shoal_containers", "shoal_container_start_duration_seconds",
		"shoal_lb_backends", "shoal_lb_sync_duration_seconds", "shoal_overlay_peers", "shoal_overlay_sync_errors_total",
	}
	leaders := 0
	for id, host := range ids {
		mfs, err := scrape(host)
		if err != nil {
			return false, fmt.Sprintf("scrape %s: %v", host.Name, err)
		}
		for _, name := range required {
			if mfs[name] == nil {
				return false, fmt.Sprintf("%s: %s missing", host.Name, name)
			}
		}
		if _, ok := value(mfs, "shoal_node_info", map[string]string{"node_id": id}); !ok {
			return false, fmt.Sprintf("%s: shoal_node_info does not name node %s", host.Name, id)
		}
		l, _ := value(mfs, "shoal_raft_leader", nil)
		leaders += int(l)
		if n, _ := value(mfs, "shoal_raft_commit_duration_seconds", nil); l == 1 && n == 0 {
			return false, fmt.Sprintf("%s leads but timed no commit", host.Name)
		}
		if n, _ := value(mfs, "shoal_raft_apply_duration_seconds", nil); n == 0 {
			return false, fmt.Sprintf("%s timed no apply", host.Name)
		}
		checks := []struct {
			name   string
			labels map[string]string
			want   float64
		}{
			{"shoal_containers", map[string]string{"state": "running"}, float64(runningOn[id])},
			{"shoal_node_tasks", map[string]string{"state": "running"}, float64(runningOn[id])},
			{"shoal_tasks", map[string]string{"state": "running"}, 4},
			{"shoal_raft_voters", nil, 3},
			{"shoal_gossip_members", map[string]string{"state": "alive"}, 3},
			{"shoal_gossip_members", map[string]string{"state": "dead"}, 0},
			{"shoal_overlay_peers", nil, 2},
			{"shoal_lb_backends", map[string]string{"service": "ev"}, 4},
		}
		for _, ck := range checks {
			if v, ok := value(mfs, ck.name, ck.labels); !ok || v != ck.want {
				return false, fmt.Sprintf("%s: %s%v = %v (present %v), want %v", host.Name, ck.name, ck.labels, v, ok, ck.want)
			}
		}
		if term, _ := value(mfs, "shoal_raft_term", nil); term < 1 {
			return false, fmt.Sprintf("%s: raft term %v", host.Name, term)
		}
		if n, _ := value(mfs, "shoal_gossip_probe_duration_seconds", nil); n == 0 {
			return false, fmt.Sprintf("%s: no gossip probe timed yet", host.Name)
		}
		if runningOn[id] > 0 {
			if n, _ := value(mfs, "shoal_container_start_duration_seconds", nil); n < 1 {
				return false, fmt.Sprintf("%s: no container start timed", host.Name)
			}
			for _, name := range []string{"shoal_container_cpu_usage_seconds_total", "shoal_container_memory_usage_bytes",
				"shoal_container_network_receive_bytes_total"} {
				if _, ok := value(mfs, name, map[string]string{"service": "ev"}); !ok {
					return false, fmt.Sprintf("%s: %s{service=ev} missing", host.Name, name)
				}
			}
			if v, _ := value(mfs, "shoal_container_memory_usage_bytes", map[string]string{"service": "ev"}); v <= 0 {
				return false, fmt.Sprintf("%s: container memory %v", host.Name, v)
			}
		}
	}
	if testing.Verbose() && leaders == 1 {
		for _, host := range ids {
			mfs, _ := scrape(host)
			var names []string
			for name := range mfs {
				if strings.HasPrefix(name, "shoal_") {
					names = append(names, name)
				}
			}
			t.Logf("%s exports %d shoal_ families", host.Name, len(names))
			break
		}
	}
	if leaders != 1 {
		return false, fmt.Sprintf("%d nodes report shoal_raft_leader 1, want exactly one", leaders)
	}
	return true, ""
}

// TestEventsContainerOOM: a container killed by the OOM killer shows an
// oom event before its die event on its node.
func TestEventsContainerOOM(t *testing.T) {
	c := harness.New(t, 1)
	c.Form(t)
	h := c.Host(1)
	h.MustCLI(t, "image", "import", busyboxTar(t), "bb:1")
	start := time.Now().Add(-time.Second)
	// tail keeps the whole newline-free stream in memory.
	_, _, err := h.CLI("run", "--name", "hog", "--memory", "16M", "bb:1", "sh", "-c", "head -c 300000000 /dev/zero | tail")
	if err == nil {
		t.Fatal("the memory hog exited 0; want it OOM-killed")
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		out, _, err := h.CLI("events", "--format", "json", "--filter", "type=container", "--filter", "name=hog",
			"--since", start.UTC().Format(time.RFC3339Nano), "--until", time.Now().UTC().Format(time.RFC3339Nano))
		if err != nil {
			return false, err.Error()
		}
		var evs []api.Event
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev api.Event
			if json.Unmarshal([]byte(line), &ev) == nil {
				evs = append(evs, ev)
			}
		}
		return inOrder(evs, []milestone{
			{api.EventContainer, "start", "hog"},
			{api.EventContainer, "oom", "hog"},
			{api.EventContainer, "die", "hog"},
		})
	}, "oom and die events of the memory hog")
}

// TestEventsVoterChanges: the promoted and demoted node events follow the
// real raft configuration. The nodes that join a one-voter cluster become
// voters once it has three (autopilot), `node update --role worker` makes
// one stop voting and `--role manager` a voter again; each change shows in
// `shoal events`, replayed and in a live stream on another node. The stored Voter used to
// be written at bootstrap only: none of these events ever fired.
func TestEventsVoterChanges(t *testing.T) {
	harness.Context(t, 240*time.Second)
	c := harness.New(t, 3)
	start := time.Now().Add(-time.Second) // the same clock as the agents'
	c.Form(t)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	// count returns how many events of type node with action each node
	// (by hostname) has, replayed on h.
	count := func(h *harness.Host, action string) (map[string]int, string) {
		out, _, err := h.CLI("events", "--format", "json", "--filter", "type=node",
			"--since", start.UTC().Format(time.RFC3339Nano), "--until", time.Now().UTC().Format(time.RFC3339Nano))
		if err != nil {
			return nil, err.Error()
		}
		per := map[string]int{}
		var seen []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var ev api.Event
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				return nil, fmt.Sprintf("line %q: %v", line, err)
			}
			seen = append(seen, ev.Action+" "+ev.Name)
			if ev.Action == action {
				per[ev.Name]++
				want := "true"
				if action == "demoted" {
					want = "false"
				}
				if ev.Attributes["voter"] != want || ev.NodeID == "" || ev.Time.Before(start) {
					return nil, fmt.Sprintf("bad %s event %+v", action, ev)
				}
			}
		}
		return per, fmt.Sprintf("node events on %s: %q", h.Name, seen)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		per, desc := count(h1, "promoted")
		return per[hostname(h2)] == 1 && per[hostname(h3)] == 1 && per[hostname(h1)] == 0, desc
	}, "promoted events of the two joined nodes")

	leader := c.Leader(t, electionTimeout)
	worker := h3
	if leader == h3 {
		worker = h2
	}
	h1.MustCLI(t, "node", "update", "--role", "worker", worker.NodeID(t))
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		// Two managers left: autopilot keeps one voter (VoterTarget), so
		// the other follower may be demoted too; the leader never is.
		per, desc := count(h1, "demoted")
		return per[hostname(worker)] == 1 && per[hostname(leader)] == 0, desc
	}, "a demoted event of the node made a worker")
	h2.MustCLI(t, "node", "update", "--role", "manager", worker.NodeID(t))
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		per, desc := count(h1, "promoted")
		return per[hostname(worker)] == 2, desc
	}, "a second promoted event once it is a manager again")
	// Another node's stream, live before the change, sees it too.
	other := h2
	if worker == h2 {
		other = h3
	}
	stream := startEventStream(t, c, other, "--filter", "type=node")
	stream.waitLive(t, h1, "voter")
	h1.MustCLI(t, "node", "update", "--role", "worker", worker.NodeID(t))
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		evs, err := stream.snapshot()
		if err != nil {
			return false, err.Error()
		}
		return inOrder(evs, []milestone{{api.EventNode, "updated", hostname(h1)}, {api.EventNode, "demoted", hostname(worker)}})
	}, "the live stream on %s shows the demotion", other.Name)
}
