package progress

// Waiting for a service to converge after create/update/scale/rollback, the
// way `docker service create` does without -d (and `stack deploy
// --detach=false`, service by service): poll the service and its tasks,
// print one line per slot when its state changes (the verdict of each poll
// is Assess), and stop when it is done or failed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/output"
)

// errNotConverged is returned when the wait times out.
var errNotConverged = errors.New("service did not converge")

// Wait polls service id until it converges, fails or timeout passes,
// printing per-slot progress lines on out unless quiet. Transient API
// errors are retried until the timeout. It polls again as soon as the
// agent's event stream says the service or one of its tasks changed
// (watchService), and every poll regardless, so a lost or missing stream
// only costs latency.
func Wait(ctx context.Context, cl *client.Client, out io.Writer, poll time.Duration, id, op string, timeout time.Duration, quiet bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	began := time.Now()
	var changed <-chan struct{}
	printed := map[string]string{}
	var ignore map[string]bool
	var lastErr error
	var last Convergence
	var stable Stability
	name := id
	for {
		conv, err := pollService(ctx, cl, id, op, &ignore)
		switch {
		case client.IsNotFound(err):
			return fmt.Errorf("service %s: %w", id, err)
		case err != nil:
			if ctx.Err() == nil {
				lastErr = err
			}
		default:
			if changed == nil {
				// From before the first poll on: no change is missed.
				changed = watchService(ctx, cl, began, id, conv.Name)
			}
			if (op == OpCreate || op == OpScale) && !conv.Job {
				if settled, note := stable.Settled(conv, time.Now()); conv.Done && !settled {
					conv.Done = false
					if conv.Note != "" {
						note = conv.Note + "; " + note
					}
					conv.Note = note
				}
			}
			prevNote := last.Note
			lastErr, last, name = nil, conv, conv.Name
			if !quiet {
				for _, sl := range conv.Slots {
					if printed[sl.Name] != sl.Text {
						fmt.Fprintf(out, "%s: %s\n", output.Sanitize(sl.Name), output.Sanitize(sl.Text))
						printed[sl.Name] = sl.Text
					}
				}
			}
			if !quiet && conv.Note != "" && conv.Note != prevNote {
				fmt.Fprintln(out, output.Sanitize(conv.Note))
			}
			if conv.Err != nil {
				return conv.Err
			}
			if conv.Done {
				if !quiet && conv.Job {
					fmt.Fprintf(out, "%s: job complete, %d/%d completed\n", name, conv.Completed, conv.Desired)
				} else if !quiet {
					fmt.Fprintf(out, "%s: converged, %d/%d running\n", name, conv.Running, conv.Desired)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err := fmt.Errorf("%w: %s within %s (%d/%d running)", errNotConverged, name, timeout, last.Running, last.Desired)
				if lastErr != nil {
					err = fmt.Errorf("%w; last error: %v", err, lastErr)
				}
				return err
			}
			return ctx.Err()
		case <-ticker.C:
		case <-changed:
		}
	}
}

// watchService follows the agent's events about the service (by ID or
// name) and its tasks from since on, and signals the returned channel
// (coalescing) for each, until ctx ends. Without a stream (an agent that
// refuses it, a broken connection) the channel never fires: the caller's
// ticker still polls.
func watchService(ctx context.Context, cl *client.Client, since time.Time, id, name string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	names := []string{id}
	if name != "" && name != id {
		names = append(names, name)
	}
	opts := client.EventOptions{Since: since, Types: []string{api.EventService, api.EventTask}, Names: names}
	go func() {
		_ = cl.Events(ctx, opts, func(api.Event) error {
			select {
			case ch <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	return ch
}

// pollService fetches the service and its tasks once and assesses them.
func pollService(ctx context.Context, cl *client.Client, id, op string, ignore *map[string]bool) (Convergence, error) {
	svc, err := cl.Service(ctx, id)
	if err != nil {
		return Convergence{}, err
	}
	// The tasks at the service's version need no spec of their own
	// (currentTask): left out, they halve what each poll decodes.
	tasks, err := cl.ServiceTasks(ctx, svc.ID, client.TaskFilter{WithoutSpecVersion: svc.Version})
	if err != nil {
		return Convergence{}, err
	}
	if *ignore == nil {
		*ignore = map[string]bool{}
		for _, t := range tasks {
			if api.TaskTerminal(t.State) {
				(*ignore)[t.ID] = true
			}
		}
	}
	var nodes []api.Node
	if api.GlobalMode(svc.Spec.Mode) || api.GlobalMode(svc.Mode) {
		if nodes, err = cl.Nodes(ctx); err != nil {
			return Convergence{}, err
		}
	}
	return Assess(op, *svc, tasks, nodes, *ignore), nil
}
