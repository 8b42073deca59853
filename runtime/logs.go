package runtime

import (
	"context"
	"errors"
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
	id, spec := c.rec.ID, c.rec.Spec
	r.mu.Unlock()
	if spec.LogNone {
		return nil, fmt.Errorf("%s: %w", ShortID(id), ErrLogsDisabled)
	}
	s, err := logfile.Open(r.pathsOf(c).Log, r.logMaxFiles(spec), opts, func(err error) {
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

// ErrLogsDisabled: the container keeps no log (its service's log driver
// is none). The words are docker's.
var ErrLogsDisabled = errors.New("configured logging driver does not support reading: the service has logging disabled (log driver none)")

// logMaxSize and logMaxFiles are a container's log rotation: its spec's,
// or the node's.
func (r *Runtime) logMaxSize(s Spec) int64 {
	if s.LogMaxSize > 0 {
		return s.LogMaxSize
	}
	return r.cfg.LogMaxSize
}

func (r *Runtime) logMaxFiles(s Spec) int {
	if s.LogMaxFiles > 0 {
		return s.LogMaxFiles
	}
	return r.cfg.LogMaxFiles
}
