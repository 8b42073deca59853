package events

// The HTTP side of the history and the stream fan-out: GET /v1/events.

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/httpapi"
)

// StreamHandler answers GET /v1/events as JSON lines: the history from
// ?since, then live events until ?until or until the client leaves. hub
// is called once per request (the agent makes its hub on first use); a
// stream that falls SubBuffer events behind is ended and logged to log.
func StreamHandler(hub func() *Hub, log *slog.Logger) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) (any, error) {
		return stream(w, r, hub(), log)
	}
}

func stream(w http.ResponseWriter, r *http.Request, hub *Hub, log *slog.Logger) (any, error) {
	q := r.URL.Query()
	parseTime := func(key string) (time.Time, error) {
		v := q.Get(key)
		if v == "" {
			return time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, httpapi.BadRequest("invalid %s %q: want an RFC 3339 time", key, v)
		}
		return t, nil
	}
	since, err := parseTime("since")
	if err != nil {
		return nil, err
	}
	until, err := parseTime("until")
	if err != nil {
		return nil, err
	}
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		return nil, httpapi.BadRequest("--until %s is before --since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	filter, err := ParseFilter(q)
	if err != nil {
		return nil, httpapi.BadRequest("%v", err)
	}
	// docker's `events --until T` without --since replays what is kept up
	// to T; before, it answered nothing and ended (the history is replayed
	// only from a since).
	from := since
	if from.IsZero() && !until.IsZero() {
		from = time.Unix(0, 0)
	}
	hist, sub, cancel := hub.Subscribe(from)
	defer cancel()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()
	enc := json.NewEncoder(w)
	past := func(ev api.Event) bool { return !until.IsZero() && ev.Time.After(until) }
	for _, ev := range hist {
		if past(ev) {
			return httpapi.Streamed, nil
		}
		if filter.Match(ev) {
			if err := enc.Encode(ev); err != nil {
				return httpapi.Streamed, nil
			}
		}
	}
	flush()
	var untilC <-chan time.Time
	if !until.IsZero() {
		d := time.Until(until)
		if d <= 0 {
			return httpapi.Streamed, nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		untilC = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return httpapi.Streamed, nil
		case <-untilC:
			return httpapi.Streamed, nil
		case ev, ok := <-sub.Events():
			if !ok {
				log.Warn("event stream fell behind and was ended", "behind", SubBuffer)
				return httpapi.Streamed, nil
			}
			if past(ev) {
				return httpapi.Streamed, nil
			}
			if !filter.Match(ev) {
				continue
			}
			if err := enc.Encode(ev); err != nil {
				return httpapi.Streamed, nil
			}
			flush()
		}
	}
}
