package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/progress"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
)

// TestWaitServiceWakesOnEvent: a wait for convergence polls again as soon
// as the agent's event stream reports a change of the service's tasks, not
// on its next tick (here an hour away): `service create` without -d used to
// return up to a poll interval after the last task ran.
func TestWaitServiceWakesOnEvent(t *testing.T) {
	var (
		mu      sync.Mutex
		running bool
		query   map[string][]string
	)
	svc := api.Service{ID: "svc1", Name: "web", Version: 1, Spec: api.ServiceSpec{Name: "web", Replicas: 2, Image: "busybox"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/services/{id}", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(svc)
	})
	mux.HandleFunc("GET /v1/services/{id}/tasks", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		state := api.TaskStarting
		if running {
			state = api.TaskRunning
		}
		mu.Unlock()
		var tasks []api.Task
		for slot := 1; slot <= 2; slot++ {
			tasks = append(tasks, api.Task{ID: fmt.Sprintf("t%d", slot), Name: fmt.Sprintf("web.%d", slot),
				ServiceID: "svc1", Service: "web", Slot: slot, DesiredState: api.TaskRunning, State: state,
				Spec: svc.Spec, SpecVersion: 1, Image: "busybox"})
		}
		_ = json.NewEncoder(w).Encode(tasks)
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		// The tasks come up once the CLI listens, and the agent says so.
		mu.Lock()
		query, running = r.URL.Query(), true
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(api.Event{Time: time.Now(), Type: api.EventTask, Action: api.TaskRunning,
			ID: "t1", Name: "web.1", Attributes: map[string]string{"service": "web"}})
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	sock := filepath.Join(t.TempDir(), "shoal.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	cl, err := client.New("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	s := &commands{&shell.Shell{Stdout: &bytes.Buffer{}, Stderr: &errOut, Poll: time.Hour, Now: time.Now}}
	if err := s.waitService(context.Background(), cl, "web", progress.OpCreate, 10*time.Second, false); err != nil {
		t.Fatalf("wait: %v\n%s", err, errOut.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(query["type"], []string{api.EventService, api.EventTask}) || !slices.Contains(query["name"], "web") ||
		len(query["since"]) != 1 {
		t.Fatalf("events query = %v, want the service's and its tasks' events since the wait began", query)
	}
}
