package runtime

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// List returns all containers of this node, oldest first.
func (r *Runtime) List() []api.Container {
	r.mu.Lock()
	out := make([]api.Container, 0, len(r.containers))
	for _, c := range r.containers {
		out = append(out, c.apiLocked())
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].ID < out[j].ID
		}
		return out[i].CreatedAt.Before(out[j].CreatedAt)
	})
	return out
}

// ImageInUse reports whether any container of this node (running or not)
// was made from imageID; the image store's GC asks before deleting layers.
func (r *Runtime) ImageInUse(imageID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.containers {
		if c.rec.ImageID == imageID {
			return true
		}
	}
	return false
}

// Get finds a container by full ID, name, or unique ID prefix.
func (r *Runtime) Get(idOrName string) (api.Container, error) {
	c, err := r.lookup(idOrName)
	if err != nil {
		return api.Container{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return c.apiLocked(), nil
}

func (r *Runtime) lookup(ref string) (*container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ref == "" {
		return nil, ErrNotFound
	}
	if c, ok := r.containers[ref]; ok {
		return c, nil
	}
	if id, ok := r.names[ref]; ok {
		if c, ok := r.containers[id]; ok {
			return c, nil
		}
	}
	var found *container
	for id, c := range r.containers {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, fmt.Errorf("%w: %s", ErrAmbiguous, ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	return found, nil
}

// Wait blocks until the container is no longer running (or was never
// started and is removed) and returns its final state, exit code included.
// It also works for --rm containers, whose record disappears right after.
func (r *Runtime) Wait(ctx context.Context, idOrName string) (api.Container, error) {
	if err := r.waitReady(ctx); err != nil {
		return api.Container{}, err
	}
	c, err := r.lookup(idOrName)
	if err != nil {
		return api.Container{}, err
	}
	for {
		r.mu.Lock()
		done := c.done
		r.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return api.Container{}, ctx.Err()
		case <-r.runDone:
			return api.Container{}, ErrClosed
		}
		r.mu.Lock()
		if c.done == done || c.removed {
			out := c.apiLocked()
			r.mu.Unlock()
			return out, nil
		}
		r.mu.Unlock() // restarted meanwhile: wait for the new run
	}
}
