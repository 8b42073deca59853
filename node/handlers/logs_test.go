package handlers

import (
	"context"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/runtime"
)

// logsFake is a LogSource over a store whose nodes answer one line per
// container: "line of CONTAINER".
type logsFake struct {
	Agent
	store *consensus.Store
}

func (f logsFake) Store() (*consensus.Store, error) { return f.store, nil }

func (f logsFake) NodeLogs(_ context.Context, _ *api.Node, ids []string, _ runtime.LogOptions, send func(int, api.LogLine) bool) {
	for i, id := range ids {
		send(i, api.LogLine{Line: "line of " + id})
	}
}

// TestServiceLogsOfATask: `service logs TASK` (docker's SERVICE|TASK) by
// task ID, ID prefix or NAME.SLOT streams that task's lines only; a
// service name still streams all of them, and a reference to neither is a
// 404. Before, a task was "no such service".
func TestServiceLogsOfATask(t *testing.T) {
	store := consensus.NewStore()
	machine := fsm.New(store)
	apply := func(i uint64, c command.Command) {
		t.Helper()
		if res := machine.ApplyCommand(i, c); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	apply(1, command.UpsertNode{Node: api.Node{ID: "n1", Hostname: "h1", Addr: "10.0.0.1", Status: api.NodeReady}})
	apply(2, command.CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 2, Image: "bb:1"}}})
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tk := func(id string, slot int, desired, ctr string, at time.Time) api.Task {
		return api.Task{ID: id, Name: "web." + string(rune('0'+slot)), ServiceID: "s1", Service: "web", Slot: slot, NodeID: "n1",
			DesiredState: desired, State: api.TaskRunning, ContainerID: ctr, CreatedAt: at}
	}
	apply(3, command.UpsertTasks{Tasks: []api.Task{
		tk("aaaa1111", 1, api.TaskShutdown, "c-old1", t0),
		tk("bbbb2222", 1, api.TaskRunning, "c-new1", t0.Add(time.Minute)),
		tk("cccc3333", 2, api.TaskRunning, "c-2", t0),
	}})
	h := ServiceLogs(logsFake{store: store})
	logs := func(ref string) (int, []string) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/v1/services/"+ref+"/logs", nil)
		r.SetPathValue("id", ref)
		_, err := h(w, r)
		if err != nil {
			return 404, nil
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(w.Body.String()), "\n") {
			if i := strings.Index(l, "line of "); i >= 0 {
				got = append(got, strings.SplitN(l[i+8:], `"`, 2)[0])
			}
		}
		sort.Strings(got)
		return 200, got
	}
	for _, tc := range []struct {
		ref  string
		want string
	}{
		{"web", "c-2 c-new1 c-old1"},
		{"s1", "c-2 c-new1 c-old1"},
		{"cccc3333", "c-2"},
		{"aaaa", "c-old1"},
		{"web.1", "c-new1"},
		{"web.2", "c-2"},
		{"web.9", "404"},
		{"zzz", "404"},
	} {
		code, got := logs(tc.ref)
		res := strings.Join(got, " ")
		if code != 200 {
			res = "404"
		}
		if res != tc.want {
			t.Errorf("service logs %s: %q, want %q", tc.ref, res, tc.want)
		}
	}
}
