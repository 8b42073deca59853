package runtime

import (
	"errors"

	"github.com/shoal-org/shoal/runtime/config"
	"github.com/shoal-org/shoal/runtime/execproc"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/supclient"
	"github.com/shoal-org/shoal/runtime/volume"
)

// Sentinel errors of the runtime. Callers test them with errors.Is; the HTTP
// API maps ErrNotFound to 404, ErrNameInUse/ErrRunning/ErrNotRunning to 409.
var (
	// ErrNotFound: no container matches the ID, name or prefix.
	ErrNotFound = errors.New("no such container")
	// ErrAmbiguous: an ID prefix matches more than one container.
	ErrAmbiguous = errors.New("ambiguous container ID prefix")
	// ErrNameInUse: another container on this node has that name.
	ErrNameInUse = errors.New("container name already in use")
	// ErrRunning: the operation needs a stopped container (remove without force).
	ErrRunning = errors.New("container is running")
	// ErrNotRunning: the operation needs a running container.
	ErrNotRunning = errors.New("container is not running")
	// ErrNoCommand: neither the spec nor the image says what to run.
	ErrNoCommand = ocispec.ErrNoCommand
	// ErrClosed: the runtime's Run loop has ended.
	ErrClosed = errors.New("runtime closed")
	// ErrNoLease is FenceAll's error for each lease when the node's
	// supervisor, started by an older release, knows no lease.
	ErrNoLease = supclient.ErrNoLease
	// ErrInvalidConfig: Config.Validate refused the configuration.
	ErrInvalidConfig = config.ErrInvalid
	// ErrInvalidSpec: a container spec is malformed (bad name, user, limits).
	ErrInvalidSpec = ocispec.ErrInvalidSpec
	// ErrVolumeNotFound: no volume of this node has that name.
	ErrVolumeNotFound = volume.ErrNotFound
	// ErrVolumeInUse: a container of this node mounts the volume.
	ErrVolumeInUse = volume.ErrInUse
	// ErrExecFailed: runc could not start an exec'd process (no such
	// executable, bad user or working directory); the message is runc's.
	ErrExecFailed = execproc.ErrFailed
)

// Config configures a Runtime, ImageResolver is what it needs of the image
// store and Network what it needs of the node's network (runtime/config's
// Config, ImageResolver and Network: their fields, defaults and checks).
type (
	Config        = config.Config
	ImageResolver = config.ImageResolver
	Network       = config.Network
)

// DefaultConfig returns a config with the defaults filled in; the caller
// sets Root, RunRoot, RuncRoot, CgroupParent and Images.
func DefaultConfig() Config { return config.Default() }
