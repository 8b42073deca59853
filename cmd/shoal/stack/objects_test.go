package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/client"
	"github.com/shoal-org/shoal/cmd/shoal/compose"
	"github.com/shoal-org/shoal/cmd/shoal/shell"
)

// TestReadStackObjectsBoundedRead: a compose file whose secret file: is
// a FIFO no one writes to (open blocks for good), or a file past the size
// limit, is refused at once with nothing created, instead of hanging the
// deploy or being read whole.
func TestReadStackObjectsBoundedRead(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), api.MaxSecretSize+4096), 0o600); err != nil {
		t.Fatal(err)
	}
	// Each refusal names the file (a directory's and a FIFO's did not).
	for _, tc := range []struct{ file, want string }{
		{fifo, "secret k: read " + fifo + ": not a regular file"},
		{dir, "secret k: read " + dir + ": not a regular file"},
		{big, "secret k: " + big + " is larger than 500 KiB"},
		{big, "nothing was created"},
	} {
		done := make(chan error, 1)
		go func() {
			objs := []compose.StackObject{{Secret: true, Key: "k", Name: "s_k", File: tc.file}}
			done <- readStackObjects(objs)
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: err = %v, want %q", tc.file, err, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still reading the secret file after 10s", tc.file)
		}
	}
}

// objectsAgent serves GET and POST of configs and secrets from maps on a unix socket,
// the part of the agent's API ensureStackObjects uses, and returns a
// client for it.
func objectsAgent(t *testing.T, configs, secrets map[string][]byte) *client.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+api.APIVersion+"/configs/{name}", func(w http.ResponseWriter, r *http.Request) {
		d, ok := configs[r.PathValue("name")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: "no such config"})
			return
		}
		_ = json.NewEncoder(w).Encode(api.Config{ID: "id-" + r.PathValue("name"), Name: r.PathValue("name"), Data: d})
	})
	mux.HandleFunc("POST /"+api.APIVersion+"/configs", func(w http.ResponseWriter, r *http.Request) {
		var req api.SecretCreateRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		configs[req.Name] = req.Data
		_ = json.NewEncoder(w).Encode(api.Config{ID: "id-" + req.Name, Name: req.Name})
	})
	// Secrets: the data stays in the agent; keep_same compares it there.
	// A secret named "old" answers as an agent of an older release does.
	mux.HandleFunc("GET /"+api.APIVersion+"/secrets/{name}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := secrets[r.PathValue("name")]; !ok {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: "no such secret"})
			return
		}
		_ = json.NewEncoder(w).Encode(api.Secret{ID: "id-" + r.PathValue("name"), Name: r.PathValue("name")})
	})
	mux.HandleFunc("POST /"+api.APIVersion+"/secrets", func(w http.ResponseWriter, r *http.Request) {
		var req api.SecretCreateRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		if d, ok := secrets[req.Name]; ok {
			msg := "a secret named " + req.Name + " already exists"
			switch {
			case req.Name != "old" && req.KeepSame && bytes.Equal(d, req.Data):
				_ = json.NewEncoder(w).Encode(api.Secret{ID: "id-" + req.Name, Name: req.Name})
				return
			case req.Name != "old" && req.KeepSame:
				msg = "secret " + req.Name + " exists with other data, and secrets are immutable"
			}
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Error: msg})
			return
		}
		secrets[req.Name] = req.Data
		_ = json.NewEncoder(w).Encode(api.Secret{ID: "id-" + req.Name, Name: req.Name})
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	cl, err := client.New("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestEnsureStackObjectsChangedConfig: a redeploy whose file changes the
// content of a config or secret the stack already has, under the same name, is
// refused naming the config and what to do, before anything is created
// (the stored one used to be kept silently, so the services ran the
// old content); the same content, or a new name, deploys.
func TestEnsureStackObjectsChangedConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "app.conf")
	for _, tc := range []struct {
		name    string
		stored  map[string][]byte
		objs    []compose.StackObject
		want    string // error substring, "" for success
		created []string
	}{
		{"same content", map[string][]byte{"s_app": []byte("color=blue\n")},
			[]compose.StackObject{{Key: "app", Name: "s_app", File: file}}, "", nil},
		{"changed content", map[string][]byte{"s_app": []byte("color=green\n")},
			[]compose.StackObject{{Key: "new", Name: "s_new", Data: []byte("x")}, {Key: "app", Name: "s_app", File: file}},
			"config s_app (configs.app) exists with other content than the content of " + file + ", and configs are immutable", nil},
		{"new name", map[string][]byte{"s_app": []byte("color=green\n")},
			[]compose.StackObject{{Key: "app", Name: "s_app_v2", File: file}}, "", []string{"s_app_v2"}},
		{"external is not compared", map[string][]byte{"ext": []byte("other")},
			[]compose.StackObject{{Key: "ext", Name: "ext", External: true}}, "", nil},
		{"same secret", map[string][]byte{"s_pw": []byte("color=blue\n")},
			[]compose.StackObject{{Secret: true, Key: "pw", Name: "s_pw", File: file}}, "", nil},
		{"changed secret", map[string][]byte{"s_pw": []byte("hunter2")},
			[]compose.StackObject{{Key: "new", Name: "s_new", Data: []byte("x")}, {Secret: true, Key: "pw", Name: "s_pw", File: file}},
			"secret s_pw (secrets.pw) exists with other content than the content of " + file + ", and secrets are immutable", nil},
		{"secret of an older agent is kept with a warning", map[string][]byte{"old": []byte("hunter2")},
			[]compose.StackObject{{Secret: true, Key: "old", Name: "old", File: file}}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(file, []byte("color=blue\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			// Configs and secrets share one map: each row uses one kind.
			before := len(tc.stored)
			cl := objectsAgent(t, tc.stored, tc.stored)
			var out, warn bytes.Buffer
			err := ensureObjects(context.Background(), &commands{&shell.Shell{Stdout: &out, Stderr: &warn}}, cl, tc.objs)
			if tc.name == "secret of an older agent is kept with a warning" && !strings.Contains(warn.String(), "cannot compare") {
				t.Errorf("no warning: %q", warn.String())
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing was changed")):
				t.Fatalf("err = %v, want %q and nothing was changed", err, tc.want)
			case tc.want != "" && len(tc.stored) != before:
				t.Fatalf("a refused deploy created configs: %v", tc.stored)
			}
			for _, n := range tc.created {
				if _, ok := tc.stored[n]; !ok {
					t.Errorf("config %s not created", n)
				}
			}
		})
	}
}

// ensureObjects runs a deploy's steps for its secrets and configs, in
// their order: read the files, refuse changed content, find the missing
// ones, create them.
func ensureObjects(ctx context.Context, s *commands, cl *client.Client, objs []compose.StackObject) error {
	if err := readStackObjects(objs); err != nil {
		return err
	}
	if err := checkUnchanged(ctx, cl, objs, s.Stderr); err != nil {
		return err
	}
	missing, err := s.missingStackObjects(ctx, cl, objs)
	if err != nil {
		return err
	}
	return s.createStackObjects(ctx, cl, missing, nil)
}

// TestComposeInputCancelled: `stack deploy -c FIFO` with no writer blocks
// in open; Ctrl-C cancels the command's context and the read must return at
// once instead of hanging until SIGKILL.
func TestComposeInputCancelled(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "compose.yml")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() {
		_, err := (&commands{&shell.Shell{}}).composeInput(ctx, []string{fifo}, nil, "app")
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("still reading the compose FIFO 10s after the context was cancelled")
	}
}
