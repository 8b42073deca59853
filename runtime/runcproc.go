package runtime

import (
	"context"

	runc "github.com/containerd/go-runc"

	"github.com/shoal-org/shoal/runtime/supervisor"
)

// oneProcRunc runs the agent's own runc commands with
// supervisor.RuncProcs, as the supervisor runs its own (the why is there).
// It offers only the commands the runtime uses, so that a new one cannot
// bypass the setting by accident.
type oneProcRunc struct{ r *runc.Runc }

func procsCtx(ctx context.Context) context.Context {
	return runc.WithExtraEnv(ctx, supervisor.RuncProcs)
}

func (o oneProcRunc) Delete(ctx context.Context, id string, opts *runc.DeleteOpts) error {
	return o.r.Delete(procsCtx(ctx), id, opts)
}

func (o oneProcRunc) Kill(ctx context.Context, id string, sig int, opts *runc.KillOpts) error {
	return o.r.Kill(procsCtx(ctx), id, sig, opts)
}

func (o oneProcRunc) List(ctx context.Context) ([]*runc.Container, error) {
	return o.r.List(procsCtx(ctx))
}
