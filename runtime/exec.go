package runtime

// Exec: a process started inside a running container (`shoal exec`),
// through the node supervisor, which becomes its parent and reports its
// exit. How, and why through the supervisor: runtime/execproc.

import (
	"context"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/execproc"
)

// ExecOptions describe a process to start in a running container, and an
// ExecProcess is one started by Exec (runtime/execproc's Options and
// Process: its stdio or terminal, signals and exit code).
type (
	ExecOptions = execproc.Options
	ExecProcess = execproc.Process
)

// Exec starts a process in the running container idOrName. It returns once
// the process runs (or runc failed to start it: ErrExecFailed with runc's
// message). The process outlives a cancelled ctx.
func (r *Runtime) Exec(ctx context.Context, idOrName string, opts ExecOptions) (*ExecProcess, error) {
	if err := r.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	id, state := c.rec.ID, c.rec.State
	r.mu.Unlock()
	if state != api.ContainerRunning {
		// Bare: the API and the CLI say which container ("exec in web.1:
		// container is not running"); a prefix here was a third one.
		return nil, ErrNotRunning
	}
	p := r.pathsOf(c)
	proc, err := execproc.ProcessSpec(p.Config, p.Rootfs, opts)
	if err != nil {
		return nil, err
	}
	l := &execproc.Launcher{
		Sup: r.sup, Runc: r.cfg.RuncBinary, RuncRoot: r.cfg.RuncRoot,
		Spawn: r.spawn, Stop: r.runCtx, Log: r.log,
	}
	return l.Start(ctx, id, proc, opts)
}
