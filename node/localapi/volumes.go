package localapi

import (
	"errors"
	"net/http"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/runtime"
)

// VolumeStore is this node's named volumes (*runtime.Runtime).
type VolumeStore interface {
	Volumes() ([]api.Volume, error)
	Volume(name string) (api.Volume, error)
	CreateVolume(name string) (api.Volume, error)
	RemoveVolume(name string) error
}

// Volumes is httpapi.Volumes over this node's volumes: the store's calls,
// with its errors given their status (VolumeError).
type Volumes struct{ Store VolumeStore }

var _ httpapi.Volumes = Volumes{}

// VolumeError gives the runtime's volume errors their status: not found
// 404, in use 409, an invalid name 400.
func VolumeError(err error) error {
	switch {
	case errors.Is(err, runtime.ErrVolumeNotFound):
		return &httpapi.Error{Status: http.StatusNotFound, Msg: err.Error()}
	case errors.Is(err, runtime.ErrVolumeInUse):
		return &httpapi.Error{Status: http.StatusConflict, Msg: err.Error()}
	case errors.Is(err, runtime.ErrInvalidSpec):
		return &httpapi.Error{Status: http.StatusBadRequest, Msg: err.Error()}
	}
	return err
}

func (v Volumes) Volumes() ([]api.Volume, error) {
	vs, err := v.Store.Volumes()
	return vs, VolumeError(err)
}

func (v Volumes) Volume(name string) (api.Volume, error) {
	vol, err := v.Store.Volume(name)
	return vol, VolumeError(err)
}

func (v Volumes) CreateVolume(name string) (api.Volume, error) {
	vol, err := v.Store.CreateVolume(name)
	return vol, VolumeError(err)
}

func (v Volumes) RemoveVolume(name string) error { return VolumeError(v.Store.RemoveVolume(name)) }
