package node

// Routes for this node's images and containers (`shoal image`, `shoal run`,
// `shoal ps`...). Images imported or pulled here are also recorded in the
// cluster state, so that any node can schedule them and fetch the layers
// from a node that holds them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/image"
)

func (a *Agent) imageRoutes(h func(string, httpapi.HandlerFunc)) {
	h("GET /v1/images", func(w http.ResponseWriter, r *http.Request) (any, error) {
		imgs := a.images.List()
		if imgs == nil {
			imgs = []api.Image{}
		}
		return imgs, nil
	})
	h("POST /v1/images/import", func(w http.ResponseWriter, r *http.Request) (any, error) {
		ref := r.URL.Query().Get("ref")
		if ref == "" {
			return nil, httpapi.BadRequest("import needs a NAME[:TAG] for the image")
		}
		img, err := a.images.Import(r.Context(), r.Body, ref)
		if err != nil {
			return nil, imageError(err)
		}
		a.announceImage(r.Context(), img, "import")
		return img, nil
	})
	h("POST /v1/images/load", func(w http.ResponseWriter, r *http.Request) (any, error) {
		imgs, err := a.images.Load(r.Context(), r.Body)
		if err != nil {
			return nil, imageError(err)
		}
		for _, img := range imgs {
			a.announceImage(r.Context(), img, "load")
		}
		return imgs, nil
	})
	h("POST /v1/images/pull", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req api.PullRequest
		if err := httpapi.DecodeBody(r, &req); err != nil {
			return nil, err
		}
		if req.Ref == "" {
			return nil, httpapi.BadRequest("pull needs an image reference")
		}
		img, err := a.images.Pull(r.Context(), req)
		if err != nil {
			return nil, imageError(err)
		}
		a.announceImage(r.Context(), img, "pull "+req.Ref)
		return img, nil
	})
	h("GET /v1/images/{ref...}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		img, err := a.images.Get(r.PathValue("ref"))
		if err != nil {
			return nil, imageError(err)
		}
		return img, nil
	})
	h("DELETE /v1/images/{ref...}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		ref := r.PathValue("ref")
		if ref == "" {
			return nil, httpapi.BadRequest("image rm needs an image reference (NAME[:TAG] or ID)")
		}
		img, err := a.images.Get(ref)
		if err != nil {
			return nil, imageError(err)
		}
		if err := a.images.Remove(ref); err != nil {
			return nil, imageError(err)
		}
		if _, err := a.images.Get(img.ID); err != nil {
			a.forgetImage(r.Context(), img.ID)
		}
		if _, err := a.images.GC(); err != nil {
			a.log.Warn("image garbage collection", "err", err)
		}
		return struct{}{}, nil
	})
}

// announceImage records a local image in the cluster state (best effort:
// a node in no cluster, or a cluster without quorum, keeps it local).
func (a *Agent) announceImage(ctx context.Context, img api.Image, source string) {
	if _, err := a.clusterOrErr(); err != nil {
		return
	}
	rec := img
	rec.Config = nil
	rec.Nodes = []string{a.id.NodeID}
	if rec.Source == "" {
		rec.Source = source
	}
	if _, err := a.write(ctx, &consensus.UpsertImage{Image: rec}); err != nil {
		a.log.Warn("record image in cluster", "image", img.ID, "err", err)
	}
}

func (a *Agent) forgetImage(ctx context.Context, id string) {
	if _, err := a.clusterOrErr(); err != nil {
		return
	}
	if _, err := a.write(ctx, &consensus.SetImageNode{ImageID: id, NodeID: a.id.NodeID, Present: false}); err != nil {
		a.log.Warn("record image removal", "image", id, "err", err)
	}
}

func imageError(err error) error {
	switch {
	case errors.Is(err, image.ErrNotFound):
		return &httpError{status: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, image.ErrInUse):
		return &httpError{status: http.StatusConflict, msg: err.Error()}
	case errors.Is(err, image.ErrInvalidArchive), errors.Is(err, image.ErrDigestMismatch),
		errors.Is(err, image.ErrUnknownMediaType), errors.Is(err, image.ErrInvalidRef),
		errors.Is(err, image.ErrAmbiguous):
		return &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	return err
}

// displayContainer clears the health of a container that does not run: an
// exited container has no health, whatever its last check said.
func displayContainer(c api.Container) api.Container {
	if c.State != api.ContainerRunning {
		c.Health = ""
	}
	return c
}

// noNUL refuses NUL bytes in what becomes a container's argv, environment,
// working directory or user: runc cannot pass them to the kernel.
func noNUL(image string, command, entrypoint, env []string, workdir, user string) error {
	check := func(field, v string) error {
		if strings.IndexByte(v, 0) >= 0 {
			return httpapi.BadRequest("%s %q: contains a NUL byte", field, v)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		vals []string
	}{{"image", []string{image}}, {"command", command}, {"entrypoint", entrypoint}, {"env", env},
		{"workdir", []string{workdir}}, {"user", []string{user}}} {
		for _, v := range f.vals {
			if err := check(f.name, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// ensureRunImage makes the image of `shoal run` available here: an image
// only another node holds is fetched from it (or pulled from the registry
// it came from), as a service's task would. An image this node has, or a
// node in no cluster, is left to the runtime, whose "not found" names it.
func (a *Agent) ensureRunImage(ctx context.Context, ref string) error {
	if _, err := a.images.Get(ref); err == nil {
		return nil
	}
	cl, err := a.clusterOrErr()
	if err != nil {
		return nil
	}
	if _, ok := findClusterImage(cl, ref); !ok {
		return &httpError{status: http.StatusNotFound, msg: fmt.Sprintf("image %s not found on any node: import, load or pull it first (`shoal image import|load|pull`)", ref)}
	}
	if err := a.ensureImage(ctx, cl, ref, nil); err != nil {
		return &httpError{status: http.StatusBadGateway, msg: err.Error()}
	}
	return nil
}

func containerError(err error) error {
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		return &httpError{status: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, runtime.ErrNameInUse), errors.Is(err, runtime.ErrRunning), errors.Is(err, runtime.ErrNotRunning):
		return &httpError{status: http.StatusConflict, msg: err.Error()}
	case errors.Is(err, runtime.ErrAmbiguous), errors.Is(err, runtime.ErrNoCommand), errors.Is(err, runtime.ErrInvalidSpec):
		return &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	return imageError(err)
}

func (a *Agent) containerRoutes(h func(string, httpapi.HandlerFunc)) {
	h("GET /v1/containers", func(w http.ResponseWriter, r *http.Request) (any, error) {
		cs := a.rt.List()
		if cs == nil {
			cs = []api.Container{}
		}
		for i := range cs {
			cs[i] = displayContainer(cs[i])
		}
		return cs, nil
	})
	h("POST /v1/containers", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req api.RunRequest
		if err := httpapi.DecodeBody(r, &req); err != nil {
			return nil, err
		}
		if req.Image == "" {
			return nil, httpapi.BadRequest("run needs an image")
		}
		if err := noNUL(req.Image, req.Command, req.Entrypoint, req.Env, req.Workdir, req.User); err != nil {
			return nil, err
		}
		spec := runtime.Spec{
			Name: req.Name, Image: req.Image, Command: req.Command, Entrypoint: req.Entrypoint,
			Env: req.Env, Workdir: req.Workdir, User: req.User, Limits: req.Limits,
			Remove: req.Remove, Healthcheck: req.Healthcheck, Mounts: req.Mounts,
		}
		ctx, err := a.runNetworks(r.Context(), req.Networks)
		if err != nil {
			return nil, err
		}
		if err := a.ensureRunImage(ctx, req.Image); err != nil {
			return nil, err
		}
		c, err := a.rt.RunContainer(ctx, spec)
		if err != nil {
			return nil, containerError(err)
		}
		return displayContainer(c), nil
	})
	h("GET /v1/containers/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		c, err := a.rt.Get(r.PathValue("id"))
		return displayContainer(c), containerError(err)
	})
	h("POST /v1/containers/{id}/wait", func(w http.ResponseWriter, r *http.Request) (any, error) {
		c, err := a.rt.Wait(r.Context(), r.PathValue("id"))
		return displayContainer(c), containerError(err)
	})
	h("POST /v1/containers/{id}/stop", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var grace time.Duration // zero: the container's own grace period
		if t := r.URL.Query().Get("timeout"); t != "" {
			d, err := time.ParseDuration(t)
			if err != nil {
				if n, err2 := strconv.Atoi(t); err2 == nil {
					d = time.Duration(n) * time.Second
				} else {
					return nil, httpapi.BadRequest("invalid timeout %q", t)
				}
			}
			grace = d
			if grace <= 0 {
				grace = -1 // `stop -t 0`: kill at once, as Docker does
			}
		}
		c, err := a.rt.Get(r.PathValue("id"))
		if err != nil {
			return nil, containerError(err)
		}
		stopped, err := a.rt.Stop(r.Context(), c.ID, grace)
		if err != nil {
			return nil, containerError(err)
		}
		return displayContainer(stopped), nil
	})
	h("DELETE /v1/containers/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
		c, err := a.rt.Get(r.PathValue("id"))
		if err != nil {
			return nil, containerError(err)
		}
		return struct{}{}, containerError(a.rt.Remove(r.Context(), c.ID, force))
	})
	h("GET /v1/containers/{id}/logs", func(w http.ResponseWriter, r *http.Request) (any, error) {
		opts, err := logOptions(r)
		if err != nil {
			return nil, err
		}
		ch, err := a.rt.Logs(r.Context(), r.PathValue("id"), opts)
		if err != nil {
			return nil, containerError(err)
		}
		streamLogs(w, ch, "", "")
		return httpapi.Streamed, nil
	})
}

func logOptions(r *http.Request) (runtime.LogOptions, error) {
	q := r.URL.Query()
	var o runtime.LogOptions
	o.Follow = q.Get("follow") == "1" || q.Get("follow") == "true"
	if t := q.Get("tail"); t != "" && t != "all" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return o, httpapi.BadRequest("invalid tail %q", t)
		}
		o.Tail = n
	}
	if s := q.Get("since"); s != "" {
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return o, httpapi.BadRequest("invalid since %q (RFC 3339 expected)", s)
		}
		o.Since = ts
	}
	return o, nil
}

// streamLogs writes log lines as NDJSON, flushing each one.
func streamLogs(w http.ResponseWriter, ch <-chan api.LogLine, task, node string) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	for l := range ch {
		if task != "" {
			l.Task = task
		}
		if node != "" {
			l.Node = node
		}
		if err := enc.Encode(l); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
}
