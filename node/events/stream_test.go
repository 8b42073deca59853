package events

import (
	"log/slog"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestStreamUntilWithoutSince: ?until alone replays the kept events up to
// that time and ends, as docker's `events --until 1m` does; before, it
// answered nothing. ?since alone still replays from since, and neither
// replays nothing.
func TestStreamUntilWithoutSince(t *testing.T) {
	now := time.Now()
	h := NewHub(time.Now)
	h.Publish(
		api.Event{Time: now.Add(-2 * time.Minute), Type: api.EventService, Action: "a"},
		api.Event{Time: now.Add(-time.Minute), Type: api.EventService, Action: "b"},
		api.Event{Time: now.Add(-10 * time.Second), Type: api.EventService, Action: "c"},
	)
	get := func(q url.Values) []string {
		t.Helper()
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/v1/events?"+q.Encode(), nil)
		if _, err := stream(w, r, h, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("%v: %v", q, err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(w.Body.String()), "\n") {
			if i := strings.Index(line, `"action":"`); i >= 0 {
				got = append(got, strings.SplitN(line[i+10:], `"`, 2)[0])
			}
		}
		return got
	}
	rfc := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	if got := get(url.Values{"until": {rfc(now.Add(-30 * time.Second))}}); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("until -30s alone: %q, want [a b]", got)
	}
	if got := get(url.Values{"since": {rfc(now.Add(-90 * time.Second))}, "until": {rfc(now.Add(-time.Second))}}); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("since -90s until -1s: %q, want [b c]", got)
	}
}
