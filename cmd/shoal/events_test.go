package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// eventsAgent answers GET /v1/events with two events and records the query.
func eventsAgent(t *testing.T) (host string, query func() url.Values) {
	t.Helper()
	var mu sync.Mutex
	var last url.Values
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		last = r.URL.Query()
		mu.Unlock()
		enc := json.NewEncoder(w)
		_ = enc.Encode(api.Event{Time: time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC), Type: "service", Action: "created",
			ID: "s1", Name: "web", Attributes: map[string]string{"replicas": "2", "image": "bb:1"}})
		_ = enc.Encode(api.Event{Time: time.Date(2024, 1, 1, 11, 0, 1, 0, time.UTC), Type: "node", Action: "down",
			ID: "n2", Name: "h2", NodeID: "n2", Attributes: map[string]string{}})
	})
	sock := filepath.Join(t.TempDir(), "shoal.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return "unix://" + sock, func() url.Values { mu.Lock(); defer mu.Unlock(); return last }
}

func TestCLIEvents(t *testing.T) {
	host, query := eventsAgent(t)
	// runCLI's clock is 2024-01-01 12:00 UTC.
	out, stderr, code := runCLI(t, host, "", "events", "--since", "1h", "--until", "2024-01-01T12:30:00Z",
		"--filter", "type=service", "--filter", "type=node", "--filter", "name=web", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	q := query()
	if q.Get("since") != "2024-01-01T11:00:00Z" || q.Get("until") != "2024-01-01T12:30:00Z" ||
		strings.Join(q["type"], ",") != "service,node" || strings.Join(q["name"], ",") != "web" {
		t.Fatalf("query %v", q)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one JSON object per line, got %q", out)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "type", "action", "id", "name", "node_id", "attributes"} {
		if _, ok := ev[k]; !ok {
			t.Errorf("JSON event lacks %q: %s", k, lines[0])
		}
	}

	// As docker's: a duration is that long ago for --until too, so this
	// replays 11:50 to 11:59 and stops.
	if _, stderr, code := runCLI(t, host, "", "events", "--since", "10m", "--until", "1m"); code != 0 {
		t.Fatalf("--since 10m --until 1m: exit %d: %s", code, stderr)
	}
	if q := query(); q.Get("since") != "2024-01-01T11:50:00Z" || q.Get("until") != "2024-01-01T11:59:00Z" {
		t.Fatalf("--since 10m --until 1m: query %v", q)
	}

	out, _, code = runCLI(t, host, "", "events")
	if code != 0 || !strings.Contains(out, " service created s1 (name=web, image=bb:1, replicas=2)") ||
		!strings.Contains(out, " node down n2 (name=h2)") {
		t.Fatalf("text output (exit %d):\n%s", code, out)
	}
	if q := query(); len(q) != 0 {
		t.Fatalf("no flags sent %v", q)
	}

	for _, bad := range [][]string{
		{"--filter", "type=pod"}, {"--filter", "colour=red"}, {"--filter", "name="}, {"--since", "yesterday"},
		{"--until", "soon"}, {"--since", "1m", "--until", "1h"}, {"--format", "yaml"}, {"extra"},
	} {
		if _, stderr, code := runCLI(t, host, "", append([]string{"events"}, bad...)...); code != 2 {
			t.Errorf("events %v: exit %d (%s), want 2", bad, code, stderr)
		}
	}
}

// TestEventLineEscapesControlCharacters: event names and attributes come
// from every node's records; an event line prints no terminal escapes.
func TestEventLineEscapesControlCharacters(t *testing.T) {
	var b bytes.Buffer
	ev := api.Event{Type: "node", Action: "update", ID: "n1", Name: "w\x1b[2J",
		Attributes: map[string]string{"addr": "\x1b]52;c;aGk=\x07"}}
	if err := writeEventLine(&b, ev); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\x1b\x07") || !strings.Contains(b.String(), `name=w\x1b[2J`) {
		t.Fatalf("event line %q", b.String())
	}
}
