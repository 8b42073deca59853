// Package eventhub fans the runtime's container events out to its
// subscribers (the agent's reconciler, the event stream of the API).
//
// It exists apart from the runtime because the contract is small and is
// the same for every subscriber: Publish never blocks (an event for a
// subscriber whose buffer is full is dropped, with a warning, so
// subscribers also resync from a list), a channel is closed by Unsubscribe
// or by Close, and after Close a new subscriber gets a closed channel.
package eventhub

import (
	"log/slog"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
)

// Event reports a change of a container's state or health. Events are sent
// on the channels returned by Hub.Subscribe.
type Event struct {
	ContainerID string    `json:"container_id"`
	Name        string    `json:"name"`
	TaskID      string    `json:"task_id,omitempty"`
	State       string    `json:"state"` // api.Container* or Removed
	ExitCode    int       `json:"exit_code"`
	Health      string    `json:"health,omitempty"`
	IP          string    `json:"ip,omitempty"`
	Error       string    `json:"error,omitempty"`
	Time        time.Time `json:"time"`
	// OOMKilled is set on an exit when the kernel's OOM killer struck in
	// the container's memory cgroup during the run.
	OOMKilled bool `json:"oom_killed,omitempty"`
}

// Removed is the State of the event sent after a container is removed.
const Removed = "removed"

// Hub holds the subscribers. Its methods are safe for concurrent use.
type Hub struct {
	log *slog.Logger // dropped events

	mu     sync.Mutex
	subs   map[chan Event]struct{}
	closed bool // Close was called: subscriber channels are closed
}

// New returns a Hub that logs dropped events to log.
func New(log *slog.Logger) *Hub {
	return &Hub{log: log, subs: map[chan Event]struct{}{}}
}

// Subscribe returns a channel of events, buffered for 256. It is closed by
// Unsubscribe or Close; after Close it is returned closed.
func (h *Hub) Subscribe() <-chan Event {
	ch := make(chan Event, 256)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		close(ch)
		return ch
	}
	h.subs[ch] = struct{}{}
	return ch
}

// Unsubscribe stops and closes a channel returned by Subscribe.
func (h *Hub) Unsubscribe(ch <-chan Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.subs {
		if (<-chan Event)(c) == ch {
			delete(h.subs, c)
			close(c)
		}
	}
}

// Publish sends ev to every subscriber without blocking.
func (h *Hub) Publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default:
			h.log.Warn("event dropped: subscriber is slow", "id", api.ShortID(ev.ContainerID), "state", ev.State)
		}
	}
}

// Close closes every subscriber's channel; later subscribers get a closed
// one. Safe to call twice.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.subs {
		close(ch)
		delete(h.subs, ch)
	}
}
