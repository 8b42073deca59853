// Package record is a container's record: what the runtime keeps of it in
// its dir under Root (container.json), read back by the next agent, and
// what the API shows of it. Package runtime holds each record in memory
// under its lock and re-exports Spec; it imports this package, never the
// other way round.
package record

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
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
	// MemoryReservation is the memory the node keeps for the container
	// under pressure (a soft limit; a service's reservation, as Swarm
	// sets it): 0 for none.
	MemoryReservation int64 `json:"memory_reservation,omitempty"`
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
	// ReadOnly mounts the rootfs read-only (the /etc files, Files and
	// Mounts keep their own modes).
	ReadOnly bool `json:"read_only,omitempty"`
	// CapAdd and CapDrop change the default capabilities
	// (containeropts.Capabilities).
	CapAdd  []string `json:"cap_add,omitempty"`
	CapDrop []string `json:"cap_drop,omitempty"`
	// Sysctls are set in the container's namespaces (containeropts.SysctlProblem).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Ulimits become the process's rlimits.
	Ulimits []api.Ulimit `json:"ulimits,omitempty"`
	// StopSignal is sent on Stop instead of SIGTERM (containeropts.ParseSignal).
	StopSignal string `json:"stop_signal,omitempty"`
	// LogMaxSize and LogMaxFiles replace the node's log rotation
	// (Config.LogMaxSize, LogMaxFiles) for this container, 0 keeping the
	// node's; LogNone keeps no log at all (the service's log driver none).
	// The supervisor takes them when it starts the container.
	LogMaxSize  int64 `json:"log_max_size,omitempty"`
	LogMaxFiles int   `json:"log_max_files,omitempty"`
	LogNone     bool  `json:"log_none,omitempty"`
}

// Record is the persisted part of a container (Root/containers/<id>/container.json).
type Record struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Spec       Spec              `json:"spec"`
	ImageID    string            `json:"image_id"`
	Layers     []string          `json:"layers"`
	MountLayer string            `json:"mount_layer,omitempty"` // above Layers (runtime/mountlayer); "" for none
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

// SetLogging sets LogMaxSize, LogMaxFiles and LogNone from a log driver
// and its options (api.ParseLogging, whose error it returns, changing
// nothing): the one translation of a service's and a `shoal run`
// container's logging into what the node keeps.
func (s *Spec) SetLogging(driver string, opts map[string]string) error {
	l, err := api.ParseLogging(driver, opts)
	if err != nil {
		return err
	}
	s.LogMaxSize, s.LogMaxFiles, s.LogNone = l.MaxSize, l.MaxFiles, l.Disabled
	return nil
}

// API is the container of rec as the API shows it, with its health status
// (kept in memory, not in the record).
func (rec *Record) API(health string) api.Container {
	return api.Container{
		ID:         rec.ID,
		Name:       rec.Name,
		Image:      rec.Spec.Image,
		ImageID:    rec.ImageID,
		Command:    append([]string(nil), rec.Args...),
		State:      rec.State,
		Pid:        rec.Pid,
		ExitCode:   rec.ExitCode,
		TaskID:     rec.Spec.TaskID,
		Health:     health,
		IP:         rec.IP,
		CreatedAt:  rec.CreatedAt,
		StartedAt:  rec.StartedAt,
		FinishedAt: rec.FinishedAt,
		Error:      rec.Error,
	}
}

// Paths returns the paths of the container of rec, from its fields that
// never change (ID, RunDir, EtcTmpfs: it reads no other, so the runtime
// calls it without its lock).
func (rec *Record) Paths(root string) layout.Paths {
	p := layout.For(root, rec.ID, rec.RunDir)
	if rec.EtcTmpfs {
		p = p.WithEtcTmpfs()
	}
	return p
}

// Save writes rec atomically to its container's dir under root, without
// fsync: records describe containers, which do not survive the power loss
// that could tear the file.
func (rec *Record) Save(root string) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of %s: %w", rec.ID, err)
	}
	p := layout.For(root, rec.ID, rec.RunDir).Record
	if err := atomicfile.WriteFile(p, b, 0o600, atomicfile.NoSync()); err != nil {
		return fmt.Errorf("save record of %s: %w", rec.ID, err)
	}
	return nil
}

// Load reads the record at p.
func Load(p string) (Record, error) {
	var rec Record
	b, err := os.ReadFile(p)
	if err != nil {
		return rec, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("decode %s: %w", p, err)
	}
	return rec, nil
}

// LoadDir reads the record in the container dir name under root (the
// record is in the dir in every layout) and checks that it names that dir
// and a run dir layout.RunDirFor could have made, so that a damaged record
// cannot point a remove elsewhere.
func LoadDir(root, name string) (Record, error) {
	rec, err := Load(layout.For(root, name, "").Record)
	if err == nil && (rec.ID != name || !layout.ValidRunDir(rec.RunDir, rec.ID)) {
		err = fmt.Errorf("record of %q with id %q and run dir %q", name, rec.ID, rec.RunDir)
	}
	return rec, err
}

// Started records a run that began now with init pid and address ip, and
// clears what the last run left (exit code, error, OOM kill, end).
func (rec *Record) Started(pid int, ip string) {
	rec.State = api.ContainerRunning
	rec.Pid = pid
	rec.IP = ip
	rec.ExitCode = 0
	rec.Error = ""
	rec.OOMKilled = false
	rec.StartedAt = time.Now().UTC()
	rec.FinishedAt = time.Time{}
}

// Exited records the end of the run: its exit code, whether the OOM killer
// struck, and when and why it ended as the exit record says (a zero
// finishedAt means now, an empty errMsg no error). The run's pid and
// address are gone with it.
func (rec *Record) Exited(code int, errMsg string, finishedAt time.Time, oom bool) {
	rec.State = api.ContainerExited
	rec.ExitCode = code
	rec.OOMKilled = oom
	rec.Pid = 0
	rec.IP = ""
	rec.FinishedAt = time.Now().UTC()
	rec.Error = ""
	if !finishedAt.IsZero() {
		rec.FinishedAt = finishedAt
	}
	if errMsg != "" {
		rec.Error = errMsg
	}
}

// NewID returns a new container ID: 64 hex digits, 256 random bits.
func NewID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}
