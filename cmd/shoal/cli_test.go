package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// fakeAgent is an in-memory agent API on a unix socket: enough state for
// the CLI's commands, and a record of what the CLI sent.
type fakeAgent struct {
	t    *testing.T
	host string

	mu       sync.Mutex
	status   api.Status
	nodes    []api.Node
	services []*api.Service
	tasks    []api.Task
	// failTasks makes new tasks fail instead of reaching running.
	failTasks bool
	// crashTasks makes tasks fail at the poll after the one that saw
	// them running (a command that dies a second after its start).
	crashTasks bool
	// refuseCreate, when set, is the 409 every service create gets (the
	// agent's own wording, which names the operation already).
	refuseCreate string
	// refuseName, when set, maps a service name to the 409 its create gets
	// (a clash only the cluster sees), and the deploy check refuses it
	// alike; noCheck makes the agent an older release without the check
	// route (405, as net/http answers).
	refuseName map[string]string
	noCheck    bool
	checks     []api.DeployCheck
	secrets    []api.Secret
	// refuseCreateOf limits refuseCreate to the service of that name.
	refuseCreateOf string
	// refuseWrite, when set, is the 503 every network and secret create
	// gets (the write path's wording, which names no operation).
	refuseWrite string
	// lastSpec and lastQuery record the last service create/update.
	lastSpec  api.ServiceSpec
	lastQuery string
	lastRun   api.RunRequest
	logs      []api.LogLine
	exitCode  int
	removed   string
	networks  []api.Network
	volumes   []string
	// networkInUse, when set, maps a network name to the 409 message its
	// removal gets, as the agent refuses a network a service still uses.
	networkInUse map[string]string
	// containers, when set, are what GET /v1/containers lists (and the
	// container routes of ps_cli_test.go find); stopped records stops.
	containers []api.Container
	stopped    []string
	// oldAgent makes the container routes find IDs, names and ID
	// prefixes only, as agents did before they resolved task names.
	oldAgent bool
	// logsRead is the container of f.containers whose logs were read.
	logsRead string
	// waitStop, when set, makes a container's wait block until a stop of
	// it (which sends on waitStop) and answer exit code 143 then.
	waitStop chan struct{}
	// requests counts the requests the agent answered, by "METHOD PATH".
	requests map[string]int
	// runStatus and runMsg, when set, are the refusal POST /v1/containers
	// answers; execMsg the 422 of an exec whose process runc could not
	// start (runc's message).
	runStatus       int
	runMsg, execMsg string
}

func newFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	f := &fakeAgent{
		t:      t,
		status: api.Status{ClusterID: "c1", NodeID: "node1aaaaaaaaaaaaaaa", Hostname: "h1", Joined: true, Leader: "node1aaaaaaaaaaaaaaa", AgentVersion: "v1.2.0"},
		nodes: []api.Node{
			{ID: "node1aaaaaaaaaaaaaaa", Hostname: "h1", Addr: "10.0.0.1", Status: "ready", Availability: "active", ManagerStatus: "leader", AgentVersion: "v1.2.0"},
			{ID: "node2bbbbbbbbbbbbbbb", Hostname: "h2", Addr: "10.0.0.2", Status: "down", Availability: "drain"},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { f.reply(w, f.status) })
	mux.HandleFunc("GET /v1/token", func(w http.ResponseWriter, r *http.Request) {
		f.reply(w, api.InitResponse{Token: "SHOAL-1-abc-def"})
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) { f.reply(w, f.nodes) })
	mux.HandleFunc("GET /v1/networks/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		ref := r.PathValue("id")
		for _, n := range f.networks {
			if n.Name == ref {
				f.reply(w, n)
				return
			}
		}
		for _, n := range f.networks { // as the agent: a name first, then an ID prefix
			if ref != "" && strings.HasPrefix(n.ID, ref) {
				f.reply(w, n)
				return
			}
		}
		f.fail(w, http.StatusNotFound, "no such network: "+ref)
	})
	mux.HandleFunc("GET /v1/networks", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reply(w, f.networks)
	})
	mux.HandleFunc("DELETE /v1/networks/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, n := range f.networks {
			if n.ID == r.PathValue("id") || n.Name == r.PathValue("id") {
				if msg := f.networkInUse[n.Name]; msg != "" {
					f.fail(w, http.StatusConflict, msg)
					return
				}
				f.networks = append(f.networks[:i], f.networks[i+1:]...)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		f.fail(w, http.StatusNotFound, "no such network: "+r.PathValue("id"))
	})
	mux.HandleFunc("DELETE /v1/services/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, sv := range f.services {
			if sv.ID == r.PathValue("id") || sv.Name == r.PathValue("id") {
				f.services = append(f.services[:i], f.services[i+1:]...)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		f.fail(w, http.StatusNotFound, "service not found")
	})
	mux.HandleFunc("GET /v1/secrets", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reply(w, append([]api.Secret{}, f.secrets...))
	})
	mux.HandleFunc("GET /v1/secrets/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, x := range f.secrets {
			if x.Name == r.PathValue("id") || x.ID == r.PathValue("id") {
				f.reply(w, x)
				return
			}
		}
		f.fail(w, http.StatusNotFound, "no such secret: "+r.PathValue("id"))
	})
	mux.HandleFunc("POST /v1/secrets", func(w http.ResponseWriter, r *http.Request) {
		if f.refuseWrite != "" {
			f.fail(w, http.StatusServiceUnavailable, f.refuseWrite)
			return
		}
		var req api.SecretCreateRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			f.fail(w, 400, err.Error())
			return
		}
		f.mu.Lock()
		x := api.Secret{ID: fmt.Sprintf("sec%d", len(f.secrets)+1), Name: req.Name, Labels: req.Labels}
		f.secrets = append(f.secrets, x)
		f.mu.Unlock()
		f.reply(w, x)
	})
	mux.HandleFunc("POST /v1/services/check", func(w http.ResponseWriter, r *http.Request) {
		if f.noCheck {
			w.Header().Set("Allow", "DELETE, GET, HEAD")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		var req api.DeployCheck
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			f.fail(w, 400, err.Error())
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.checks = append(f.checks, req)
		for _, spec := range req.Create {
			if msg := f.refuseName[spec.Name]; msg != "" {
				f.fail(w, http.StatusBadRequest, msg)
				return
			}
		}
		f.reply(w, struct{}{})
	})
	mux.HandleFunc("GET /v1/configs", func(w http.ResponseWriter, r *http.Request) { f.reply(w, []api.Config{}) })
	mux.HandleFunc("POST /v1/volumes", func(w http.ResponseWriter, r *http.Request) {
		var v api.VolumeCreateRequest
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			f.fail(w, 400, err.Error())
			return
		}
		f.mu.Lock()
		f.volumes = append(f.volumes, v.Name)
		f.mu.Unlock()
		f.reply(w, api.Volume{Name: v.Name})
	})
	mux.HandleFunc("POST /v1/networks", func(w http.ResponseWriter, r *http.Request) {
		if f.refuseWrite != "" {
			f.fail(w, http.StatusServiceUnavailable, f.refuseWrite)
			return
		}
		var n api.Network
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			f.fail(w, 400, err.Error())
			return
		}
		f.mu.Lock()
		n.ID = fmt.Sprintf("net%d", len(f.networks)+1)
		f.networks = append(f.networks, n)
		f.mu.Unlock()
		f.reply(w, n)
	})
	mux.HandleFunc("GET /v1/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		for _, n := range f.nodes {
			if n.ID == r.PathValue("id") || n.Hostname == r.PathValue("id") {
				f.reply(w, n)
				return
			}
		}
		f.fail(w, http.StatusNotFound, "node "+r.PathValue("id")+" not found")
	})
	mux.HandleFunc("POST /v1/services", func(w http.ResponseWriter, r *http.Request) {
		var spec api.ServiceSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			f.fail(w, 400, err.Error())
			return
		}
		f.mu.Lock()
		if msg := f.refuseName[spec.Name]; msg != "" {
			f.mu.Unlock()
			f.fail(w, http.StatusBadRequest, msg)
			return
		}
		if f.refuseCreate != "" && (f.refuseCreateOf == "" || f.refuseCreateOf == spec.Name) {
			f.mu.Unlock()
			f.fail(w, http.StatusConflict, f.refuseCreate)
			return
		}
		f.lastSpec = spec
		svc := &api.Service{ID: fmt.Sprintf("svc%d", len(f.services)+1), Name: spec.Name, Version: 1, Spec: spec}
		f.services = append(f.services, svc)
		f.scheduleLocked(svc)
		f.mu.Unlock()
		f.reply(w, svc)
	})
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []api.Service
		for _, s := range f.services {
			out = append(out, *s)
		}
		f.reply(w, out)
	})
	mux.HandleFunc("GET /v1/services/{id}", func(w http.ResponseWriter, r *http.Request) {
		if s := f.service(r.PathValue("id")); s != nil {
			f.reply(w, s)
			return
		}
		f.fail(w, http.StatusNotFound, "service "+r.PathValue("id")+" not found")
	})
	mux.HandleFunc("POST /v1/services/{id}/update", func(w http.ResponseWriter, r *http.Request) {
		s := f.service(r.PathValue("id"))
		if s == nil {
			f.fail(w, http.StatusNotFound, "service not found")
			return
		}
		var spec api.ServiceSpec
		_ = json.NewDecoder(r.Body).Decode(&spec)
		f.mu.Lock()
		f.lastSpec, f.lastQuery = spec, r.URL.RawQuery
		s.Spec = spec
		s.Version++
		f.scheduleLocked(s)
		f.mu.Unlock()
		f.reply(w, s)
	})
	mux.HandleFunc("POST /v1/services/{id}/scale", func(w http.ResponseWriter, r *http.Request) {
		s := f.service(r.PathValue("id"))
		if s == nil {
			f.fail(w, http.StatusNotFound, "service not found")
			return
		}
		var req api.ScaleRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		s.Spec.Replicas = req.Replicas
		s.Version++
		f.scheduleLocked(s)
		f.mu.Unlock()
		f.reply(w, s)
	})
	mux.HandleFunc("POST /v1/services/{id}/rollback", func(w http.ResponseWriter, r *http.Request) {
		if s := f.service(r.PathValue("id")); s != nil {
			f.reply(w, s)
			return
		}
		f.fail(w, http.StatusNotFound, "service not found")
	})
	mux.HandleFunc("GET /v1/containers", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.containers != nil {
			f.reply(w, f.containers)
			return
		}
		f.reply(w, []api.Container{
			{ID: "ctr1aaaaaaaaaaaaaaaa", Name: "one", Image: "busybox", State: "running"},
			{ID: "ctr2bbbbbbbbbbbbbbbb", Name: "two", Image: "busybox", State: "exited"},
		})
	})
	mux.HandleFunc("GET /v1/services/{id}/tasks", func(w http.ResponseWriter, r *http.Request) {
		s := f.service(r.PathValue("id"))
		if s == nil {
			f.fail(w, http.StatusNotFound, "service not found")
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.advanceLocked()
		var out []api.Task
		for _, t := range f.tasks {
			if t.ServiceID == s.ID {
				out = append(out, t)
			}
		}
		f.reply(w, out)
	})
	mux.HandleFunc("POST /v1/containers", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		_ = json.NewDecoder(r.Body).Decode(&f.lastRun)
		status, msg := f.runStatus, f.runMsg
		f.mu.Unlock()
		if status != 0 {
			f.fail(w, status, msg)
			return
		}
		f.reply(w, api.Container{ID: "ctr1", State: "running"})
	})
	mux.HandleFunc("GET /v1/containers/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		if f.containers != nil {
			i := f.containerLocked(r.PathValue("id"))
			if i < 0 {
				f.containerNotFoundLocked(w, r.PathValue("id"))
				f.mu.Unlock()
				return
			}
			f.logsRead = f.containers[i].ID
		}
		f.mu.Unlock()
		enc := json.NewEncoder(w)
		for _, l := range f.logs {
			_ = enc.Encode(l)
		}
	})
	mux.HandleFunc("DELETE /v1/containers/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.removed = r.PathValue("id")
		if f.containers != nil {
			i := f.containerLocked(r.PathValue("id"))
			if i < 0 {
				f.removed = ""
				f.containerNotFoundLocked(w, r.PathValue("id"))
				return
			}
			f.removed = f.containers[i].ID
		}
		f.reply(w, struct{}{})
	})
	mux.HandleFunc("POST /v1/containers/{id}/wait", func(w http.ResponseWriter, r *http.Request) {
		if f.waitStop != nil {
			select {
			case <-f.waitStop:
				f.reply(w, api.Container{ID: "ctr1", State: "exited", ExitCode: 143})
			case <-r.Context().Done():
			}
			return
		}
		f.reply(w, api.Container{ID: "ctr1", State: "exited", ExitCode: f.exitCode})
	})
	f.addPsRoutes(mux)

	sock := filepath.Join(t.TempDir(), "shoal.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f.requests = map[string]int{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests[r.Method+" "+r.URL.Path]++
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	f.host = "unix://" + sock
	return f
}

func (f *fakeAgent) reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeAgent) fail(w http.ResponseWriter, code int, msg string) {
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: msg})
}

func (f *fakeAgent) service(id string) *api.Service {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.services {
		if s.ID == id || s.Name == id {
			return s
		}
	}
	return nil
}

// scheduleLocked makes the tasks match the service's spec: old-spec tasks
// are shut down and missing slots get a new task.
func (f *fakeAgent) scheduleLocked(s *api.Service) {
	have := map[int]bool{}
	for i, t := range f.tasks {
		if t.ServiceID != s.ID || t.DesiredState != api.TaskRunning {
			continue
		}
		if !api.MaterialEqual(&t.Spec, &s.Spec) || t.Slot > int(s.Spec.Replicas) {
			f.tasks[i].DesiredState = api.TaskShutdown
			f.tasks[i].State = api.TaskShutdown
			continue
		}
		have[t.Slot] = true
	}
	for slot := 1; slot <= int(s.Spec.Replicas); slot++ {
		if !have[slot] {
			f.tasks = append(f.tasks, api.Task{
				ID: fmt.Sprintf("task%d", len(f.tasks)+1), Name: s.Name + "." + strconv.Itoa(slot),
				ServiceID: s.ID, Service: s.Name, Slot: slot, NodeID: "node1aaaaaaaaaaaaaaa", Node: "h1",
				DesiredState: api.TaskRunning, State: api.TaskNew, Image: s.Spec.Image,
				Spec: s.Spec, SpecVersion: s.Version, CreatedAt: time.Now(),
			})
		}
	}
}

// advanceLocked moves every live task one state forward (or to failed).
func (f *fakeAgent) advanceLocked() {
	for i, t := range f.tasks {
		if f.crashTasks && t.DesiredState == api.TaskRunning && t.State == api.TaskRunning {
			f.tasks[i].State = api.TaskFailed
			f.tasks[i].Error = "task: non-zero exit (1)"
			f.tasks[i].DesiredState = api.TaskShutdown
			continue
		}
		if t.DesiredState != api.TaskRunning || api.TaskTerminal(t.State) || t.State == api.TaskRunning {
			continue
		}
		if f.failTasks {
			f.tasks[i].State = api.TaskFailed
			f.tasks[i].Error = "exec: no such file"
			f.tasks[i].DesiredState = api.TaskShutdown
			continue
		}
		switch t.State {
		case api.TaskNew:
			f.tasks[i].State = api.TaskStarting
		default:
			f.tasks[i].State = api.TaskRunning
		}
	}
	if f.failTasks || f.crashTasks {
		for _, s := range f.services {
			f.scheduleLocked(s)
		}
	}
}

// runCLI runs the CLI in-process against host and returns its outputs.
func runCLI(t *testing.T, host, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	s := &shell.Shell{
		Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader(stdin),
		Poll: 2 * time.Millisecond,
		Now:  func() time.Time { return time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, s, append([]string{"shoal", "--host", host}, args...))
	return out.String(), errOut.String(), code
}

// TestCLINodeVersionFields: in node ls and node inspect JSON, version is
// the node record's Raft version (DESIGN.md's contract) and agent_version
// the agent's release, which the table's VERSION column shows.
func TestCLINodeVersionFields(t *testing.T) {
	f := newFakeAgent(t)
	f.nodes[0].Version = 7
	for _, args := range [][]string{{"node", "ls", "--format", "json"}, {"node", "inspect", "h1"}, {"node", "inspect", "--format", "json", "h1"}} {
		out, errOut, code := runCLI(t, f.host, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var n map[string]any
		if strings.HasPrefix(strings.TrimSpace(out), "[") {
			var nodes []map[string]any
			if err := json.Unmarshal([]byte(out), &nodes); err != nil || len(nodes) == 0 {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
			n = nodes[0]
		} else if err := json.Unmarshal([]byte(out), &n); err != nil {
			t.Fatalf("%v: not JSON: %v\n%s", args, err, out)
		}
		if n["version"] != float64(7) || n["agent_version"] != "v1.2.0" {
			t.Errorf("%v: version %v, agent_version %v; want 7 and v1.2.0", args, n["version"], n["agent_version"])
		}
	}
}

func TestCLINodeLs(t *testing.T) {
	f := newFakeAgent(t)

	out, errOut, code := runCLI(t, f.host, "", "node", "ls", "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var nodes []map[string]any
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	if len(nodes) != 2 || nodes[0]["id"] != "node1aaaaaaaaaaaaaaa" || nodes[1]["manager_status"] != "" || nodes[0]["hostname"] != "h1" ||
		nodes[0]["agent_version"] != "v1.2.0" {
		t.Fatalf("nodes = %v", nodes)
	}

	out, _, code = runCLI(t, f.host, "", "node", "ls")
	want := "ID               HOSTNAME   STATUS   AVAILABILITY   MANAGER STATUS   ADDR       VERSION\n" +
		"node1aaaaaaa *   h1         ready    active         leader           10.0.0.1   v1.2.0\n" +
		"node2bbbbbbb     h2         down     drain                           10.0.0.2   \n"
	if code != 0 || out != want {
		t.Fatalf("table:\n%s\nwant:\n%s", out, want)
	}

	out, _, _ = runCLI(t, f.host, "", "node", "ls", "-q")
	if out != "node1aaaaaaaaaaaaaaa\nnode2bbbbbbbbbbbbbbb\n" {
		t.Fatalf("-q: %q", out)
	}

	out, _, _ = runCLI(t, f.host, "", "node", "inspect", "h2", "--format", "json")
	var one api.Node
	if err := json.Unmarshal([]byte(out), &one); err != nil || one.Hostname != "h2" {
		t.Fatalf("inspect one: %v %s", err, out)
	}
	out, _, _ = runCLI(t, f.host, "", "node", "inspect", "h1", "h2")
	var two []api.Node
	if err := json.Unmarshal([]byte(out), &two); err != nil || len(two) != 2 {
		t.Fatalf("inspect two: %v %s", err, out)
	}

	_, errOut, code = runCLI(t, f.host, "", "node", "inspect", "nope")
	if code != 1 || !strings.Contains(errOut, "Error: inspect node nope: node nope not found") {
		t.Fatalf("missing node: exit %d, stderr %q", code, errOut)
	}
}

func TestCLIServiceCreateSpec(t *testing.T) {
	full := specflags.DefaultSpec()
	full.Name, full.Replicas, full.Image, full.Command = "web", 3, "busybox", []string{"sh", "-c", "echo -n hi --x"}
	full.Ports = []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}, {Published: 53, Target: 53, Protocol: "udp"}}
	full.Env = []string{"A=1", "B=2"}
	full.Labels = map[string]string{"x": "y"}
	full.Constraints = []string{"node.labels.zone==a", "node.hostname!=h2"}
	full.Resources = api.ResourceRequirements{
		Limits:       api.Resources{MemoryBytes: 64 << 20, NanoCPUs: 500_000_000, Pids: 100},
		Reservations: api.Resources{MemoryBytes: 32 << 20, NanoCPUs: 250_000_000},
	}
	full.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "wget -q localhost"}, Interval: 5 * time.Second, Timeout: time.Second, StartPeriod: 2 * time.Second, Retries: 2}
	full.RestartPolicy = api.RestartPolicy{Condition: "on-failure", Delay: time.Second, MaxAttempts: 3, Window: time.Minute}
	full.UpdateConfig = api.UpdateConfig{Parallelism: 2, Delay: 10 * time.Second, Order: "start-first", FailureAction: "rollback", Monitor: 3 * time.Second, MaxFailureRatio: 0.2}
	full.RollbackConfig.Parallelism = 0
	full.RollbackConfig.FailureAction = "continue"
	full.StopGracePeriod = 3 * time.Second
	full.Workdir, full.User, full.Entrypoint = "/app", "nobody", []string{"/bin/sh", "-c"}

	global := specflags.DefaultSpec()
	global.Name, global.Mode, global.Replicas, global.Image = "agent", "global", 0, "busybox"

	minimal := specflags.DefaultSpec()
	minimal.Name, minimal.Image = "m", "busybox"

	tests := []struct {
		name     string
		args     []string
		want     *api.ServiceSpec
		wantCode int
	}{
		{"minimal", []string{"--name", "m", "-d", "busybox"}, &minimal, 0},
		{"full", []string{"--name", "web", "--replicas", "3", "-p", "8080:80", "--publish", "53:53/udp",
			"-e", "A=1", "--env", "B=2", "--label", "x=y", "--constraint", "node.labels.zone == a", "--constraint", "node.hostname!=h2",
			"--limit-memory", "64M", "--limit-cpu", "0.5", "--limit-pids", "100", "--reserve-memory", "32m", "--reserve-cpu", "0.25",
			"--health-cmd", "wget -q localhost", "--health-interval", "5s", "--health-timeout", "1s", "--health-start-period", "2s", "--health-retries", "2",
			"--restart-condition", "on-failure", "--restart-delay", "1s", "--restart-max-attempts", "3", "--restart-window", "1m",
			"--update-parallelism", "2", "--update-delay", "10s", "--update-order", "start-first", "--update-failure-action", "rollback",
			"--update-monitor", "3s", "--update-max-failure-ratio", "0.2", "--rollback-parallelism", "0", "--rollback-failure-action", "continue",
			"--stop-grace-period", "3s", "--workdir", "/app", "--user", "nobody", "--entrypoint", "/bin/sh -c", "-d",
			"busybox", "sh", "-c", "echo -n hi --x"}, &full, 0},
		{"global", []string{"--name", "agent", "--mode", "global", "-d", "busybox"}, &global, 0},
		{"flags after image are the command", []string{"--name", "m", "-d", "busybox", "--name", "x"}, func() *api.ServiceSpec {
			s := minimal
			s.Command = []string{"--name", "x"}
			return &s
		}(), 0},
		{"calm", []string{"--name", "m", "--disconnect-grace", "30s", "--at-most-once", "--no-rebalance", "-d", "busybox"}, func() *api.ServiceSpec {
			s := minimal
			s.DisconnectGrace, s.AtMostOnce, s.NoRebalance = 30*time.Second, true, true
			return &s
		}(), 0},
		{"negative disconnect grace", []string{"--disconnect-grace", "-1s", "busybox"}, nil, 2},
		{"global with replicas", []string{"--mode", "global", "--replicas", "2", "busybox"}, nil, 2},
		{"bad mode", []string{"--mode", "sometimes", "busybox"}, nil, 2},
		{"bad constraint", []string{"--constraint", "node.hostname=h1", "busybox"}, nil, 2},
		{"bad publish", []string{"-p", "80:99999", "busybox"}, nil, 2},
		{"bad memory", []string{"--limit-memory", "lots", "busybox"}, nil, 2},
		{"bad cpu", []string{"--limit-cpu", "-1", "busybox"}, nil, 2},
		{"bad failure action", []string{"--update-failure-action", "explode", "busybox"}, nil, 2},
		{"rollback cannot rollback", []string{"--rollback-failure-action", "rollback", "busybox"}, nil, 2},
		{"bad ratio", []string{"--update-max-failure-ratio", "2", "busybox"}, nil, 2},
		{"health and no health", []string{"--health-cmd", "true", "--no-healthcheck", "busybox"}, nil, 2},
		{"no image", []string{"--name", "web"}, nil, 2},
		{"unknown flag", []string{"--frobnicate", "busybox"}, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAgent(t)
			out, errOut, code := runCLI(t, f.host, "", append([]string{"service", "create"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.wantCode, errOut)
			}
			if tt.want == nil {
				if !strings.HasPrefix(errOut, "Error: ") {
					t.Fatalf("stderr %q does not start with Error:", errOut)
				}
				return
			}
			if out != "svc1\n" {
				t.Fatalf("stdout %q, want the service ID", out)
			}
			if !reflect.DeepEqual(f.lastSpec, *tt.want) {
				got, _ := json.MarshalIndent(f.lastSpec, "", " ")
				want, _ := json.MarshalIndent(tt.want, "", " ")
				t.Fatalf("spec:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestCLIServiceCreateWaits(t *testing.T) {
	f := newFakeAgent(t)
	// The tasks must stay running for the monitor period (docker's
	// "verify: waiting ... that tasks are stable").
	out, errOut, code := runCLI(t, f.host, "", "service", "create", "--name", "web", "--replicas", "2", "--update-monitor", "30ms", "busybox", "sleep", "1000")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != "svc1\n" {
		t.Fatalf("stdout %q", out)
	}
	for _, want := range []string{"web.1: running\n", "web.2: running\n", "web: verifying that tasks are stable (monitor 30ms)\n", "web: converged, 2/2 running\n"} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("progress %q lacks %q", errOut, want)
		}
	}

	// Scale and update follow convergence too; update sends the version.
	if _, errOut, code = runCLI(t, f.host, "", "service", "scale", "web=3"); code != 0 || !strings.Contains(errOut, "web.3: running") {
		t.Fatalf("scale: exit %d, stderr %s", code, errOut)
	}
	_, errOut, code = runCLI(t, f.host, "", "service", "update", "--image", "busybox:2", "--env-add", "A=1", "--force", "web")
	if code != 0 || !strings.Contains(errOut, "converged, 3/3") {
		t.Fatalf("update: exit %d, stderr %s", code, errOut)
	}
	if f.lastQuery != "version=2" || f.lastSpec.Image != "busybox:2" || !slices.Equal(f.lastSpec.Env, []string{"A=1"}) || f.lastSpec.Replicas != 3 || f.lastSpec.ForceUpdate != 1 {
		t.Fatalf("update sent %q %+v", f.lastQuery, f.lastSpec)
	}

	out, _, code = runCLI(t, f.host, "", "service", "ls")
	if code != 0 || !strings.Contains(out, "web    replicated   0/3        busybox:2") {
		t.Fatalf("service ls:\n%s", out)
	}
	out, _, code = runCLI(t, f.host, "", "service", "ps", "web", "--filter", "desired-state=running", "--format", "json")
	var tasks []api.Task
	if err := json.Unmarshal([]byte(out), &tasks); code != 0 || err != nil || len(tasks) != 3 {
		t.Fatalf("service ps: exit %d, %v, %d tasks", code, err, len(tasks))
	}
}

func TestCLIServiceCreateFailing(t *testing.T) {
	f := newFakeAgent(t)
	f.failTasks = true
	_, errOut, code := runCLI(t, f.host, "", "service", "create", "--name", "bad", "busybox")
	if code != 1 || !strings.Contains(errOut, "Error: tasks of bad keep failing") || !strings.Contains(errOut, "exec: no such file") {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
}

// TestCLIServiceCreateCrashLoop: tasks that reach running and die right
// after (a command that exits at once) fail the wait. Before, the first
// poll that saw them running ended it: "converged, 1/1 running", exit 0,
// for a service that never stays up (docker's wait verifies for the
// monitor period that tasks are stable).
func TestCLIServiceCreateCrashLoop(t *testing.T) {
	f := newFakeAgent(t)
	f.crashTasks = true
	_, errOut, code := runCLI(t, f.host, "", "service", "create", "--name", "crash", "busybox", "sh", "-c", "exit 1")
	if code != 1 || strings.Contains(errOut, "converged") || !strings.Contains(errOut, "Error: tasks of crash keep failing") {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	// A scale up waits for the new task's period too.
	f.mu.Lock()
	f.crashTasks = false
	f.mu.Unlock()
	if _, errOut, code := runCLI(t, f.host, "", "service", "create", "--name", "web", "--update-monitor", "50ms", "busybox"); code != 0 {
		t.Fatalf("create web: exit %d, stderr %s", code, errOut)
	}
	f.mu.Lock()
	f.crashTasks = true
	f.mu.Unlock()
	_, errOut, code = runCLI(t, f.host, "", "service", "scale", "web=2")
	if code != 1 || strings.Contains(errOut, "converged") || !strings.Contains(errOut, "keep failing") {
		t.Fatalf("scale: exit %d, stderr %s", code, errOut)
	}
}

func TestCLITimeout(t *testing.T) {
	f := newFakeAgent(t)
	// Create detached, then make the tasks vanish so nothing converges.
	if _, errOut, code := runCLI(t, f.host, "", "service", "create", "-d", "--name", "web", "busybox"); code != 0 {
		t.Fatal(errOut)
	}
	f.mu.Lock()
	f.tasks = nil
	f.services[0].Spec.Replicas = 5
	f.mu.Unlock()
	_, errOut, code := runCLI(t, f.host, "", "service", "rollback", "--timeout", "50ms", "web")
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "Error: service did not converge: web within 50ms (0/5 running)") {
		t.Fatalf("stderr %s", errOut)
	}
}

func TestCLIRun(t *testing.T) {
	f := newFakeAgent(t)
	f.logs = []api.LogLine{{Stream: "stdout", Line: "hello"}, {Stream: "stderr", Line: "oops"}}
	f.exitCode = 3
	out, errOut, code := runCLI(t, f.host, "", "run", "--rm", "-e", "A=1", "--memory", "64M", "--cpus", "0.5", "--pids-limit", "20", "busybox", "sh", "-c", "exit 3")
	if code != 3 || out != "hello\n" || errOut != "oops\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	want := api.RunRequest{Image: "busybox", Command: []string{"sh", "-c", "exit 3"}, Env: []string{"A=1"},
		Limits: api.Resources{MemoryBytes: 64 << 20, NanoCPUs: 500_000_000, Pids: 20}}
	if !reflect.DeepEqual(f.lastRun, want) {
		t.Fatalf("run request %+v, want %+v", f.lastRun, want)
	}
	if f.removed != "ctr1" {
		t.Fatalf("--rm did not remove the container after reading its output (removed %q)", f.removed)
	}
	out, _, code = runCLI(t, f.host, "", "run", "-d", "--rm", "busybox")
	if code != 0 || out != "ctr1\n" || !f.lastRun.Remove {
		t.Fatalf("run -d --rm: exit %d, %q, remove=%v", code, out, f.lastRun.Remove)
	}
}

// TestCLIRunExecNeverStarted: a run or exec whose command never ran exits
// with docker's codes, the error on stderr: 125 when the agent refused the
// run (an unknown user, image or network: it was 1, which a command exits
// with too), 126 when runc could not start the exec'd command (a working
// directory that does not exist: it was 127, taken for a missing command
// since runc says "no such file or directory" of the directory too), 127
// only when runc could not find the command itself.
func TestCLIRunExecNeverStarted(t *testing.T) {
	for _, tt := range []struct {
		name             string
		args             []string
		runStatus        int
		runMsg, execMsg  string
		wantCode         int
		wantErr, wantCmd string
	}{
		{name: "run as an unknown user", args: []string{"run", "--rm", "-u", "nobody", "busybox", "true"}, runStatus: http.StatusBadRequest,
			runMsg: "invalid container spec: unable to find user nobody: no matching entries in passwd file", wantCode: 125,
			wantErr: "Error: run busybox: invalid container spec: unable to find user nobody: no matching entries in passwd file\n"},
		{name: "run -d of an unknown image", args: []string{"run", "-d", "nosuch:1"}, runStatus: http.StatusNotFound,
			runMsg: "image nosuch:1 not found on any node", wantCode: 125, wantErr: "Error: run nosuch:1: image nosuch:1 not found on any node\n"},
		{name: "run with a name in use", args: []string{"run", "--name", "dup", "busybox"}, runStatus: http.StatusConflict,
			runMsg: "container name already in use: dup", wantCode: 125, wantErr: "Error: run busybox: container name already in use: dup\n"},
		{name: "exec in a missing workdir", args: []string{"exec", "-w", "/nonexist", "web.1", "true"}, wantCode: 126,
			execMsg: `exec failed: unable to start container process: chdir to cwd ("/nonexist") set in config.json failed: no such file or directory`,
			wantErr: `Error: exec in web.1: exec failed: unable to start container process: chdir to cwd ("/nonexist") set in config.json failed: no such file or directory` + "\n"},
		{name: "exec in a missing workdir, missing command", args: []string{"exec", "-w", "/nonexist", "web.1", "nonexist"}, wantCode: 126,
			execMsg: `exec failed: unable to start container process: chdir to cwd ("/nonexist") set in config.json failed: no such file or directory`},
		{name: "exec of a workdir that is a file", args: []string{"exec", "-w", "/etc/passwd", "web.1", "true"}, wantCode: 126,
			execMsg: `exec failed: unable to start container process: chdir to cwd ("/etc/passwd") set in config.json failed: not a directory`},
		{name: "exec of a missing command", args: []string{"exec", "web.1", "nonexist"}, wantCode: 127,
			execMsg: `exec failed: unable to start container process: exec: "nonexist": executable file not found in $PATH`},
		{name: "exec of a missing path", args: []string{"exec", "web.1", "/no/such"}, wantCode: 127,
			execMsg: `exec failed: unable to start container process: exec: "/no/such": stat /no/such: no such file or directory`},
		{name: "exec of a directory", args: []string{"exec", "web.1", "/etc"}, wantCode: 126,
			execMsg: `exec failed: unable to start container process: exec: "/etc": permission denied`},
		{name: "exec as an unknown user", args: []string{"exec", "-u", "nobody", "web.1", "true"}, wantCode: 126,
			execMsg: `exec failed: unable to find user nobody: no matching entries in passwd file`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAgent(t)
			f.runStatus, f.runMsg = tt.runStatus, tt.runMsg
			if tt.execMsg != "" {
				f.execMsg = tt.execMsg
				f.containers = []api.Container{{ID: "ctrweb11111111111111", Name: "web.1.t1", TaskID: "t1", State: "running"}}
			}
			_, errOut, code := runCLI(t, f.host, "", tt.args...)
			if code != tt.wantCode || (tt.wantErr != "" && errOut != tt.wantErr) || !strings.HasPrefix(errOut, "Error: ") {
				t.Fatalf("exit %d, stderr %q; want %d, %q", code, errOut, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// TestCLIRunInterrupted: a SIGINT or SIGTERM to an attached `shoal run`
// (main cancels the context) stops the container, waits for its exit,
// removes it with --rm and exits with its code. It used to exit 130 at
// once, the container running on and never removed.
func TestCLIRunInterrupted(t *testing.T) {
	f := newFakeAgent(t)
	f.containers = []api.Container{{ID: "ctr1", Name: "job", State: api.ContainerRunning}}
	f.waitStop = make(chan struct{}, 1)
	var out, errOut bytes.Buffer
	s := &shell.Shell{Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader(""), Poll: 2 * time.Millisecond, Now: time.Now}
	ctx, interrupt := context.WithCancel(context.Background())
	codeCh := make(chan int, 1)
	go func() {
		codeCh <- run(ctx, s, []string{"shoal", "--host", f.host, "run", "--rm", "--name", "job", "busybox", "sleep", "100"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		waiting := f.requests["POST /v1/containers/ctr1/wait"] > 0
		f.mu.Unlock()
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run never waited for its container")
		}
		time.Sleep(2 * time.Millisecond)
	}
	interrupt()
	var code int
	select {
	case code = <-codeCh:
	case <-time.After(10 * time.Second):
		close(f.waitStop)
		t.Fatal("the interrupted run did not return")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if code != 143 || !slices.Equal(f.stopped, []string{"ctr1"}) || f.removed != "ctr1" {
		t.Fatalf("interrupted run: exit %d (want 143), stopped %v, removed %q, stderr %q", code, f.stopped, f.removed, errOut.String())
	}
}

func TestCLIMisc(t *testing.T) {
	f := newFakeAgent(t)
	out, _, code := runCLI(t, f.host, "", "token")
	if code != 0 || out != "SHOAL-1-abc-def\n" {
		t.Fatalf("token: %d %q", code, out)
	}
	_, errOut, code := runCLI(t, "unix://"+filepath.Join(t.TempDir(), "none.sock"), "", "status")
	if code != 1 || !strings.Contains(errOut, "is `shoal agent` running?") {
		t.Fatalf("unreachable: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, f.host, "", "service", "inspect", "ghost")
	if code != 1 || errOut != "Error: inspect service ghost: service ghost not found\n" {
		t.Fatalf("missing service: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, f.host, "", "node", "update", "--availability", "sideways", "h1")
	if code != 2 || !strings.Contains(errOut, "invalid --availability") {
		t.Fatalf("bad availability: %d %q", code, errOut)
	}
	_, _, code = runCLI(t, f.host, "", "service", "scale", "web")
	if code != 2 {
		t.Fatalf("bad scale: exit %d", code)
	}
	out, _, code = runCLI(t, f.host, "", "ps", "-aq")
	if code != 0 || out != "ctr1aaaaaaaaaaaaaaaa\nctr2bbbbbbbbbbbbbbbb\n" {
		t.Fatalf("ps -aq: %d %q", code, out)
	}
	out, _, code = runCLI(t, f.host, "", "ps", "--format", "{{.Name}} {{.State}}")
	if code != 0 || out != "one running\n" {
		t.Fatalf("ps template: %d %q", code, out)
	}
}

// TestCLIVersion: `shoal version` shows the CLI's release and the
// agent's, as docker version shows client and server; before, it was an
// unknown command (exit 2). An agent that does not answer is an error
// after the client's line.
func TestCLIVersion(t *testing.T) {
	f := newFakeAgent(t)
	out, errOut, code := runCLI(t, f.host, "", "version")
	if code != 0 || !strings.Contains(out, "Client:") || !strings.Contains(out, "Agent:   v1.2.0 (h1)") {
		t.Fatalf("version: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = runCLI(t, f.host, "", "version", "--format", "json")
	var v map[string]string
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v["agent"] != "v1.2.0" || v["client"] == "" {
		t.Fatalf("version --format json: exit %d, %v, %q", code, err, out)
	}
	out, errOut, code = runCLI(t, "unix://"+filepath.Join(t.TempDir(), "none.sock"), "", "version")
	if code != 1 || !strings.HasPrefix(out, "Client:") || !strings.Contains(errOut, "the agent did not answer") {
		t.Fatalf("no agent: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, _, code = runCLI(t, f.host, "", "version", "extra"); code != 2 {
		t.Fatalf("version extra: exit %d, want 2", code)
	}
}

// TestCLIUITokenNeedsDataDirWithHost: `ui token` works on a data dir; given
// an agent's socket (--host) and no --data-dir it refuses and writes
// nothing, rather than print a token of the default dir the agent refuses.
func TestCLIUITokenNeedsDataDirWithHost(t *testing.T) {
	f := newFakeAgent(t)
	_, errOut, code := runCLI(t, f.host, "", "ui", "token")
	if code != 2 || !strings.Contains(errOut, "give --data-dir") {
		t.Fatalf("ui token with --host: exit %d, stderr %q", code, errOut)
	}
	dir := t.TempDir()
	out, errOut, code := runCLI(t, f.host, "", "ui", "token", "--data-dir", dir)
	if code != 0 || !strings.HasPrefix(out, "SHOALUI-") {
		t.Fatalf("ui token --data-dir: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(&shell.Shell{})
	tests := []struct {
		in, want string
	}{
		{"shoal node ls", "shoal node ls"},
		{"shoal service ps web --format json", "shoal service ps --format json web"},
		{"shoal service ps web --format=json -q", "shoal service ps --format=json --quiet web"},
		{"shoal node ls --host unix:///x.sock", "shoal --host unix:///x.sock node ls"},
		{"shoal service create --name web busybox sleep -d 1", "shoal service create --name web busybox sleep -d 1"},
		{"shoal run busybox --rm", "shoal run busybox --rm"},
		{"shoal image import - app:v1", "shoal image import - app:v1"},
		{"shoal rm ctr -f", "shoal rm --force ctr"},
		{"shoal logs -- -weird", "shoal logs -- -weird"},
		{"shoal stop ctr1 -t 3 ctr2", "shoal stop --time 3 ctr1 ctr2"},
		{"shoal -H unix:///y.sock ps -aq", "shoal --host unix:///y.sock ps -aq"},
	}
	for _, tt := range tests {
		got := strings.Join(reorderArgs(app, strings.Fields(tt.in)), " ")
		if got != tt.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestCLIInspectSomeMissing: inspect of several references prints those
// found (a JSON array, even of one) and an error for each missing one, exit
// 1, as docker; the first miss used to print nothing at all.
func TestCLIInspectSomeMissing(t *testing.T) {
	f := newFakeAgent(t)
	f.networks = []api.Network{{ID: "net1", Name: "front"}, {ID: "net2", Name: "back"}}
	for _, tc := range []struct {
		args    []string
		wantIDs []string
		array   bool
		errs    []string
	}{
		{[]string{"front", "nosuch", "back"}, []string{"net1", "net2"}, true, []string{"nosuch"}},
		{[]string{"front", "nosuch"}, []string{"net1"}, true, []string{"nosuch"}},
		{[]string{"nosuch", "gone"}, nil, false, []string{"nosuch", "gone"}},
		{[]string{"front"}, []string{"net1"}, false, nil},
	} {
		out, errOut, code := runCLI(t, f.host, "", append([]string{"network", "inspect"}, tc.args...)...)
		if wantCode := map[bool]int{true: 1, false: 0}[len(tc.errs) > 0]; code != wantCode {
			t.Errorf("inspect %v: exit %d, want %d (stderr %q)", tc.args, code, wantCode, errOut)
		}
		for _, e := range tc.errs {
			if !strings.Contains(errOut, "Error: inspect network "+e+": no such network: "+e) {
				t.Errorf("inspect %v: stderr %q does not name %s", tc.args, errOut, e)
			}
		}
		var got []api.Network
		switch {
		case tc.wantIDs == nil:
			if out != "" {
				t.Errorf("inspect %v: stdout %q, want nothing", tc.args, out)
			}
			continue
		case tc.array:
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Errorf("inspect %v: stdout %q is no JSON array: %v", tc.args, out, err)
			}
		default:
			var one api.Network
			if err := json.Unmarshal([]byte(out), &one); err != nil {
				t.Errorf("inspect %v: stdout %q is no JSON object: %v", tc.args, out, err)
			}
			got = []api.Network{one}
		}
		var ids []string
		for _, n := range got {
			ids = append(ids, n.ID)
		}
		if !slices.Equal(ids, tc.wantIDs) {
			t.Errorf("inspect %v: printed %v, want %v", tc.args, ids, tc.wantIDs)
		}
	}
}

// TestCreateRefusedNamesObject: a network or secret create the cluster
// cannot apply (no leader: the write path's "no quorum", which names no
// operation) says which create failed, as service create does, and exits
// non-zero.
func TestCreateRefusedNamesObject(t *testing.T) {
	f := newFakeAgent(t)
	f.refuseWrite = "no quorum: the write was not applied: the cluster has no leader and cannot elect one"
	secret := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "back-end_1"}, "create network back-end_1: no quorum: "},
		{[]string{"secret", "create", "db_pw", secret}, "create secret db_pw: no quorum: "},
	} {
		out, errOut, code := runCLI(t, f.host, "", tc.args...)
		if code == 0 || out != "" || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "no quorum") != 1 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want an error with %q", tc.args, code, out, errOut, tc.want)
		}
	}
}
