package runtime

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/runtime/eventhub"
	"github.com/shoal-org/shoal/runtime/layout"
	"github.com/shoal-org/shoal/runtime/ocispec"
)

// Spec is what a caller asks to run: `shoal run` through the HTTP API, or a
// task through the reconciler.
type Spec struct {
	// Name must be unique on this node; empty gets a generated one.
	Name string `json:"name,omitempty"`
	// Image is a reference the ImageResolver understands.
	Image      string   `json:"image"`
	Command    []string `json:"command,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Env        []string `json:"env,omitempty"`
	Workdir    string   `json:"workdir,omitempty"`
	User       string   `json:"user,omitempty"`
	// Hostname defaults to the first 12 characters of the ID.
	Hostname string        `json:"hostname,omitempty"`
	Limits   api.Resources `json:"limits"`
	// TaskID links the container to a task; empty for `shoal run`.
	TaskID string            `json:"task_id,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Healthcheck overrides the image's; Test ["NONE"] disables it.
	Healthcheck *api.HealthConfig `json:"healthcheck,omitempty"`
	// StopGrace overrides Config.StopGrace for this container.
	StopGrace time.Duration `json:"stop_grace,omitempty"`
	// Remove deletes the container once it exits (--rm).
	Remove bool `json:"remove,omitempty"`
	// ExtraHosts are "host:ip" entries added to /etc/hosts.
	ExtraHosts []string `json:"extra_hosts,omitempty"`
	// Files are secrets and configs prepared with secretfs.Prepare
	// (runtime/secretfs), bind-mounted read-only at their targets.
	Files []ocispec.FileMount `json:"files,omitempty"`
	// Mounts are volumes, bind mounts and tmpfs (runtime/volume).
	Mounts []api.Mount `json:"mounts,omitempty"`
}

// Event reports a change of a container's state or health (runtime/eventhub's
// Event). Events are sent on the channels returned by Subscribe.
type Event = eventhub.Event

// EventRemoved is the State of the event sent after a container is removed.
const EventRemoved = eventhub.Removed

// record is the persisted part of a container (Root/containers/<id>/container.json).
type record struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Spec       Spec              `json:"spec"`
	ImageID    string            `json:"image_id"`
	Layers     []string          `json:"layers"`
	MountLayer string            `json:"mount_layer,omitempty"` // above Layers (mountpoints.go); "" for none
	Args       []string          `json:"args"`
	Hostname   string            `json:"hostname"`
	Health     *api.HealthConfig `json:"health,omitempty"`
	State      string            `json:"state"`
	Pid        int               `json:"pid"`
	ExitCode   int               `json:"exit_code"`
	IP         string            `json:"ip,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	StartedAt  time.Time         `json:"started_at,omitempty"`
	FinishedAt time.Time         `json:"finished_at,omitempty"`
	Error      string            `json:"error,omitempty"`
	OOMKilled  bool              `json:"oom_killed,omitempty"`
	// RunDir is the container's run dir (Config.RunRoot/<id>), which holds
	// its bundle and other files that need not outlive the machine; empty
	// for a container whose files are all in its dir under Root (made by
	// Shoal before run dirs, or with no RunRoot or an older supervisor).
	// Set at creation, never changed.
	RunDir string `json:"run_dir,omitempty"`
	// EtcTmpfs says that the container's /etc files are on a tmpfs of
	// their own in its run dir (layout.Paths.WithEtcTmpfs), as for every
	// container made with a run dir since; false for one made before,
	// whose bundle config binds them from beside the bundle. Set at
	// creation, never changed.
	EtcTmpfs bool `json:"etc_tmpfs,omitempty"`
}

// container is the in-memory state of one container. Fields below mu are
// guarded by Runtime.mu; op serializes lifecycle operations (start, stop,
// remove) on this container.
type container struct {
	op     sync.Mutex
	saveMu sync.Mutex

	rec    record
	health string
	done   chan struct{} // closed when the current run ended
	// released is closed once finishExit has cleaned up after the run
	// being watched (nil: no run watched in this process).
	released chan struct{}
	removed  bool
	// stopHealth ends the health loop of the current run.
	stopHealth func()
}

func (c *container) apiLocked() api.Container {
	r := &c.rec
	return api.Container{
		ID:         r.ID,
		Name:       r.Name,
		Image:      r.Spec.Image,
		ImageID:    r.ImageID,
		Command:    append([]string(nil), r.Args...),
		State:      r.State,
		Pid:        r.Pid,
		ExitCode:   r.ExitCode,
		TaskID:     r.Spec.TaskID,
		Health:     c.health,
		IP:         r.IP,
		CreatedAt:  r.CreatedAt,
		StartedAt:  r.StartedAt,
		FinishedAt: r.FinishedAt,
		Error:      r.Error,
	}
}

// pathsOf returns the paths of c, from the fields of its record that never
// change (so without r.mu).
func (r *Runtime) pathsOf(c *container) layout.Paths {
	return recordPaths(r.cfg.Root, c.rec)
}

// recordPaths returns the paths of the container of rec, from its fields
// that never change.
func recordPaths(root string, rec record) layout.Paths {
	p := layout.For(root, rec.ID, rec.RunDir)
	if rec.EtcTmpfs {
		p = p.WithEtcTmpfs()
	}
	return p
}

// save persists c's record atomically, without fsync: records describe
// containers, which do not survive the power loss that could tear the file.
func (r *Runtime) save(c *container) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	r.mu.Lock()
	if c.removed {
		r.mu.Unlock()
		return nil
	}
	rec := c.rec
	r.mu.Unlock()
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of %s: %w", rec.ID, err)
	}
	p := layout.For(r.cfg.Root, rec.ID, rec.RunDir).Record
	if err := atomicfile.WriteFile(p, b, 0o600, atomicfile.NoSync()); err != nil {
		return fmt.Errorf("save record of %s: %w", rec.ID, err)
	}
	return nil
}

func loadRecord(p string) (record, error) {
	var rec record
	b, err := os.ReadFile(p)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode %s: %w", p, err)
	}
	return rec, nil
}

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// ShortID is the 12-character form of a container ID that `shoal ps` shows.
func ShortID(id string) string { return api.ShortID(id) }
