package httpapi

// Routes for this node's named volumes (`shoal volume`). Volumes are local
// to a node and live in the runtime (runtime/volume); nothing about them
// is in Raft.

import (
	"net/http"

	"github.com/shoal-org/shoal/api"
)

// Volumes is this node's volume store. Its errors carry their status
// (StatusError: not found, in use, invalid) where the runtime says which.
type Volumes interface {
	Volumes() ([]api.Volume, error)
	Volume(name string) (api.Volume, error)
	CreateVolume(name string) (api.Volume, error)
	RemoveVolume(name string) error
}

// VolumeRoutes routes the volume routes to v.
func VolumeRoutes(rt *Router, v Volumes) {
	rt.Handle("GET /v1/volumes", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return v.Volumes()
	})
	rt.Handle("POST /v1/volumes", func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req api.VolumeCreateRequest
		if err := DecodeBody(r, &req); err != nil {
			return nil, err
		}
		if p := api.VolumeNameProblem(req.Name); p != "" {
			return nil, BadRequest("volume name %q: %s", req.Name, p)
		}
		return v.CreateVolume(req.Name)
	})
	rt.Handle("GET /v1/volumes/{name}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return v.Volume(r.PathValue("name"))
	})
	rt.Handle("DELETE /v1/volumes/{name}", func(w http.ResponseWriter, r *http.Request) (any, error) {
		return struct{}{}, v.RemoveVolume(r.PathValue("name"))
	})
}
