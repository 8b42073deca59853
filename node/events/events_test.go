package node

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime"
)

var evNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func evState(nodes []*api.Node, svcs []*api.Service, tasks []*api.Task) eventState {
	st := eventState{nodes: map[string]*api.Node{}, services: map[string]*api.Service{}, tasks: map[string]*api.Task{}}
	for _, n := range nodes {
		st.nodes[n.ID] = n
	}
	for _, s := range svcs {
		st.services[s.ID] = s
	}
	for _, t := range tasks {
		st.tasks[t.ID] = t
	}
	return st
}

func evNode(id, status string, mods ...func(*api.Node)) *api.Node {
	n := &api.Node{ID: id, Hostname: "h-" + id, Addr: "10.0.0.1", Status: status, Availability: api.AvailabilityActive,
		CreatedAt: evNow.Add(-time.Hour), UpdatedAt: evNow.Add(-time.Minute), StatusChangedAt: evNow.Add(-30 * time.Second)}
	for _, m := range mods {
		m(n)
	}
	return n
}

func evSvc(id string, replicas uint64, mods ...func(*api.Service)) *api.Service {
	s := &api.Service{ID: id, Name: "svc-" + id, Version: 1, CreatedAt: evNow.Add(-time.Hour), UpdatedAt: evNow.Add(-2 * time.Minute),
		Spec: api.ServiceSpec{Name: "svc-" + id, Mode: api.ModeReplicated, Replicas: replicas, Image: "busybox"}}
	for _, m := range mods {
		m(s)
	}
	return s
}

func evTask(id, state, desired string, mods ...func(*api.Task)) *api.Task {
	t := &api.Task{ID: id, Name: "svc-s1." + id, Service: "svc-s1", ServiceID: "s1", Slot: 1, NodeID: "n1",
		State: state, DesiredState: desired, CreatedAt: evNow.Add(-time.Hour), UpdatedAt: evNow.Add(-3 * time.Minute)}
	for _, m := range mods {
		m(t)
	}
	return t
}

// brief renders an event as "type action name [k=v…]" for the keys a case
// names, so a table can spell the expectation out.
func brief(ev api.Event, keys ...string) string {
	s := ev.Type + " " + ev.Action + " " + ev.Name
	for _, k := range keys {
		if v, ok := ev.Attributes[k]; ok {
			s += " " + k + "=" + v
		}
	}
	return s
}

func TestDiffEvents(t *testing.T) {
	n1 := evNode("n1", api.NodeReady)
	s1 := evSvc("s1", 2)
	running := evTask("t1", api.TaskRunning, api.TaskRunning)
	cases := []struct {
		name     string
		old, cur eventState
		keys     []string
		want     []string
		// wantTime, when set, is the time of every event.
		wantTime time.Time
	}{
		{name: "no change", old: evState([]*api.Node{n1}, []*api.Service{s1}, []*api.Task{running}),
			cur: evState([]*api.Node{n1}, []*api.Service{s1}, []*api.Task{running})},
		{name: "node joins, dated by its record", old: evState(nil, nil, nil),
			cur: evState([]*api.Node{n1}, nil, nil), keys: []string{"status"},
			want: []string{"node joined h-n1 status=ready"}, wantTime: n1.CreatedAt},
		{name: "node goes down, dated when its status changed",
			old: evState([]*api.Node{n1}, nil, nil), cur: evState([]*api.Node{evNode("n1", api.NodeDown)}, nil, nil),
			keys: []string{"status", "previous_status"},
			want: []string{"node down h-n1 status=down previous_status=ready"}, wantTime: n1.StatusChangedAt},
		{name: "node comes back",
			old: evState([]*api.Node{evNode("n1", api.NodeDown)}, nil, nil), cur: evState([]*api.Node{n1}, nil, nil),
			want: []string{"node ready h-n1"}},
		{name: "node drained and promoted",
			old:  evState([]*api.Node{n1}, nil, nil),
			cur:  evState([]*api.Node{evNode("n1", api.NodeReady, func(n *api.Node) { n.Availability = api.AvailabilityDrain; n.Voter = true })}, nil, nil),
			keys: []string{"availability"},
			want: []string{"node promoted h-n1", "node updated h-n1 availability=drain"}},
		{name: "node removed, dated now", old: evState([]*api.Node{n1}, nil, nil), cur: evState(nil, nil, nil),
			want: []string{"node removed h-n1"}, wantTime: evNow},
		{name: "service created with its tasks, then its tasks in slot order",
			old: evState(nil, nil, nil),
			cur: evState(nil, []*api.Service{s1}, []*api.Task{
				evTask("t2", api.TaskAssigned, api.TaskRunning, func(t *api.Task) { t.Slot = 2 }),
				evTask("t1", api.TaskAssigned, api.TaskRunning),
			}),
			keys: []string{"replicas", "slot"},
			want: []string{"service created svc-s1 replicas=2", "task assigned svc-s1.t1 slot=1", "task assigned svc-s1.t2 slot=2"}},
		{name: "scale is not an update",
			old: evState(nil, []*api.Service{s1}, nil), cur: evState(nil, []*api.Service{evSvc("s1", 5)}, nil),
			keys: []string{"replicas", "previous_replicas"},
			want: []string{"service scaled svc-s1 replicas=5 previous_replicas=2"}, wantTime: s1.UpdatedAt},
		{name: "image change is an update",
			old:  evState(nil, []*api.Service{s1}, nil),
			cur:  evState(nil, []*api.Service{evSvc("s1", 2, func(s *api.Service) { s.Spec.Image = "nginx"; s.Spec.Name = "svc-s1" })}, nil),
			keys: []string{"image", "previous_image"},
			want: []string{"service updated svc-s1 image=nginx previous_image=busybox"}},
		{name: "update status change",
			old: evState(nil, []*api.Service{s1}, nil),
			cur: evState(nil, []*api.Service{evSvc("s1", 2, func(s *api.Service) {
				s.UpdateStatus = &api.UpdateStatus{State: api.UpdateRollbackStarted, Message: "task failed"}
			})}, nil),
			keys: []string{"state", "message"},
			want: []string{"service update_status svc-s1 state=rollback_started message=task failed"}},
		{name: "task moves to running", old: evState(nil, nil, []*api.Task{evTask("t1", api.TaskStarting, api.TaskRunning)}),
			cur: evState(nil, nil, []*api.Task{running}), keys: []string{"previous_state", "service"},
			want: []string{"task running svc-s1.t1 previous_state=starting service=svc-s1"}, wantTime: running.UpdatedAt},
		{name: "task fails with its code",
			old:  evState(nil, nil, []*api.Task{running}),
			cur:  evState(nil, nil, []*api.Task{evTask("t1", api.TaskFailed, api.TaskRunning, func(t *api.Task) { t.ExitCode = 3; t.Error = "boom" })}),
			keys: []string{"exit_code", "error"},
			want: []string{"task failed svc-s1.t1 exit_code=3 error=boom"}},
		{name: "service removed after its tasks were told to stop",
			old:  evState(nil, []*api.Service{s1}, []*api.Task{running}),
			cur:  evState(nil, nil, []*api.Task{evTask("t1", api.TaskRunning, api.TaskShutdown)}),
			keys: []string{"desired_state"},
			want: []string{"task desired_state svc-s1.t1 desired_state=shutdown", "service removed svc-s1"}},
		{name: "trimmed task", old: evState(nil, nil, []*api.Task{running}), cur: evState(nil, nil, nil),
			want: []string{"task removed svc-s1.t1"}, wantTime: evNow},
		{name: "health", old: evState(nil, nil, []*api.Task{running}),
			cur:  evState(nil, nil, []*api.Task{evTask("t1", api.TaskRunning, api.TaskRunning, func(t *api.Task) { t.Health = api.HealthHealthy })}),
			keys: []string{"health"}, want: []string{"task health_status svc-s1.t1 health=healthy"}},
		{name: "removed node comes last",
			old:  evState([]*api.Node{n1}, []*api.Service{s1}, nil),
			cur:  evState([]*api.Node{evNode("n2", api.NodeReady)}, nil, nil),
			want: []string{"node joined h-n2", "service removed svc-s1", "node removed h-n1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs := diffEvents(tc.old, tc.cur, evNow)
			var got []string
			for _, ev := range evs {
				got = append(got, brief(ev, tc.keys...))
				if !tc.wantTime.IsZero() && !ev.Time.Equal(tc.wantTime) {
					t.Errorf("%s: time %v, want %v", brief(ev), ev.Time, tc.wantTime)
				}
				if ev.ID == "" || ev.Attributes == nil {
					t.Errorf("%s: missing id or attributes: %+v", brief(ev), ev)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("events:\n got %q\nwant %q", got, tc.want)
			}
			// Pure: the same inputs give the same events.
			again := diffEvents(tc.old, tc.cur, evNow)
			if len(again) != len(evs) {
				t.Errorf("not deterministic: %d then %d events", len(evs), len(again))
			}
		})
	}
}

func TestContainerActions(t *testing.T) {
	ev := func(state, health string) runtime.Event { return runtime.Event{State: state, Health: health} }
	cases := []struct {
		name string
		prev *runtime.Event
		ev   runtime.Event
		want []string
	}{
		{"created", nil, ev(api.ContainerCreated, ""), []string{"create"}},
		{"started", &runtime.Event{State: api.ContainerCreated}, ev(api.ContainerRunning, ""), []string{"start"}},
		{"first seen running", nil, ev(api.ContainerRunning, ""), []string{"create", "start"}},
		{"exit", &runtime.Event{State: api.ContainerRunning}, ev(api.ContainerExited, ""), []string{"die"}},
		{"oom kill", &runtime.Event{State: api.ContainerRunning}, runtime.Event{State: api.ContainerExited, OOMKilled: true}, []string{"oom", "die"}},
		{"removed", &runtime.Event{State: api.ContainerExited}, ev(runtime.EventRemoved, ""), []string{"destroy"}},
		{"health", &runtime.Event{State: api.ContainerRunning, Health: api.HealthStarting}, ev(api.ContainerRunning, api.HealthHealthy), []string{"health_status"}},
		{"same again", &runtime.Event{State: api.ContainerRunning, Health: api.HealthHealthy}, ev(api.ContainerRunning, api.HealthHealthy), nil},
	}
	for _, tc := range cases {
		if got := containerActions(tc.prev, tc.ev); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestEventHubHistoryAndStreams(t *testing.T) {
	now := evNow
	h := newEventHub(func() time.Time { return now })
	at := func(d time.Duration, action string) api.Event {
		return api.Event{Time: evNow.Add(d), Type: api.EventService, Action: action}
	}
	h.publish(at(-2*time.Hour, "too-old"), at(-time.Minute, "a"), at(-time.Second, "b"))
	hist, sub, cancel := h.subscribe(evNow.Add(-90 * time.Second))
	if got := actions(hist); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("history since -90s: %q, want [a b] (older than an hour is dropped)", got)
	}
	h.publish(at(0, "c"))
	if ev := <-sub.ch; ev.Action != "c" {
		t.Fatalf("live event %q, want c", ev.Action)
	}
	cancel()
	cancel() // safe twice
	if _, ok := <-sub.ch; ok {
		t.Fatal("stream not closed by cancel")
	}
	// No since: no history.
	hist, _, cancel = h.subscribe(time.Time{})
	defer cancel()
	if len(hist) != 0 {
		t.Fatalf("history without since: %d events", len(hist))
	}

	// The history is bounded by count.
	for i := 0; i < maxEvents+10; i++ {
		h.publish(at(time.Duration(i), "x"))
	}
	if n := len(h.ring); n != maxEvents {
		t.Fatalf("ring holds %d events, want %d", n, maxEvents)
	}
}

func TestEventHubEndsSlowStream(t *testing.T) {
	h := newEventHub(func() time.Time { return evNow })
	_, sub, cancel := h.subscribe(time.Time{})
	defer cancel()
	for i := 0; i < subBuffer+1; i++ {
		h.publish(api.Event{Time: evNow, Action: "x"}) // never blocks
	}
	n := 0
	for range sub.ch {
		n++
	}
	if n != subBuffer {
		t.Fatalf("slow stream got %d events before it ended, want %d", n, subBuffer)
	}
}

func actions(evs []api.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Action)
	}
	return out
}

func TestEventFilter(t *testing.T) {
	task := api.Event{Type: api.EventTask, Name: "web.1", ID: "t1", Attributes: map[string]string{"service": "web"}}
	svc := api.Event{Type: api.EventService, Name: "web", ID: "s1", Attributes: map[string]string{}}
	node := api.Event{Type: api.EventNode, Name: "h1", ID: "n1", Attributes: map[string]string{}}
	cases := []struct {
		q    string
		want []bool // task, svc, node
	}{
		{"", []bool{true, true, true}},
		{"type=task", []bool{true, false, false}},
		{"type=task&type=node", []bool{true, false, true}},
		{"name=web", []bool{true, true, false}},
		{"name=web&type=service", []bool{false, true, false}},
		{"name=n1", []bool{false, false, true}},
	}
	for _, tc := range cases {
		q, _ := parseQuery(tc.q)
		f, err := parseEventFilter(q)
		if err != nil {
			t.Fatalf("%q: %v", tc.q, err)
		}
		got := []bool{f.match(task), f.match(svc), f.match(node)}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %v, want %v", tc.q, got, tc.want)
		}
	}
	for _, bad := range []string{"type=pod", "name=", "colour=red"} {
		q, _ := parseQuery(bad)
		if _, err := parseEventFilter(q); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func parseQuery(s string) (map[string][]string, error) {
	req := httptest.NewRequest(http.MethodGet, "/v1/events?"+s, nil)
	return req.URL.Query(), nil
}

func TestEventsEndpoint(t *testing.T) {
	a := newTestAgent(t)
	h := a.routes()
	evNow := time.Now().UTC().Add(-time.Minute) // within the kept hour
	a.obs.hub().publish(
		api.Event{Time: evNow, Type: api.EventService, Action: "created", Name: "web", ID: "s1"},
		api.Event{Time: evNow.Add(time.Second), Type: api.EventNode, Action: "down", Name: "h2", ID: "n2"},
		api.Event{Time: evNow.Add(2 * time.Second), Type: api.EventService, Action: "removed", Name: "web", ID: "s1"},
	)
	since := evNow.Add(-time.Minute).Format(time.RFC3339Nano)
	until := evNow.Add(1500 * time.Millisecond).Format(time.RFC3339Nano)

	// A past --until ends the stream after the replay.
	code, body := do(t, h, http.MethodGet, "/v1/events?since="+since+"&until="+until, "")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if got := decodeActions(t, string(body)); !slices.Equal(got, []string{"created", "down"}) {
		t.Fatalf("replay until +1.5s: %q", got)
	}
	_, body = do(t, h, http.MethodGet, "/v1/events?since="+since+"&until="+until+"&type=service", "")
	if got := decodeActions(t, string(body)); !slices.Equal(got, []string{"created"}) {
		t.Fatalf("replay of service events: %q", got)
	}

	for _, bad := range []string{"since=yesterday", "type=pod", "until=" + since + "&since=" + until, "bogus=1"} {
		if code, body := do(t, h, http.MethodGet, "/v1/events?"+bad, ""); code != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s), want 400", bad, code, body)
		}
	}
}

// TestEventsEndpointLive streams over a real HTTP server: history, then a
// live event, filtered.
func TestEventsEndpointLive(t *testing.T) {
	a := newTestAgent(t)
	srv := httptest.NewServer(a.routes())
	defer srv.Close()
	evNow := time.Now().UTC().Add(-time.Minute)
	a.obs.hub().publish(api.Event{Time: evNow, Type: api.EventService, Action: "created", Name: "web", ID: "s1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/events?type=service&since="+evNow.Add(-time.Second).Format(time.RFC3339Nano), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	next := func() api.Event {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	if ev := next(); ev.Action != "created" {
		t.Fatalf("first event %q, want the replayed created", ev.Action)
	}
	a.obs.hub().publish(api.Event{Time: time.Now(), Type: api.EventNode, Action: "down", Name: "h2"},
		api.Event{Time: time.Now(), Type: api.EventService, Action: "scaled", Name: "web"})
	if ev := next(); ev.Action != "scaled" {
		t.Fatalf("live event %q, want scaled (the node event is filtered out)", ev.Action)
	}
}

func decodeActions(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		if line == "" {
			continue
		}
		var ev api.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, ev.Action)
	}
	return out
}
