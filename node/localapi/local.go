// Package localapi answers the API routes about this node alone: its
// images (`shoal image`), its containers (`shoal run`, `ps`, `logs`,
// `stop`, `rm`) and `shoal exec`. Images imported or pulled here are also
// recorded in the cluster state, so that any node can schedule them and
// fetch the layers from a node that holds them; that, and whatever else
// needs the cluster, the agent does behind Agent.
package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	goruntime "runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/runtime"
	"github.com/shoal-org/shoal/runtime/image"
)

// Images is this node's image store (*image.Store).
type Images interface {
	List() []api.Image
	Import(ctx context.Context, r io.Reader, ref string) (api.Image, error)
	Load(ctx context.Context, r io.Reader) ([]api.Image, error)
	Pull(ctx context.Context, req api.PullRequest) (api.Image, error)
	Get(ref string) (api.Image, error)
	Remove(ref string) error
	GC() (freed int64, err error)
}

// Containers is this node's runtime (*runtime.Runtime).
type Containers interface {
	List() []api.Container
	RunContainer(ctx context.Context, spec runtime.Spec) (api.Container, error)
	Get(idOrName string) (api.Container, error)
	Wait(ctx context.Context, idOrName string) (api.Container, error)
	Stop(ctx context.Context, idOrName string, grace time.Duration) (api.Container, error)
	Remove(ctx context.Context, idOrName string, force bool) error
	Logs(ctx context.Context, idOrName string, opts runtime.LogOptions) (<-chan api.LogLine, error)
	Exec(ctx context.Context, idOrName string, opts runtime.ExecOptions) (*runtime.ExecProcess, error)
}

// Agent is what these routes need of the cluster. Its methods may block
// on a write to the leader; none holds a lock of the caller.
type Agent interface {
	// AnnounceImage records an image of this node in the cluster state,
	// best effort: a node in no cluster, or without quorum, keeps it local.
	AnnounceImage(ctx context.Context, img api.Image, source string)
	// ForgetImage records, best effort, that this node no longer holds
	// the image with this ID.
	ForgetImage(ctx context.Context, id string)
	// RunNetworks checks the networks of a `shoal run` container (each
	// attachable, or the default) and returns ctx carrying them for the
	// runtime's network attacher.
	RunNetworks(ctx context.Context, names []string) (context.Context, error)
	// EnsureRunImage makes the image of `shoal run` available here: one
	// only another node holds is fetched from it (404 when no node has
	// it, 502 when the fetch fails). An image this node has, or a node in
	// no cluster, is left to the runtime, whose "not found" names it.
	EnsureRunImage(ctx context.Context, ref string) error
	// TaskNode is the node (its hostname, else its short ID) of another
	// node that a task of this name is meant to run on, "" when there is
	// none or this node is in no cluster: the container routes say so when
	// they find no container, for containers are reached only through
	// their own node's agent.
	TaskNode(name string) string
	// RecordRunContainers records in the cluster state, best effort, which
	// `shoal run` containers of this node are on which networks (so that
	// a network in use is not removed): after a run started and after a
	// removal, so the state holds it when the request returns.
	RecordRunContainers(ctx context.Context)
}

// Routes are the node-local routes. Set every field before Register; they
// are not changed afterwards.
type Routes struct {
	Images     Images
	Containers Containers
	Agent      Agent
	Log        *slog.Logger
	// Stopping ends when the agent stops; open exec sessions end with it.
	Stopping context.Context
}

// Register routes the image, container and exec routes to l.
func (l *Routes) Register(rt *httpapi.Router) {
	l.imageRoutes(rt.Handle)
	l.containerRoutes(rt.Handle)
	rt.Mux().HandleFunc("POST /v1/containers/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		l.handleExec(w, r, rt.WriteError)
	})
}

func (l *Routes) imageRoutes(h func(string, httpapi.HandlerFunc)) {
	h("GET /v1/images", func(w http.ResponseWriter, r *http.Request) (any, error) {
		imgs := l.Images.List()
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
		img, err := l.Images.Import(r.Context(), r.Body, ref)
		if err != nil {
			return nil, ImageError(err)
		}
		l.Agent.AnnounceImage(r.Context(), img, "import")
		return img, nil
	})
	h("POST /v1/images/load", func(w http.ResponseWriter, r *http.Request) (any, error) {
		imgs, err := l.Images.Load(r.Context(), r.Body)
		if err != nil {
			return nil, ImageError(err)
		}
		for _, img := range imgs {
			l.Agent.AnnounceImage(r.Context(), img, "load")
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
		img, err := l.Images.Pull(r.Context(), req)
		if err != nil {
			return nil, ImageError(err)
		}
		l.Agent.AnnounceImage(r.Context(), img, "pull "+req.Ref)
		return img, nil
	})
	h("GET /v1/images/{ref...}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		img, err := l.Images.Get(r.PathValue("ref"))
		if err != nil {
			return nil, ImageError(err)
		}
		return img, nil
	})
	h("DELETE /v1/images/{ref...}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		ref := r.PathValue("ref")
		if ref == "" {
			return nil, httpapi.BadRequest("image rm needs an image reference (NAME[:TAG] or ID)")
		}
		img, err := l.Images.Get(ref)
		if err != nil {
			return nil, ImageError(err)
		}
		if err := l.Images.Remove(ref); err != nil {
			if errors.Is(err, image.ErrInUse) {
				err = fmt.Errorf("%w by %s", err, imageUsers(l.Containers.List(), img.ID))
			}
			return nil, ImageError(err)
		}
		if _, err := l.Images.Get(img.ID); err != nil {
			l.Agent.ForgetImage(r.Context(), img.ID)
		}
		if _, err := l.Images.GC(); err != nil {
			l.Log.Warn("image garbage collection", "err", err)
		}
		return struct{}{}, nil
	})
}

// imageUsers names the containers of cs made from image id, as docker's
// conflict names the container that holds an image: "container web.1.x
// (task web.1)", several joined, at most three then a count.
func imageUsers(cs []api.Container, id string) string {
	var names []string
	for _, c := range cs {
		if c.ImageID != id {
			continue
		}
		n := "container " + c.Name
		if c.Name == "" {
			n = "container " + api.ShortID(c.ID)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	switch {
	case len(names) == 0:
		return "a container of this node"
	case len(names) > 3:
		return fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
	}
	return strings.Join(names, ", ")
}

// ImageError gives the image store's errors their status.
func ImageError(err error) error {
	switch {
	case errors.Is(err, image.ErrNotFound):
		return &httpapi.Error{Status: http.StatusNotFound, Msg: err.Error()}
	case errors.Is(err, image.ErrInUse):
		return &httpapi.Error{Status: http.StatusConflict, Msg: err.Error()}
	case errors.Is(err, image.ErrInvalidArchive), errors.Is(err, image.ErrDigestMismatch),
		errors.Is(err, image.ErrUnknownMediaType), errors.Is(err, image.ErrInvalidRef),
		errors.Is(err, image.ErrAmbiguous):
		return &httpapi.Error{Status: http.StatusBadRequest, Msg: err.Error()}
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

// cpusFit refuses a `shoal run --cpus` above the node's CPU count (cpus),
// as docker run does ("range of CPUs is from 0.01 to 2.00"): the CFS quota
// of more CPUs than the node has limits nothing, so `--cpus 100` on a
// 2-CPU node used to run the container silently unlimited. A service's
// --limit-cpu is the scheduler's (a node without the CPUs gets no task).
func cpusFit(nanoCPUs int64, cpus int) error {
	if cpus > 0 && nanoCPUs > int64(cpus)*1e9 {
		return httpapi.BadRequest("--cpus %s: this node has only %d CPUs (the range is 0.01 to %d.00)",
			strconv.FormatFloat(float64(nanoCPUs)/1e9, 'f', -1, 64), cpus, cpus)
	}
	return nil
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

// ContainerError gives the runtime's errors their status, and the
// image store's (a run of an unknown image).
func ContainerError(err error) error {
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		return &httpapi.Error{Status: http.StatusNotFound, Msg: err.Error()}
	case errors.Is(err, runtime.ErrNameInUse), errors.Is(err, runtime.ErrRunning), errors.Is(err, runtime.ErrNotRunning),
		errors.Is(err, runtime.ErrLogsDisabled):
		return &httpapi.Error{Status: http.StatusConflict, Msg: err.Error()}
	case errors.Is(err, runtime.ErrAmbiguous), errors.Is(err, runtime.ErrNoCommand), errors.Is(err, runtime.ErrInvalidSpec):
		return &httpapi.Error{Status: http.StatusBadRequest, Msg: err.Error()}
	}
	return ImageError(err)
}

// container finds the container that a container route names (ref): a
// container ID, name or unique ID prefix, or else a task name (web.1, or
// the full web.1.TASKID) of a task container of this node, its running one
// or else its newest (api.TaskContainer). Every container route resolves
// here, so `shoal exec web.1` and `shoal stop web.1` find the same
// container in one request. When nothing matches and the task runs on
// another node, the not-found says where: "no such container: web.1" for
// a task that `service ps` shows running left a user to guess why.
func (l *Routes) container(ref string) (api.Container, error) {
	c, err := l.Containers.Get(ref)
	if err == nil || !errors.Is(err, runtime.ErrNotFound) {
		return c, err
	}
	if c, ok := api.TaskContainer(l.Containers.List(), ref); ok {
		return c, nil
	}
	if node := l.Agent.TaskNode(ref); node != "" {
		return api.Container{}, fmt.Errorf("%w (task %s runs on node %s: run the command there)", err, ref, node)
	}
	return api.Container{}, err
}

// execContainer is container for exec, which needs a running container:
// a task name whose containers here have all ended while the task runs on
// another node (it moved there: drained, rebalanced) gets the not-found
// that names that node, as a task that never ran here does, rather than
// an exec refused for a stopped container. The other routes keep the
// ended container (its logs, inspect, removal are of use); a container
// named outright is left to the runtime.
func (l *Routes) execContainer(ref string) (api.Container, error) {
	c, err := l.container(ref)
	if err != nil || c.State == api.ContainerRunning || c.TaskID == "" || c.ID == ref || c.Name == ref {
		return c, err
	}
	if node := l.Agent.TaskNode(ref); node != "" {
		return api.Container{}, fmt.Errorf("%w: %s (task %s runs on node %s: run the command there)", runtime.ErrNotFound, ref, ref, node)
	}
	return c, nil
}

func (l *Routes) containerRoutes(h func(string, httpapi.HandlerFunc)) {
	h("GET /v1/containers", func(w http.ResponseWriter, r *http.Request) (any, error) {
		cs := l.Containers.List()
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
		if err := cpusFit(req.Limits.NanoCPUs, goruntime.NumCPU()); err != nil {
			return nil, err
		}
		spec := runtime.Spec{
			Name: req.Name, Image: req.Image, Command: req.Command, Entrypoint: req.Entrypoint,
			Env: req.Env, Workdir: req.Workdir, User: req.User, Limits: req.Limits,
			Remove: req.Remove, Healthcheck: req.Healthcheck, Mounts: req.Mounts,
		}
		if err := spec.SetLogging(req.LogDriver, req.LogOptions); err != nil {
			return nil, httpapi.BadRequest("logging: %v", err)
		}
		ctx, err := l.Agent.RunNetworks(r.Context(), req.Networks)
		if err != nil {
			return nil, err
		}
		if err := l.Agent.EnsureRunImage(ctx, req.Image); err != nil {
			return nil, err
		}
		c, err := l.Containers.RunContainer(ctx, spec)
		if err != nil {
			return nil, ContainerError(err)
		}
		if len(req.Networks) > 0 {
			l.Agent.RecordRunContainers(ctx)
		}
		return displayContainer(c), nil
	})
	h("GET /v1/containers/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		c, err := l.container(r.PathValue("id"))
		return displayContainer(c), ContainerError(err)
	})
	h("POST /v1/containers/{id}/wait", func(w http.ResponseWriter, r *http.Request) (any, error) {
		c, err := l.container(r.PathValue("id"))
		if err != nil {
			return nil, ContainerError(err)
		}
		c, err = l.Containers.Wait(r.Context(), c.ID)
		return displayContainer(c), ContainerError(err)
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
		c, err := l.container(r.PathValue("id"))
		if err != nil {
			return nil, ContainerError(err)
		}
		stopped, err := l.Containers.Stop(r.Context(), c.ID, grace)
		if err != nil {
			return nil, ContainerError(err)
		}
		return displayContainer(stopped), nil
	})
	h("DELETE /v1/containers/{id}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
		c, err := l.container(r.PathValue("id"))
		if err != nil {
			return nil, ContainerError(err)
		}
		if err := l.Containers.Remove(r.Context(), c.ID, force); err != nil {
			return nil, ContainerError(err)
		}
		if c.TaskID == "" {
			l.Agent.RecordRunContainers(r.Context())
		}
		return struct{}{}, nil
	})
	h("GET /v1/containers/{id}/logs", func(w http.ResponseWriter, r *http.Request) (any, error) {
		opts, err := LogOptions(r)
		if err != nil {
			return nil, err
		}
		c, err := l.container(r.PathValue("id"))
		if err != nil {
			return nil, ContainerError(err)
		}
		ch, err := l.Containers.Logs(r.Context(), c.ID, opts)
		if err != nil {
			return nil, ContainerError(err)
		}
		StreamLogs(w, ch, "", "")
		return httpapi.Streamed, nil
	})
}

// LogOptions reads the ?follow, ?tail and ?since of a logs route.
func LogOptions(r *http.Request) (runtime.LogOptions, error) {
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

// StreamLogs writes log lines as NDJSON, flushing each one.
func StreamLogs(w http.ResponseWriter, ch <-chan api.LogLine, task, node string) {
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
