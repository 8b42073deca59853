package runtime

import (
	"sync"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/eventhub"
	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/record"
)

// Spec is what a caller asks to run: `shoal run` through the HTTP API, or a
// task through the reconciler (runtime/record's Spec, kept in the record).
type Spec = record.Spec

// Event reports a change of a container's state or health (runtime/eventhub's
// Event). Events are sent on the channels returned by Subscribe.
type Event = eventhub.Event

// EventRemoved is the State of the event sent after a container is removed.
const EventRemoved = eventhub.Removed

// container is the in-memory state of one container. Fields below mu are
// guarded by Runtime.mu; op serializes lifecycle operations (start, stop,
// remove) on this container.
type container struct {
	op     sync.Mutex
	saveMu sync.Mutex

	rec    record.Record
	health string
	done   chan struct{} // closed when the current run ended
	// released is closed once finishExit has cleaned up after the run
	// being watched (nil: no run watched in this process).
	released chan struct{}
	removed  bool
	// stopHealth ends the health loop of the current run.
	stopHealth func()
}

func (c *container) apiLocked() api.Container { return c.rec.API(c.health) }

// pathsOf returns the paths of c, from the fields of its record that never
// change (so without r.mu).
func (r *Runtime) pathsOf(c *container) layout.Paths {
	return c.rec.Paths(r.cfg.Root)
}

// save persists c's record (record.Record.Save) unless c was removed.
func (r *Runtime) save(c *container) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	r.mu.Lock()
	if c.removed {
		r.mu.Unlock()
		return nil
	}
	rec := c.rec
	r.mu.Unlock()
	return rec.Save(r.cfg.Root)
}

// ShortID is the 12-character form of a container ID that `shoal ps` shows.
func ShortID(id string) string { return api.ShortID(id) }
