package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/httpapi"
	"github.com/shoal-org/shoal/runtime"
)

func TestDisplayContainerHealth(t *testing.T) {
	for _, tc := range []struct{ state, health, want string }{
		{api.ContainerRunning, api.HealthHealthy, api.HealthHealthy},
		{api.ContainerRunning, "starting", "starting"},
		{api.ContainerExited, api.HealthHealthy, ""},
		{api.ContainerExited, "starting", ""},
		{api.ContainerCreated, api.HealthUnhealthy, ""},
	} {
		got := displayContainer(api.Container{State: tc.state, Health: tc.health}).Health
		if got != tc.want {
			t.Errorf("%s container with health %q shows %q, want %q", tc.state, tc.health, got, tc.want)
		}
	}
}

// fakeContainers is a runtime of fixed containers: Get by ID, name or
// unique ID prefix, as runtime.Runtime finds them.
type fakeContainers struct {
	Containers // nil: the routes under test call List and Get only
	list       []api.Container
}

func (f fakeContainers) List() []api.Container { return f.list }

func (f fakeContainers) Get(ref string) (api.Container, error) {
	var found []api.Container
	for _, c := range f.list {
		if c.ID == ref || c.Name == ref {
			return c, nil
		}
		if ref != "" && strings.HasPrefix(c.ID, ref) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return api.Container{}, fmt.Errorf("%w: %s", runtime.ErrNotFound, ref)
	case 1:
		return found[0], nil
	}
	return api.Container{}, fmt.Errorf("%w: %s", runtime.ErrAmbiguous, ref)
}

// fakeAgent knows tasks of other nodes by name (TaskNode).
type fakeAgent struct {
	Agent
	elsewhere map[string]string
}

func (f fakeAgent) TaskNode(name string) string { return f.elsewhere[name] }

// TestContainerLookup: every container route resolves its reference in
// Routes.container: a container ID, name or ID prefix first, then a task
// name of this node (its running container, else its newest), and a task
// of another node is named in the not-found.
func TestContainerLookup(t *testing.T) {
	at := time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC)
	l := &Routes{
		Containers: fakeContainers{list: []api.Container{
			{ID: "ctrold1111", Name: "web.1.oldtask", TaskID: "oldtask", State: api.ContainerExited, CreatedAt: at},
			{ID: "ctrweb1111", Name: "web.1.newtask", TaskID: "newtask", State: api.ContainerRunning, CreatedAt: at.Add(-time.Hour)},
			{ID: "ctrshop111", Name: "shop_web.1.abc", TaskID: "abc", State: api.ContainerExited, CreatedAt: at},
			{ID: "ctrplain11", Name: "web.2.x", State: api.ContainerRunning, CreatedAt: at},
		}},
		Agent: fakeAgent{elsewhere: map[string]string{"web.5": "h2"}},
	}
	for _, tc := range []struct {
		ref, want, wantErr string
		is                 error
	}{
		{ref: "ctrweb1111", want: "ctrweb1111"},
		{ref: "ctrshop", want: "ctrshop111"},
		{ref: "web.1.oldtask", want: "ctrold1111"},
		{ref: "web.1", want: "ctrweb1111"},
		{ref: "shop_web.1", want: "ctrshop111"},
		{ref: "ctr", wantErr: "ambiguous container ID prefix: ctr", is: runtime.ErrAmbiguous},
		{ref: "web.2", wantErr: "no such container: web.2", is: runtime.ErrNotFound},
		{ref: "web.3", wantErr: "no such container: web.3", is: runtime.ErrNotFound},
		{ref: "web.5", wantErr: "no such container: web.5 (task web.5 runs on node h2: run the command there)", is: runtime.ErrNotFound},
	} {
		c, err := l.container(tc.ref)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, tc.is) {
				t.Errorf("%s: %v, want %q", tc.ref, err, tc.wantErr)
			}
			continue
		}
		if err != nil || c.ID != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.ref, c.ID, err, tc.want)
		}
	}
}

// runContainers records the spec of the one container it runs.
type runContainers struct {
	fakeContainers
	ran *runtime.Spec
}

func (f runContainers) RunContainer(ctx context.Context, spec runtime.Spec) (api.Container, error) {
	*f.ran = spec
	return api.Container{ID: "ctr1", Name: spec.Name, State: api.ContainerRunning}, nil
}

// runAgent lets every `shoal run` through: no networks, the image here.
type runAgent struct{ Agent }

func (runAgent) RunNetworks(ctx context.Context, names []string) (context.Context, error) {
	return ctx, nil
}

func (runAgent) EnsureRunImage(ctx context.Context, ref string) error { return nil }
func (runAgent) RecordRunContainers(ctx context.Context)              {}

// TestRunLogging: the log driver and options of `shoal run` become the
// container's log rotation (or no log) as a service's do; bad ones are a
// 400 and no container is run.
func TestRunLogging(t *testing.T) {
	for _, tc := range []struct {
		driver      string
		opts        map[string]string
		status      int
		size        int64
		files       int
		none        bool
		errContains string
	}{
		{status: 200},
		{driver: "json-file", opts: map[string]string{"max-size": "1m", "max-file": "2"}, status: 200, size: 1 << 20, files: 2},
		{driver: "local", opts: map[string]string{"max-file": "7"}, status: 200, files: 7},
		{driver: "none", status: 200, none: true},
		{driver: "syslog", status: 400, errContains: "logging: unsupported log driver"},
		{opts: map[string]string{"max-size": "1"}, status: 400, errContains: "logging: log option max-size 1: must be between 4k and 1g"},
		{driver: "none", opts: map[string]string{"max-file": "2"}, status: 400, errContains: "log driver none takes no options"},
	} {
		var ran runtime.Spec
		l := &Routes{Containers: runContainers{ran: &ran}, Agent: runAgent{}}
		rt := httpapi.NewRouter(httpapi.Errors{})
		l.Register(rt)
		body, _ := json.Marshal(api.RunRequest{Image: "busybox", LogDriver: tc.driver, LogOptions: tc.opts})
		w := httptest.NewRecorder()
		rt.Mux().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/containers", bytes.NewReader(body)))
		if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.errContains) {
			t.Errorf("%q %v: %d %s, want %d %q", tc.driver, tc.opts, w.Code, w.Body, tc.status, tc.errContains)
			continue
		}
		if tc.status != 200 {
			if ran.Image != "" {
				t.Errorf("%q %v: refused, yet ran %+v", tc.driver, tc.opts, ran)
			}
			continue
		}
		if ran.Image != "busybox" || ran.LogMaxSize != tc.size || ran.LogMaxFiles != tc.files || ran.LogNone != tc.none {
			t.Errorf("%q %v: ran size %d files %d none %v, want %d %d %v", tc.driver, tc.opts, ran.LogMaxSize, ran.LogMaxFiles, ran.LogNone, tc.size, tc.files, tc.none)
		}
	}
}

// execContainers refuses every exec as the runtime refuses one in a
// container that is not running.
type execContainers struct{ fakeContainers }

func (execContainers) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (*runtime.ExecProcess, error) {
	return nil, runtime.ErrNotRunning
}

// TestExecTaskMoved: exec of a task name whose containers here have all
// ended while the task runs on another node (it moved: drained,
// rebalanced) is the not-found that names that node, as for a task that
// never ran here; it was an exec refused for a stopped container, and
// the CLI no longer says where a task runs. The other routes keep finding
// the ended container (its logs, its removal), and a container named
// outright is exec'd, or refused, as before.
func TestExecTaskMoved(t *testing.T) {
	at := time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC)
	l := &Routes{
		Containers: execContainers{fakeContainers{list: []api.Container{
			{ID: "ctrmoved11", Name: "web.7.oldtask", TaskID: "oldtask", State: api.ContainerExited, CreatedAt: at},
			{ID: "ctrdone111", Name: "job.1.t1", TaskID: "t1", State: api.ContainerExited, CreatedAt: at},
		}}},
		Agent: fakeAgent{elsewhere: map[string]string{"web.7": "h2"}},
	}
	for _, tc := range []struct {
		ref, want string
		status    int
	}{
		{"web.7", "no such container: web.7 (task web.7 runs on node h2: run the command there)", 404},
		{"web.7.oldtask", "not running", 409},
		{"job.1", "not running", 409},
	} {
		var got error
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/v1/containers/"+tc.ref+"/exec", strings.NewReader(`{"cmd":["sh"]}`))
		r.SetPathValue("id", tc.ref)
		r.Header.Set("Upgrade", api.ExecProtocol)
		l.handleExec(w, r, func(_ http.ResponseWriter, err error) { got = err })
		var he *httpapi.Error
		if got == nil || !strings.Contains(got.Error(), tc.want) {
			t.Errorf("exec %s: %v, want %q", tc.ref, got, tc.want)
		} else if strings.Contains(got.Error(), "exec in") {
			// The CLI says "exec in REF: "; the agent's answer used to
			// add its own, so users read "exec in x: exec in x: exec in ID: ...".
			t.Errorf("exec %s: %q names the exec again", tc.ref, got)
		} else if errors.As(got, &he) && he.Status != tc.status {
			t.Errorf("exec %s: status %d, want %d (%v)", tc.ref, he.Status, tc.status, got)
		}
	}
	if c, err := l.container("web.7"); err != nil || c.ID != "ctrmoved11" {
		t.Errorf("the other routes find %q, %v for web.7; want the ended ctrmoved11", c.ID, err)
	}
}

// TestImageUsers: `image rm` of an image a container uses names the
// containers, as docker's conflict does; it said only "image in use".
func TestImageUsers(t *testing.T) {
	cs := []api.Container{
		{ID: "c1", Name: "web.2.abc", ImageID: "sha256:a"},
		{ID: "c2", Name: "web.1.def", ImageID: "sha256:a"},
		{ID: "c3", Name: "db.1.ghi", ImageID: "sha256:b"},
		{ID: "0123456789abcdef", ImageID: "sha256:c"},
	}
	for _, tc := range []struct{ id, want string }{
		{"sha256:a", "container web.1.def, container web.2.abc"},
		{"sha256:b", "container db.1.ghi"},
		{"sha256:c", "container 0123456789ab"},
		{"sha256:z", "a container of this node"},
	} {
		if got := imageUsers(cs, tc.id); got != tc.want {
			t.Errorf("imageUsers(%s) = %q, want %q", tc.id, got, tc.want)
		}
	}
	var many []api.Container
	for i := range 5 {
		many = append(many, api.Container{ID: fmt.Sprint(i), Name: fmt.Sprintf("w.%d", i), ImageID: "sha256:a"})
	}
	if got, want := imageUsers(many, "sha256:a"), "container w.0, container w.1, container w.2 and 2 more"; got != want {
		t.Errorf("five users: %q, want %q", got, want)
	}
}

// TestCPUsFit: `shoal run --cpus` may ask for up to the node's CPUs;
// more is refused (400) as docker run refuses it, where it used to run
// with a quota that limited nothing.
func TestCPUsFit(t *testing.T) {
	for _, tc := range []struct {
		nano int64
		cpus int
		ok   bool
		msg  string
	}{
		{0, 2, true, ""},
		{500_000_000, 2, true, ""},
		{2_000_000_000, 2, true, ""},
		{2_500_000_000, 2, false, "--cpus 2.5: this node has only 2 CPUs (the range is 0.01 to 2.00)"},
		{100_000_000_000, 2, false, "--cpus 100: this node has only 2 CPUs (the range is 0.01 to 2.00)"},
		{100_000_000_000, 0, true, ""},
	} {
		err := cpusFit(tc.nano, tc.cpus)
		var he *httpapi.Error
		switch {
		case tc.ok && err != nil:
			t.Errorf("cpusFit(%d, %d): %v", tc.nano, tc.cpus, err)
		case !tc.ok && (!errors.As(err, &he) || he.Status != http.StatusBadRequest || he.Msg != tc.msg):
			t.Errorf("cpusFit(%d, %d) = %v, want a 400 %q", tc.nano, tc.cpus, err, tc.msg)
		}
	}
	// Through the run route: more CPUs than this machine has is refused
	// before anything runs.
	var ran runtime.Spec
	l := &Routes{Containers: runContainers{ran: &ran}, Agent: runAgent{}}
	rt := httpapi.NewRouter(httpapi.Errors{})
	l.Register(rt)
	body, _ := json.Marshal(api.RunRequest{Image: "busybox", Limits: api.Resources{NanoCPUs: int64(goruntime.NumCPU()+1) * 1e9}})
	w := httptest.NewRecorder()
	rt.Mux().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/containers", bytes.NewReader(body)))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "CPUs") || ran.Image != "" {
		t.Errorf("run with more CPUs than the node has: %d %s, ran %+v", w.Code, w.Body, ran)
	}
}
