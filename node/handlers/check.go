package handlers

// A deploy's dry run (POST /v1/services/check). `shoal stack deploy`
// writes one object at a time; a refusal only the state can tell (an alias
// or published port another service holds, a name taken, a spec the
// leader refuses, a command some member's release cannot apply) used to
// arrive after the deploy's earlier writes were made, leaving it half
// applied. The CLI now sends every planned write here first. Each is
// built exactly as its route builds it (the same checks: checkSpec,
// createCommand, updateCommand, objectCommand, httpapi.CheckUpdate and
// CheckNetworkCreate) and run by the write path's Preflight against one
// fork of the replica, which then holds it, so the next write is checked
// against what the earlier ones leave (a removed service's port is free, a
// created network exists). Nothing is proposed; the fork is dropped.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/httpapi"
)

// CheckWrites runs req's writes in order against a fork of the replica
// (the route synced it) and returns the first refusal, naming its service
// or object once. It stops between writes once ctx is done: each write
// scans the services, so a large check would otherwise run on for minutes
// after its caller stopped waiting.
func (x *API) CheckWrites(ctx context.Context, req api.DeployCheck) error {
	store, err := x.agent.Store()
	if err != nil {
		return err
	}
	fork := store.Fork()
	now := time.Now().UTC()
	for _, req := range req.Networks {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("deploy check: %w", err)
		}
		name := strings.TrimSpace(req.Name)
		n, err := httpapi.CheckNetworkCreate(req, func(name string) string {
			var nets []api.Network
			for _, n := range fork.Networks() {
				nets = append(nets, *n)
			}
			return httpapi.NetworkNamed(nets, name)
		}, func() error { return nil })
		if err == nil {
			n.ID, n.CreatedAt = x.agent.NewID(), now
			n = WithShareLayout(fork, n)
			err = x.agent.Preflight(fork, &command.CreateNetwork{Network: n})
		}
		if err != nil {
			return naming("network "+name, name, err)
		}
	}
	// Stand-in data of each object's size, one buffer for all: the checks
	// read only its length.
	zeros := make([]byte, api.MaxSecretSize+1)
	for i, list := range [][]api.ObjectCheck{req.Secrets, req.Configs} {
		secret := i == 0
		for _, o := range list {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("deploy check: %w", err)
			}
			if o.Size < 0 {
				return naming(kindName(secret)+" "+o.Name, o.Name, httpapi.BadRequest("size %d", o.Size))
			}
			cr := api.SecretCreateRequest{Name: o.Name, Data: zeros[:min(o.Size, len(zeros))], Labels: o.Labels}
			err := CheckObject(cr, secret)
			var cmd command.Command
			if err == nil {
				cmd, err = objectCommand(fork, cr, secret, x.agent.NewID(), now)
			}
			if err == nil {
				err = x.agent.Preflight(fork, cmd)
			}
			if err != nil {
				return naming(kindName(secret)+" "+o.Name, o.Name, err)
			}
		}
	}
	for _, ref := range req.Remove {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("deploy check: %w", err)
		}
		cur, err := ResolveService(fork, ref)
		if err == nil {
			err = x.agent.Preflight(fork, &command.DeleteService{ID: cur.ID, Now: now})
		}
		if err != nil {
			return naming("remove service "+ref, ref, err)
		}
	}
	for _, u := range req.Update {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("deploy check: %w", err)
		}
		cur, err := ResolveService(fork, u.ID)
		if err != nil {
			return naming("update service "+u.ID, u.ID, err)
		}
		if err := x.checkUpdate(fork, cur, u); err != nil {
			return naming("update service "+cur.Name, cur.Name, err)
		}
	}
	for _, spec := range req.Create {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("deploy check: %w", err)
		}
		cmd, err := x.createCommand(fork, spec)
		if err == nil {
			err = x.agent.Preflight(fork, cmd)
		}
		if err != nil {
			return naming("create service "+spec.Name, spec.Name, err)
		}
	}
	return nil
}

// checkUpdate is the update route's path for u against fork.
func (x *API) checkUpdate(fork *consensus.Store, cur *api.Service, u api.ServiceUpdateCheck) error {
	spec, err := httpapi.CheckUpdate(cur, u.Spec)
	if err != nil {
		return err
	}
	if spec, err = x.checkSpec(fork, spec, cur.ID); err != nil {
		return err
	}
	return x.agent.Preflight(fork, updateCommand(cur, spec, u.Version))
}

// naming puts what a refusal is about in front of err unless err names it
// already (the FSM's and the leader's refusals do): the deploy's error
// names the service and the clash once.
func naming(what, name string, err error) error {
	if name != "" && strings.Contains(err.Error(), name) {
		return err
	}
	return &namedError{what: what, err: err}
}

// namedError keeps err's status (httpapi.StatusError, the sentinels)
// behind the prefix.
type namedError struct {
	what string
	err  error
}

func (e *namedError) Error() string { return e.what + ": " + e.err.Error() }
func (e *namedError) Unwrap() error { return e.err }
