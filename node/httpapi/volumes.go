package node

// Routes for this node's named volumes (`shoal volume`). Volumes are local
// to a node and live in the runtime (runtime/mounts.go); nothing about them
// is in Raft.

import (
	"errors"
	"net/http"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime"
)

func volumeError(err error) error {
	switch {
	case errors.Is(err, runtime.ErrVolumeNotFound):
		return &httpError{status: http.StatusNotFound, msg: err.Error()}
	case errors.Is(err, runtime.ErrVolumeInUse):
		return &httpError{status: http.StatusConflict, msg: err.Error()}
	case errors.Is(err, runtime.ErrInvalidSpec):
		return &httpError{status: http.StatusBadRequest, msg: err.Error()}
	}
	return err
}

func (a *Agent) volumeRoutes(h func(string, handlerFunc)) {
	h("GET /v1/volumes", func(w http.ResponseWriter, r *http.Request) (any, error) {
		vs, err := a.rt.Volumes()
		return vs, volumeError(err)
	})
	h("POST /v1/volumes", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req api.VolumeCreateRequest
		if err := decodeBody(r, &req); err != nil {
			return nil, err
		}
		if p := api.VolumeNameProblem(req.Name); p != "" {
			return nil, badRequest("volume name %q: %s", req.Name, p)
		}
		v, err := a.rt.CreateVolume(req.Name)
		return v, volumeError(err)
	})
	h("GET /v1/volumes/{name}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		v, err := a.rt.Volume(r.PathValue("name"))
		return v, volumeError(err)
	})
	h("DELETE /v1/volumes/{name}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return struct{}{}, volumeError(a.rt.RemoveVolume(r.PathValue("name")))
	})
}
