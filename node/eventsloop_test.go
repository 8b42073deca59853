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
)

func TestEventsEndpoint(t *testing.T) {
	a := newTestAgent(t)
	h := a.routes()
	evNow := time.Now().UTC().Add(-time.Minute) // within the kept hour
	a.obs.hub().Publish(
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
	a.obs.hub().Publish(api.Event{Time: evNow, Type: api.EventService, Action: "created", Name: "web", ID: "s1"})
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
	a.obs.hub().Publish(api.Event{Time: time.Now(), Type: api.EventNode, Action: "down", Name: "h2"},
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
