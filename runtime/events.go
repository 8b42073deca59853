package runtime

import "time"

// Subscribe returns a channel of container events (state and health
// changes). Events are dropped, with a warning, for a subscriber whose
// buffer is full, so consumers should also resync with List. The channel is
// closed by Unsubscribe or when Run returns.
func (r *Runtime) Subscribe() <-chan Event { return r.events.Subscribe() }

// Unsubscribe stops and closes a channel returned by Subscribe.
func (r *Runtime) Unsubscribe(ch <-chan Event) { r.events.Unsubscribe(ch) }

// emit publishes c's current state.
func (r *Runtime) emit(c *container) {
	r.mu.Lock()
	ev := Event{
		ContainerID: c.rec.ID, Name: c.rec.Name, TaskID: c.rec.Spec.TaskID,
		State: c.rec.State, ExitCode: c.rec.ExitCode, Health: c.health, IP: c.rec.IP,
		Error: c.rec.Error, Time: time.Now().UTC(), OOMKilled: c.rec.OOMKilled,
	}
	r.mu.Unlock()
	r.events.Publish(ev)
}
