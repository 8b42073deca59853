package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/compose"
)

// addPsRoutes adds to the fake agent the routes of the task lists
// (GET /v1/tasks) and of the container commands by name (GET and stop of
// one container among f.containers).
func (f *fakeAgent) addPsRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		node := r.URL.Query().Get("node")
		out := []api.Task{}
		for _, t := range f.tasks {
			if node == "" || t.NodeID == node {
				out = append(out, t)
			}
		}
		f.reply(w, out)
	})
	mux.HandleFunc("GET /v1/containers/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if i := f.containerLocked(r.PathValue("id")); i >= 0 {
			f.reply(w, f.containers[i])
			return
		}
		f.containerNotFoundLocked(w, r.PathValue("id"))
	})
	mux.HandleFunc("POST /v1/containers/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		i := f.containerLocked(r.PathValue("id"))
		if i < 0 {
			f.containerNotFoundLocked(w, r.PathValue("id"))
			return
		}
		f.containers[i].State = api.ContainerExited
		f.stopped = append(f.stopped, f.containers[i].ID)
		if f.waitStop != nil {
			select {
			case f.waitStop <- struct{}{}:
			default:
			}
		}
		f.reply(w, f.containers[i])
	})
	// exec of a container the fake does not hold: the agent's not-found,
	// which names the node a task of another node runs on.
	// With f.execMsg, an exec in a container it holds is runc's failure
	// to start the process (the agent's 422).
	mux.HandleFunc("POST /v1/containers/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.execMsg != "" && f.containerLocked(r.PathValue("id")) >= 0 {
			f.fail(w, http.StatusUnprocessableEntity, f.execMsg)
			return
		}
		f.containerNotFoundLocked(w, r.PathValue("id"))
	})
}

// containerLocked finds a container of f.containers by ID, name or ID
// prefix, then (unless f.oldAgent) by task name, as the agent does
// (node/localapi; -1: none).
func (f *fakeAgent) containerLocked(ref string) int {
	for i, c := range f.containers {
		if c.ID == ref || c.Name == ref || strings.HasPrefix(c.ID, ref) {
			return i
		}
	}
	if f.oldAgent {
		return -1
	}
	if ct, ok := api.TaskContainer(f.containers, ref); ok {
		for i, c := range f.containers {
			if c.ID == ct.ID {
				return i
			}
		}
	}
	return -1
}

// containerNotFoundLocked answers 404 as the agent does, naming the node
// a task of that name runs on when it is another (unless f.oldAgent).
func (f *fakeAgent) containerNotFoundLocked(w http.ResponseWriter, ref string) {
	msg := "no such container: " + ref
	for _, t := range f.tasks {
		if !f.oldAgent && t.Name == ref && t.DesiredState == api.TaskRunning && t.NodeID != "" && t.NodeID != f.status.NodeID {
			msg += fmt.Sprintf(" (task %s runs on node %s: run the command there)", ref, t.Node)
			break
		}
	}
	f.fail(w, http.StatusNotFound, msg)
}

// psFixture is a stack "shop" of two services on the fake's two nodes,
// plus a service outside the stack.
func psFixture(t *testing.T) *fakeAgent {
	f := newFakeAgent(t)
	stack := map[string]string{compose.StackLabel: "shop"}
	f.services = []*api.Service{
		{ID: "svc1", Name: "shop_web", Spec: api.ServiceSpec{Name: "shop_web", Image: "nginx", Replicas: 2, Labels: stack}},
		{ID: "svc2", Name: "shop_db", Spec: api.ServiceSpec{Name: "shop_db", Image: "pg", Replicas: 1, Labels: stack}},
		{ID: "svc3", Name: "other", Spec: api.ServiceSpec{Name: "other", Image: "busybox", Replicas: 1}},
	}
	at := time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC)
	n1, n2 := "node1aaaaaaaaaaaaaaa", "node2bbbbbbbbbbbbbbb"
	f.tasks = []api.Task{
		{ID: "taskweb1aaaaaaaaaaaa", Name: "shop_web.1", ServiceID: "svc1", Service: "shop_web", Slot: 1, NodeID: n1, Node: "h1", DesiredState: "running", State: "running", Image: "nginx", UpdatedAt: at, CreatedAt: at},
		{ID: "taskweb2bbbbbbbbbbbb", Name: "shop_web.2", ServiceID: "svc1", Service: "shop_web", Slot: 2, NodeID: n2, Node: "h2", DesiredState: "running", State: "running", Image: "nginx", UpdatedAt: at, CreatedAt: at, IP: "10.1.0.3"},
		{ID: "taskweb0cccccccccccc", Name: "shop_web.2", ServiceID: "svc1", Service: "shop_web", Slot: 2, NodeID: n1, Node: "h1", DesiredState: "shutdown", State: "failed", Error: "exit 1", Image: "nginx", UpdatedAt: at, CreatedAt: at.Add(-time.Minute)},
		{ID: "taskdb1ddddddddddddd", Name: "shop_db.1", ServiceID: "svc2", Service: "shop_db", Slot: 1, NodeID: n2, Node: "h2", DesiredState: "running", State: "running", Image: "pg", UpdatedAt: at, CreatedAt: at},
		{ID: "taskoth1eeeeeeeeeeee", Name: "other.1", ServiceID: "svc3", Service: "other", Slot: 1, NodeID: n1, Node: "h1", DesiredState: "running", State: "running", Image: "busybox", UpdatedAt: at, CreatedAt: at},
	}
	return f
}

// psIDs runs a task list with -q and returns the IDs it printed.
func psIDs(t *testing.T, f *fakeAgent, args ...string) []string {
	t.Helper()
	out, errOut, code := runCLI(t, f.host, "", append(args, "-q", "--no-trunc")...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	return strings.Fields(out)
}

func TestCLIStackPs(t *testing.T) {
	f := psFixture(t)
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"stack", "ps", "shop"}, []string{"taskdb1ddddddddddddd", "taskweb1aaaaaaaaaaaa", "taskweb2bbbbbbbbbbbb", "taskweb0cccccccccccc"}},
		{[]string{"stack", "ps", "shop", "--filter", "desired-state=running"}, []string{"taskdb1ddddddddddddd", "taskweb1aaaaaaaaaaaa", "taskweb2bbbbbbbbbbbb"}},
		{[]string{"stack", "ps", "shop", "-f", "node=h1"}, []string{"taskweb1aaaaaaaaaaaa", "taskweb0cccccccccccc"}},
		{[]string{"stack", "ps", "shop", "-f", "name=shop_web.2"}, []string{"taskweb2bbbbbbbbbbbb", "taskweb0cccccccccccc"}},
		{[]string{"stack", "ps", "shop", "-f", "id=taskdb"}, []string{"taskdb1ddddddddddddd"}},
	}
	for _, tt := range tests {
		if got := psIDs(t, f, tt.args...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%v: %v, want %v", tt.args, got, tt.want)
		}
	}

	out, errOut, code := runCLI(t, f.host, "", "stack", "ps", "shop", "-f", "node=h2")
	want := "ID             NAME         IMAGE   NODE   DESIRED STATE   CURRENT STATE               ERROR\n" +
		"taskdb1ddddd   shop_db.1    pg      h2     running         running About an hour ago   \n" +
		"taskweb2bbbb   shop_web.2   nginx   h2     running         running About an hour ago   \n"
	if code != 0 || out != want {
		t.Errorf("table: exit %d, stderr %q\n%s\nwant:\n%s", code, errOut, out, want)
	}

	// --format json: the rows of service ps, error and ip always there.
	out, errOut, code = runCLI(t, f.host, "", "stack", "ps", "shop", "--format", "json", "-f", "node=h1")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil || len(rows) != 2 {
		t.Fatalf("json: exit %d, %v, stderr %q: %s", code, err, errOut, out)
	}
	if rows[0]["error"] != "" || rows[0]["ip"] != "" || rows[1]["error"] != "exit 1" || rows[0]["name"] != "shop_web.1" {
		t.Errorf("json rows %v", rows)
	}

	_, errOut, code = runCLI(t, f.host, "", "stack", "ps", "nope")
	if code != 1 || errOut != "Error: nothing found in stack: nope\n" {
		t.Errorf("unknown stack: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = runCLI(t, f.host, "", "stack", "ps", "shop", "-f", "colour=red")
	if code != 2 || !strings.Contains(errOut, "want one of desired-state, node, name, id") {
		t.Errorf("bad filter: exit %d, stderr %q", code, errOut)
	}
	if _, _, code = runCLI(t, f.host, "", "stack", "ps"); code != 2 {
		t.Errorf("no stack: exit %d, want 2", code)
	}
}

func TestCLINodePs(t *testing.T) {
	f := psFixture(t)
	tests := []struct {
		args []string
		want []string
	}{
		// The default is the node the CLI talks to (node1, h1).
		{[]string{"node", "ps"}, []string{"taskoth1eeeeeeeeeeee", "taskweb1aaaaaaaaaaaa", "taskweb0cccccccccccc"}},
		{[]string{"node", "ps", "self"}, []string{"taskoth1eeeeeeeeeeee", "taskweb1aaaaaaaaaaaa", "taskweb0cccccccccccc"}},
		{[]string{"node", "ps", "h2"}, []string{"taskdb1ddddddddddddd", "taskweb2bbbbbbbbbbbb"}},
		{[]string{"node", "ps", "node2bbbbbbbbbbbbbbb", "h1", "-f", "desired-state=running"}, []string{"taskoth1eeeeeeeeeeee", "taskdb1ddddddddddddd", "taskweb1aaaaaaaaaaaa", "taskweb2bbbbbbbbbbbb"}},
		{[]string{"node", "ps", "h1", "h1"}, []string{"taskoth1eeeeeeeeeeee", "taskweb1aaaaaaaaaaaa", "taskweb0cccccccccccc"}},
		{[]string{"node", "ps", "h1", "-f", "name=other"}, []string{"taskoth1eeeeeeeeeeee"}},
	}
	for _, tt := range tests {
		if got := psIDs(t, f, tt.args...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%v: %v, want %v", tt.args, got, tt.want)
		}
	}
	out, _, code := runCLI(t, f.host, "", "node", "ps", "h2", "--format", "{{.Name}} {{.IP}}")
	if code != 0 || out != "shop_db.1 \nshop_web.2 10.1.0.3\n" {
		t.Errorf("template: exit %d, %q", code, out)
	}
	_, errOut, code := runCLI(t, f.host, "", "node", "ps", "ghost")
	if code != 1 || !strings.Contains(errOut, "node ps ghost: node ghost not found") {
		t.Errorf("unknown node: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = runCLI(t, f.host, "", "node", "ps", "-f", "desired-state=gone")
	if code != 2 || !strings.Contains(errOut, "invalid desired-state filter") {
		t.Errorf("bad filter: exit %d, stderr %q", code, errOut)
	}
}

func TestNodeFilters(t *testing.T) {
	nodes := []api.Node{
		{ID: "aaa111", Hostname: "mgr-1", Role: api.RoleManager, Labels: map[string]string{"zone": "a"}},
		{ID: "aab222", Hostname: "mgr-2", Role: "", Labels: map[string]string{"zone": "b", "ssd": ""}},
		{ID: "bbb333", Hostname: "wrk-1", Role: api.RoleWorker},
	}
	tests := []struct {
		filters []string
		want    []string
		wantErr string
	}{
		{nil, []string{"aaa111", "aab222", "bbb333"}, ""},
		{[]string{"id=aa"}, []string{"aaa111", "aab222"}, ""},
		{[]string{"id=aab222"}, []string{"aab222"}, ""},
		{[]string{"name=mgr"}, []string{"aaa111", "aab222"}, ""},
		{[]string{"name=wrk-1", "name=mgr-1"}, []string{"aaa111", "bbb333"}, ""},
		// A stored empty role is a manager, as the API shows it.
		{[]string{"role=manager"}, []string{"aaa111", "aab222"}, ""},
		{[]string{"role=worker"}, []string{"bbb333"}, ""},
		{[]string{"label=zone"}, []string{"aaa111", "aab222"}, ""},
		{[]string{"label=zone=b"}, []string{"aab222"}, ""},
		{[]string{"node.label=ssd"}, []string{"aab222"}, ""},
		{[]string{"node.label=ssd="}, []string{"aab222"}, ""},
		{[]string{"label=zone", "role=manager", "name=mgr-1"}, []string{"aaa111"}, ""},
		{[]string{"label=zone=c"}, []string{}, ""},
		{[]string{"role=boss"}, nil, `invalid role filter "boss": want manager or worker`},
		{[]string{"membership=accepted"}, nil, `invalid --filter key "membership": want one of id, name, role, label, node.label`},
		{[]string{"name"}, nil, `invalid --filter "name": want KEY=VALUE`},
	}
	for _, tt := range tests {
		f, err := nodeFilters(tt.filters)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%q: error %v, want %q", tt.filters, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.filters, err)
		}
		got := []string{}
		for _, n := range nodes {
			if nodeMatches(n, f) {
				got = append(got, n.ID)
			}
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: %v, want %v", tt.filters, got, tt.want)
		}
	}
}

func TestCLINodeLsFilter(t *testing.T) {
	f := newFakeAgent(t)
	f.nodes[1].Role = api.RoleWorker
	f.nodes[1].Labels = map[string]string{"zone": "a"}
	if got := psIDs(t, f, "node", "ls", "--filter", "role=manager"); !reflect.DeepEqual(got, []string{"node1aaaaaaaaaaaaaaa"}) {
		t.Errorf("role=manager: %v", got)
	}
	if got := psIDs(t, f, "node", "ls", "-f", "label=zone=a", "-f", "name=h"); !reflect.DeepEqual(got, []string{"node2bbbbbbbbbbbbbbb"}) {
		t.Errorf("label and name: %v", got)
	}
	_, errOut, code := runCLI(t, f.host, "", "node", "ls", "--filter", "colour=red")
	if code != 2 || !strings.Contains(errOut, `invalid --filter key "colour": want one of id, name, role, label, node.label`) {
		t.Errorf("bad key: exit %d, stderr %q", code, errOut)
	}
}

func TestCLIContainerByTaskName(t *testing.T) {
	at := time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC)
	fixture := func(t *testing.T) *fakeAgent {
		f := newFakeAgent(t)
		f.containers = []api.Container{
			// An older, exited container of web.1 and the running one.
			{ID: "ctrold11111111111111", Name: "web.1.oldtask", TaskID: "oldtask", State: api.ContainerExited, CreatedAt: at},
			{ID: "ctrweb11111111111111", Name: "web.1.newtask", TaskID: "newtask", State: api.ContainerRunning, CreatedAt: at.Add(-time.Hour)},
			{ID: "ctrweb10aaaaaaaaaaaa", Name: "web.10.t10", TaskID: "t10", State: api.ContainerRunning, CreatedAt: at},
			{ID: "ctrshop111111111111", Name: "shop_web.1.abc", TaskID: "abc", State: api.ContainerExited, CreatedAt: at},
			// Not a task's: its name never stands for a task.
			{ID: "ctrplain111111111111", Name: "web.2.x", State: api.ContainerRunning, CreatedAt: at},
		}
		// web.5 runs on the other node, web.6 on this one (no container
		// yet), shop_web.1's task no longer runs.
		f.tasks = []api.Task{
			{ID: "t5", Name: "web.5", NodeID: "node2bbbbbbbbbbbbbbb", Node: "h2", DesiredState: api.TaskRunning, State: api.TaskRunning},
			{ID: "t6", Name: "web.6", NodeID: "node1aaaaaaaaaaaaaaa", Node: "h1", DesiredState: api.TaskRunning, State: api.TaskStarting},
			{ID: "t7", Name: "web.7", NodeID: "node2bbbbbbbbbbbbbbb", Node: "h2", DesiredState: api.TaskShutdown, State: api.TaskComplete},
		}
		return f
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		// wantStopped or wantRemoved is the container acted on.
		wantStopped, wantRemoved, wantErr string
	}{
		{"stop by task name takes the running one", []string{"stop", "web.1"}, 0, "ctrweb11111111111111", "", ""},
		{"stop of a stack task", []string{"stop", "shop_web.1"}, 0, "ctrshop111111111111", "", ""},
		{"stop by container name as before", []string{"stop", "web.1.oldtask"}, 0, "ctrold11111111111111", "", ""},
		{"stop by ID prefix as before", []string{"stop", "ctrweb10"}, 0, "ctrweb10aaaaaaaaaaaa", "", ""},
		{"stop of no such task", []string{"stop", "web.3"}, 1, "", "", "Error: stop web.3: no such container: web.3\n"},
		{"stop of a non-task container's prefix", []string{"stop", "web.2"}, 1, "", "", "Error: stop web.2: no such container: web.2\n"},
		{"stop of a task of another node says where it runs", []string{"stop", "web.5"}, 1, "", "", "Error: stop web.5: no such container: web.5 (task web.5 runs on node h2: run the command there)\n"},
		{"stop of a task of this node without a container yet", []string{"stop", "web.6"}, 1, "", "", "Error: stop web.6: no such container: web.6\n"},
		{"stop of a task that ran elsewhere and ended", []string{"stop", "web.7"}, 1, "", "", "Error: stop web.7: no such container: web.7\n"},
		{"exec in a task of another node says where it runs", []string{"exec", "web.5", "cat", "/x"}, 1, "", "",
			"Error: exec in web.5: no such container: web.5 (task web.5 runs on node h2: run the command there)\n"},
		{"exec in no such task", []string{"exec", "web.3", "cat", "/x"}, 1, "", "", "Error: exec in web.3: no such container: web.3\n"},
		{"rm by task name", []string{"rm", "-f", "web.1"}, 0, "", "ctrweb11111111111111", ""},
		{"rm of no such task", []string{"rm", "web.9"}, 1, "", "", "Error: remove web.9: no such container: web.9\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fixture(t)
			out, errOut, code := runCLI(t, f.host, "", tt.args...)
			if code != tt.wantCode || errOut != tt.wantErr {
				t.Fatalf("exit %d, stderr %q; want %d, %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if code == 0 && out != tt.args[len(tt.args)-1]+"\n" {
				t.Errorf("stdout %q, want the name given", out)
			}
			var stopped string
			if len(f.stopped) > 0 {
				stopped = f.stopped[0]
			}
			if stopped != tt.wantStopped || f.removed != tt.wantRemoved {
				t.Errorf("stopped %q, removed %q; want %q, %q", stopped, f.removed, tt.wantStopped, tt.wantRemoved)
			}
		})
	}

	f := fixture(t)
	out, errOut, code := runCLI(t, f.host, "", "inspect", "web.1")
	var one api.Container
	if err := json.Unmarshal([]byte(out), &one); code != 0 || err != nil || one.ID != "ctrweb11111111111111" {
		t.Fatalf("inspect web.1: exit %d, %v, stderr %q: %s", code, err, errOut, out)
	}
	out, _, code = runCLI(t, f.host, "", "inspect", "shop_web.1", "ctrplain", "--format", "{{.Name}}")
	if code != 0 || out != "shop_web.1.abc\nweb.2.x\n" {
		t.Fatalf("inspect two: exit %d, %q", code, out)
	}
	_, errOut, code = runCLI(t, f.host, "", "inspect", "web.5")
	if code != 1 || errOut != "Error: inspect container web.5: no such container: web.5 (task web.5 runs on node h2: run the command there)\n" {
		t.Fatalf("inspect missing: exit %d, %q", code, errOut)
	}

	// The agent resolves the task name: inspect, stop and rm are one
	// request each (before, inspect asked for the container twice and a
	// task name cost a list as well).
	for _, args := range [][]string{{"inspect", "web.1"}, {"stop", "web.1"}, {"rm", "-f", "web.1"}} {
		f := fixture(t)
		if _, errOut, code := runCLI(t, f.host, "", args...); code != 0 {
			t.Fatalf("%s: exit %d, %q", args, code, errOut)
		}
		f.mu.Lock()
		reqs := f.requests
		f.mu.Unlock()
		if len(reqs) != 1 || reqs["GET /v1/containers"] != 0 {
			t.Errorf("%s: requests %v, want one", args, reqs)
		}
	}

	// An agent that predates that finds no task name: the CLI looks the
	// task up in its container list and asks again by ID.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stop", "web.1"}, "ctrweb11111111111111"},
		{[]string{"rm", "-f", "shop_web.1"}, "ctrshop111111111111"},
		{[]string{"inspect", "--format", "{{.ID}}", "web.1"}, "ctrweb11111111111111"},
	} {
		f := fixture(t)
		f.oldAgent = true
		out, errOut, code := runCLI(t, f.host, "", tc.args...)
		f.mu.Lock()
		got := f.removed
		if len(f.stopped) > 0 {
			got = f.stopped[0]
		}
		f.mu.Unlock()
		if tc.args[0] == "inspect" {
			got = strings.TrimSpace(out)
		}
		if code != 0 || got != tc.want {
			t.Errorf("old agent, %s: exit %d, acted on %q (want %q), stderr %q", tc.args, code, got, tc.want, errOut)
		}
	}
	f = fixture(t)
	f.oldAgent = true
	if _, errOut, code := runCLI(t, f.host, "", "stop", "web.5"); code != 1 || errOut != "Error: stop web.5: no such container: web.5\n" {
		t.Errorf("old agent, stop web.5: exit %d, %q", code, errOut)
	}
}

// TestCLINodeLsNoLeader: a node that reaches no leader still lists its
// replica's nodes, and says that the statuses are stale and writes fail;
// after a quorum loss, `node ls` showed the dead nodes ready, silently.
func TestCLINodeLsNoLeader(t *testing.T) {
	f := newFakeAgent(t)
	out, errOut, code := runCLI(t, f.host, "", "node", "ls")
	if code != 0 || strings.Contains(errOut, "Warning") {
		t.Fatalf("with a leader: exit %d, stderr %q", code, errOut)
	}
	f.status.Leader = ""
	out, errOut, code = runCLI(t, f.host, "", "node", "ls")
	if code != 0 || !strings.Contains(errOut, "Warning: no leader is reachable from this node") || !strings.Contains(out, "h1") {
		t.Fatalf("no leader: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
