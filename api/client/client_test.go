package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// recorded is what the fake agent saw of one request.
type recorded struct {
	Method, Path, Query, Body, ID string
}

// fakeAgent serves handler on a unix socket in a temp dir and returns a
// client for it.
func fakeAgent(t *testing.T, handler http.Handler) *Client {
	t.Helper()
	return fakeAgentWatched(t, handler, nil)
}

// fakeAgentWatched is fakeAgent with connState (when not nil) told of every
// change of state of the server's connections.
func fakeAgentWatched(t *testing.T, handler http.Handler, connState func(net.Conn, http.ConnState)) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "shoal.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Listener = ln
	srv.Config.ConnState = connState
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := New("unix://" + sock)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// echoAgent records every request and answers with the JSON in answers
// keyed by "METHOD /path" (without /v1), or {} when absent.
func echoAgent(t *testing.T, answers map[string]any) (*Client, func() recorded) {
	var mu sync.Mutex
	var last recorded
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Method + " " + strings.TrimPrefix(r.URL.Path, "/v1")
		mu.Lock()
		last = recorded{Method: r.Method, Path: strings.TrimPrefix(r.URL.EscapedPath(), "/v1"), Query: r.URL.RawQuery, Body: string(body)}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if a, ok := answers[key]; ok {
			_ = json.NewEncoder(w).Encode(a)
			return
		}
		_, _ = io.WriteString(w, "{}")
	})
	c := fakeAgent(t, mux)
	return c, func() recorded { mu.Lock(); defer mu.Unlock(); return last }
}

func TestNewHost(t *testing.T) {
	tests := []struct {
		host, env, want string
		wantErr         bool
	}{
		{host: "unix:///tmp/a.sock", want: "unix:///tmp/a.sock"},
		{host: "/tmp/b.sock", want: "unix:///tmp/b.sock"},
		{host: "", env: "unix:///tmp/env.sock", want: "unix:///tmp/env.sock"},
		{host: "", env: "", want: DefaultHost},
		{host: "tcp://1.2.3.4:80", wantErr: true},
		{host: "unix://relative.sock", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.host+"|"+tt.env, func(t *testing.T) {
			t.Setenv(HostEnv, tt.env)
			c, err := New(tt.host)
			if tt.wantErr {
				if !errors.Is(err, ErrBadHost) {
					t.Fatalf("err = %v, want ErrBadHost", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Host() != tt.want {
				t.Fatalf("Host() = %q, want %q", c.Host(), tt.want)
			}
		})
	}
}

func TestClientRoutes(t *testing.T) {
	answers := map[string]any{
		"GET /status":              api.Status{ClusterID: "c1", NodeID: "n1"},
		"GET /nodes":               []api.Node{{ID: "n1", Hostname: "h1"}},
		"GET /services/web":        api.Service{ID: "s1", Name: "web", Version: 7},
		"GET /services/web/tasks":  []api.Task{{ID: "t1", Name: "web.1"}},
		"POST /containers/c1/wait": api.Container{ID: "c1", ExitCode: 3},
		"GET /images":              []api.Image{},
		"POST /images/load":        []api.Image{},
		"GET /containers":          []api.Container{},
		"GET /services":            []api.Service{},
		"GET /tasks":               []api.Task{},
	}
	c, last := echoAgent(t, answers)
	ctx := context.Background()
	spec := api.ServiceSpec{Name: "web", Image: "busybox", Replicas: 2}
	tests := []struct {
		name string
		call func() error
		want recorded
	}{
		{"status", func() error {
			s, err := c.Status(ctx)
			if err == nil && s.ClusterID != "c1" {
				err = fmt.Errorf("cluster id %q", s.ClusterID)
			}
			return err
		}, recorded{Method: "GET", Path: "/status"}},
		{"init", func() error { _, err := c.Init(ctx); return err }, recorded{Method: "POST", Path: "/init"}},
		{"join", func() error {
			_, err := c.Join(ctx, api.JoinRequest{Token: "T", Addr: "10.0.0.1:2377"})
			return err
		}, recorded{Method: "POST", Path: "/join", Body: `{"token":"T","addr":"10.0.0.1:2377"}`}},
		{"token", func() error { _, err := c.Token(ctx); return err }, recorded{Method: "GET", Path: "/token"}},
		{"rotate", func() error { _, err := c.RotateToken(ctx); return err }, recorded{Method: "POST", Path: "/token/rotate"}},
		{"leave", func() error { return c.Leave(ctx, false) }, recorded{Method: "POST", Path: "/leave"}},
		{"leave force", func() error { return c.Leave(ctx, true) }, recorded{Method: "POST", Path: "/leave", Query: "force=1"}},
		{"nodes", func() error {
			ns, err := c.Nodes(ctx)
			if err == nil && (len(ns) != 1 || ns[0].Hostname != "h1") {
				err = fmt.Errorf("nodes %+v", ns)
			}
			return err
		}, recorded{Method: "GET", Path: "/nodes"}},
		{"node", func() error { _, err := c.Node(ctx, "h1"); return err }, recorded{Method: "GET", Path: "/nodes/h1"}},
		{"update node", func() error {
			_, err := c.UpdateNode(ctx, "h1", api.NodeUpdate{Availability: "drain"})
			return err
		}, recorded{Method: "POST", Path: "/nodes/h1/update", Body: `{"availability":"drain"}`}},
		{"rm node", func() error { return c.RemoveNode(ctx, "h1", true) }, recorded{Method: "DELETE", Path: "/nodes/h1", Query: "force=1"}},
		{"rm node no force", func() error { return c.RemoveNode(ctx, "h1", false) }, recorded{Method: "DELETE", Path: "/nodes/h1"}},
		{"images", func() error { _, err := c.Images(ctx); return err }, recorded{Method: "GET", Path: "/images"}},
		{"image with slash", func() error { _, err := c.Image(ctx, "docker.io/library/busybox:1"); return err },
			recorded{Method: "GET", Path: "/images/docker.io%2Flibrary%2Fbusybox:1"}},
		{"import", func() error { _, err := c.ImportImage(ctx, strings.NewReader("TAR"), "app:v1"); return err },
			recorded{Method: "POST", Path: "/images/import", Query: "ref=app%3Av1", Body: "TAR"}},
		{"load", func() error { _, err := c.LoadImages(ctx, strings.NewReader("ARCHIVE")); return err },
			recorded{Method: "POST", Path: "/images/load", Body: "ARCHIVE"}},
		{"pull", func() error { _, err := c.PullImage(ctx, api.PullRequest{Ref: "r/x", Insecure: true}); return err },
			recorded{Method: "POST", Path: "/images/pull", Body: `{"ref":"r/x","insecure":true}`}},
		{"rm image", func() error { return c.RemoveImage(ctx, "app:v1") }, recorded{Method: "DELETE", Path: "/images/app:v1"}},
		{"containers", func() error { _, err := c.Containers(ctx); return err }, recorded{Method: "GET", Path: "/containers"}},
		{"container", func() error { _, err := c.Container(ctx, "c1"); return err }, recorded{Method: "GET", Path: "/containers/c1"}},
		{"run", func() error {
			_, err := c.RunContainer(ctx, api.RunRequest{Image: "busybox", Remove: true})
			return err
		},
			recorded{Method: "POST", Path: "/containers", Body: `{"image":"busybox","limits":{},"remove":true}`}},
		{"wait", func() error {
			ct, err := c.WaitContainer(ctx, "c1")
			if err == nil && ct.ExitCode != 3 {
				err = fmt.Errorf("exit code %d", ct.ExitCode)
			}
			return err
		}, recorded{Method: "POST", Path: "/containers/c1/wait"}},
		{"stop", func() error { _, err := c.StopContainer(ctx, "c1", 5*time.Second); return err },
			recorded{Method: "POST", Path: "/containers/c1/stop", Query: "timeout=5s"}},
		{"stop default", func() error { _, err := c.StopContainer(ctx, "c1", -1); return err },
			recorded{Method: "POST", Path: "/containers/c1/stop"}},
		{"rm container", func() error { return c.RemoveContainer(ctx, "c1", true) }, recorded{Method: "DELETE", Path: "/containers/c1", Query: "force=1"}},
		{"services", func() error { _, err := c.Services(ctx); return err }, recorded{Method: "GET", Path: "/services"}},
		{"service", func() error {
			s, err := c.Service(ctx, "web")
			if err == nil && s.Version != 7 {
				err = fmt.Errorf("version %d", s.Version)
			}
			return err
		}, recorded{Method: "GET", Path: "/services/web"}},
		{"create", func() error { _, err := c.CreateService(ctx, spec); return err }, recorded{Method: "POST", Path: "/services", Body: mustJSON(spec)}},
		{"update", func() error { _, err := c.UpdateService(ctx, "web", 7, spec); return err },
			recorded{Method: "POST", Path: "/services/web/update", Query: "version=7", Body: mustJSON(spec)}},
		{"scale", func() error { _, err := c.ScaleService(ctx, "web", 5); return err },
			recorded{Method: "POST", Path: "/services/web/scale", Body: `{"replicas":5}`}},
		{"rollback", func() error { _, err := c.RollbackService(ctx, "web"); return err }, recorded{Method: "POST", Path: "/services/web/rollback"}},
		{"rm service", func() error { return c.RemoveService(ctx, "web") }, recorded{Method: "DELETE", Path: "/services/web"}},
		{"service tasks", func() error {
			ts, err := c.ServiceTasks(ctx, "web", TaskFilter{DesiredState: "running"})
			if err == nil && (len(ts) != 1 || ts[0].Name != "web.1") {
				err = fmt.Errorf("tasks %+v", ts)
			}
			return err
		}, recorded{Method: "GET", Path: "/services/web/tasks", Query: "desired_state=running"}},
		{"service tasks without a version's specs", func() error {
			_, err := c.ServiceTasks(ctx, "web", TaskFilter{WithoutSpecVersion: 7})
			return err
		}, recorded{Method: "GET", Path: "/services/web/tasks", Query: "without_spec_version=7"}},
		{"tasks", func() error { _, err := c.Tasks(ctx, TaskFilter{ServiceID: "s1", NodeID: "n1"}); return err },
			recorded{Method: "GET", Path: "/tasks", Query: "node=n1&service=s1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err != nil {
				t.Fatalf("call: %v", err)
			}
			got := last()
			got.Body = strings.TrimSpace(got.Body)
			if got != tt.want {
				t.Fatalf("request = %+v\nwant      %+v", got, tt.want)
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestClientPathValue(t *testing.T) {
	// The agent's mux must see the whole reference as one {ref} value.
	var got string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/images/{ref}", func(w http.ResponseWriter, r *http.Request) {
		got = r.PathValue("ref")
		_, _ = io.WriteString(w, `{"id":"sha256:x"}`)
	})
	c := fakeAgent(t, mux)
	if _, err := c.Image(context.Background(), "reg:5000/a/b:tag"); err != nil {
		t.Fatal(err)
	}
	if got != "reg:5000/a/b:tag" {
		t.Fatalf("PathValue = %q", got)
	}
}

func TestClientAPIError(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/services/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: "service nope not found"})
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	c := fakeAgent(t, mux)
	_, err := c.Service(context.Background(), "nope")
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Message != "service nope not found" {
		t.Fatalf("err = %#v", err)
	}
	if !IsNotFound(err) || err.Error() != "service nope not found" {
		t.Fatalf("IsNotFound/Error wrong: %v", err)
	}
	_, err = c.Nodes(context.Background())
	if !errors.As(err, &ae) || ae.Status != 500 || ae.Message != "boom" {
		t.Fatalf("err = %#v", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "missing.sock")
	c, err := New("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Status(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	want := "cannot reach the shoal agent at unix://" + sock + ": is `shoal agent` running?"
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %q, want prefix %q", err, want)
	}
}

func TestClientLogs(t *testing.T) {
	lines := []api.LogLine{
		{Stream: "stdout", Line: "one"},
		{Stream: "stderr", Line: "two"},
		{Stream: "stdout", Line: "three", Task: "web.1"},
	}
	var query string
	mux := http.NewServeMux()
	handler := func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, l := range lines {
			_ = enc.Encode(l)
			w.(http.Flusher).Flush()
		}
	}
	mux.HandleFunc("GET /v1/containers/{id}/logs", handler)
	mux.HandleFunc("GET /v1/services/{id}/logs", handler)
	c := fakeAgent(t, mux)
	ctx := context.Background()

	var got []string
	since := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	err := c.ContainerLogs(ctx, "c1", LogOptions{Follow: true, Tail: 10, Since: since}, func(l api.LogLine) error {
		got = append(got, l.Stream+":"+l.Line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "stdout:one,stderr:two,stdout:three" {
		t.Fatalf("lines = %v", got)
	}
	if query != "follow=1&since=2024-01-02T03%3A04%3A05Z&tail=10" {
		t.Fatalf("query = %q", query)
	}

	stop := errors.New("stop")
	n := 0
	err = c.ServiceLogs(ctx, "web", LogOptions{}, func(api.LogLine) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err = %v after %d lines, want stop after 1", err, n)
	}
}

func TestClientLogsCancel(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/containers/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(api.LogLine{Line: "hi"})
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	c := fakeAgent(t, mux)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := c.ContainerLogs(ctx, "c1", LogOptions{Follow: true}, func(api.LogLine) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestClientEmptyObjectAnswer: a 2xx answer with no body, or null, to a
// route that answers with an object is an error, not a nil object the
// caller would dereference.
func TestClientEmptyObjectAnswer(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/services/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/nodes/{id}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "null")
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "null")
	})
	c := fakeAgent(t, mux)
	ctx := context.Background()
	if s, err := c.Service(ctx, "web"); !errors.Is(err, ErrEmptyAnswer) || s != nil {
		t.Fatalf("empty answer: %v, %v", s, err)
	}
	if n, err := c.Node(ctx, "n1"); !errors.Is(err, ErrEmptyAnswer) || n != nil {
		t.Fatalf("null answer: %v, %v", n, err)
	}
	// A list may be empty.
	if ns, err := c.Nodes(ctx); err != nil || len(ns) != 0 {
		t.Fatalf("null list: %v, %v", ns, err)
	}
}

// TestClientCheckDeployOlderAgent: an agent without POST
// /v1/services/check answers as net/http does for a route it lacks —
// 405 (its mux has GET and DELETE /v1/services/{id}) or a bare 404 —
// and CheckDeploy says so (ErrNoDeployCheck), while the route's own
// answers (a refusal, a service not found) stay the agent's.
func TestClientCheckDeployOlderAgent(t *testing.T) {
	old := http.NewServeMux()
	old.HandleFunc("GET /v1/services/{id}", func(w http.ResponseWriter, r *http.Request) {})
	old.HandleFunc("DELETE /v1/services/{id}", func(w http.ResponseWriter, r *http.Request) {})
	if err := fakeAgent(t, old).CheckDeploy(context.Background(), api.DeployCheck{}); !errors.Is(err, ErrNoDeployCheck) {
		t.Fatalf("405: %v", err)
	}
	if err := fakeAgent(t, http.NewServeMux()).CheckDeploy(context.Background(), api.DeployCheck{}); !errors.Is(err, ErrNoDeployCheck) {
		t.Fatalf("bare 404: %v", err)
	}
	for _, status := range []int{http.StatusBadRequest, http.StatusNotFound} {
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/services/check", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: "create service app_b: refused"})
		})
		err := fakeAgent(t, mux).CheckDeploy(context.Background(), api.DeployCheck{})
		if errors.Is(err, ErrNoDeployCheck) || err == nil || err.Error() != "create service app_b: refused" {
			t.Fatalf("%d: %v", status, err)
		}
	}
	// A deploy too large to check at once is no refusal either.
	large := http.NewServeMux()
	large.HandleFunc("POST /v1/services/check", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: "request body larger than 32 MiB"})
	})
	if err := fakeAgent(t, large).CheckDeploy(context.Background(), api.DeployCheck{}); !errors.Is(err, ErrDeployTooLargeToCheck) {
		t.Fatalf("413: %v", err)
	}
	ok := http.NewServeMux()
	ok.HandleFunc("POST /v1/services/check", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("{}\n")) })
	if err := fakeAgent(t, ok).CheckDeploy(context.Background(), api.DeployCheck{}); err != nil {
		t.Fatal(err)
	}
}

// TestCallsReuseConnection: answers as the agent writes them (a JSON value
// and a newline, small with a Content-Length or large and chunked) leave
// the connection reusable, so a run of calls (a wait's polls) dials once.
func TestCallsReuseConnection(t *testing.T) {
	big := make([]api.Task, 300)
	for i := range big {
		big[i] = api.Task{ID: fmt.Sprintf("task%04d", i), State: api.TaskRunning}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/services/web", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(api.Service{ID: "web", Name: "web"})
	})
	mux.HandleFunc("/v1/services/web/tasks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(big)
	})
	var mu sync.Mutex
	conns := 0
	c := fakeAgentWatched(t, mux, func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := c.Service(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		tasks, err := c.ServiceTasks(ctx, "web", TaskFilter{})
		if err != nil || len(tasks) != len(big) {
			t.Fatalf("tasks: %d, %v", len(tasks), err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Errorf("10 calls made %d connections, want 1", conns)
	}
}
