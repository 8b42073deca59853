package runtime

import "time"

// Subscribe returns a channel of container events (state and health
// changes). Events are dropped, with a warning, for a subscriber whose
// buffer is full, so consumers should also resync with List. The channel is
// closed by Unsubscribe or when Run returns.
func (r *Runtime) Subscribe() <-chan Event {
	ch := make(chan Event, 256)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		close(ch)
		return ch
	}
	r.subs[ch] = struct{}{}
	return ch
}

// Unsubscribe stops and closes a channel returned by Subscribe.
func (r *Runtime) Unsubscribe(ch <-chan Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.subs {
		if (<-chan Event)(c) == ch {
			delete(r.subs, c)
			close(c)
		}
	}
}

// emit publishes c's current state.
func (r *Runtime) emit(c *container) {
	r.mu.Lock()
	ev := Event{
		ContainerID: c.rec.ID, Name: c.rec.Name, TaskID: c.rec.Spec.TaskID,
		State: c.rec.State, ExitCode: c.rec.ExitCode, Health: c.health, IP: c.rec.IP,
		Error: c.rec.Error, Time: time.Now().UTC(), OOMKilled: c.rec.OOMKilled,
	}
	r.mu.Unlock()
	r.publish(ev)
}

func (r *Runtime) publish(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch := range r.subs {
		select {
		case ch <- ev:
		default:
			r.log.Warn("event dropped: subscriber is slow", "id", ShortID(ev.ContainerID), "state", ev.State)
		}
	}
}
