package runtime

import (
	"context"
	"fmt"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/logfile"
)

// LogOptions select which log lines Logs returns (runtime/logfile's
// Options).
type LogOptions = logfile.Options

// Logs streams the container's stored output. The channel is closed when
// everything asked for was sent, or when ctx or Run ends. The log files are
// written (and rotated) by the node supervisor, so this only reads files:
// each opened without following links, as a regular file, with lines of at
// most logfile.MaxLine bytes (longer ones are skipped).
func (r *Runtime) Logs(ctx context.Context, idOrName string, opts LogOptions) (<-chan api.LogLine, error) {
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	id := c.rec.ID
	r.mu.Unlock()
	s, err := logfile.Open(r.pathsOf(c).Log, r.cfg.LogMaxFiles, opts, func(err error) {
		r.log.Warn("skipping a log file", "id", ShortID(id), "err", err)
	})
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", ShortID(id), err)
	}
	running := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return c.rec.State == api.ContainerRunning && !c.removed
	}
	ch := make(chan api.LogLine, 64)
	if !r.spawn(func() {
		defer close(ch)
		s.Send(ctx, r.runCtx.Done(), running, ch)
	}) {
		s.Close()
		return nil, ErrClosed
	}
	return ch, nil
}
