package taskfiles

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/runtime/secretfs"
)

type fakeReplica map[string]*consensus.ConfigObject

func (f fakeReplica) ConfigByName(name string) (*consensus.ConfigObject, error) {
	if c, ok := f[name]; ok {
		return c, nil
	}
	return nil, consensus.ErrNotFound
}

type fakeContainers []api.Container

func (f fakeContainers) List() []api.Container { return f }

// newFiles returns Files over dir whose secrets fetch serves secrets and
// counts its calls.
func newFiles(dir string, secrets map[string][]byte, configs fakeReplica, ctrs fakeContainers, calls *int) *Files {
	return New(Config{
		Dir: dir,
		Secrets: func(context.Context, *api.Task) (map[string][]byte, error) {
			*calls++
			if secrets == nil {
				return nil, errors.New("no leader")
			}
			return secrets, nil
		},
		Replica:    configs,
		Containers: ctrs,
		Logger:     slog.New(slog.DiscardHandler),
	})
}

// TestPrepareRefusals: a task without files costs nothing (no fetch, no
// mount); a secret the leader did not send, a failed fetch or a missing
// config fail the start before anything is mounted.
func TestPrepareRefusals(t *testing.T) {
	ref := func(src string) api.FileReference { return api.FileReference{Source: src} }
	for _, tt := range []struct {
		name      string
		spec      api.ServiceSpec
		secrets   map[string][]byte
		wantErr   error // nil: just an error
		wantCalls int
	}{
		{name: "no files", wantCalls: 0},
		{name: "secret not sent", spec: api.ServiceSpec{Secrets: []api.FileReference{ref("a"), ref("b")}},
			secrets: map[string][]byte{"a": []byte("1")}, wantCalls: 1},
		{name: "fetch fails", spec: api.ServiceSpec{Secrets: []api.FileReference{ref("a")}}, wantCalls: 1},
		{name: "config missing", spec: api.ServiceSpec{Configs: []api.FileReference{ref("nope")}},
			wantErr: consensus.ErrNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "files")
			calls := 0
			f := newFiles(dir, tt.secrets, fakeReplica{}, nil, &calls)
			mounts, err := f.Prepare(context.Background(), &api.Task{ID: "t1", Spec: tt.spec})
			if tt.name == "no files" {
				if err != nil || mounts != nil {
					t.Fatalf("Prepare = %v, %v; want nothing", mounts, err)
				}
			} else if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Prepare = %v, %v; want an error (%v)", mounts, err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Fatalf("secrets fetched %d times, want %d", calls, tt.wantCalls)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Prepare left %s behind (%v)", dir, err)
			}
		})
	}
}

// TestPrepareAndGC: the files land on the task's tmpfs with their modes,
// and GC releases the files of every task without a live container or a
// start in flight.
func TestPrepareAndGC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := filepath.Join(t.TempDir(), "files")
	calls := 0
	configs := fakeReplica{"app.conf": {Name: "app.conf", Data: []byte("x=1\n")}}
	ctrs := fakeContainers{
		{ID: "c1", TaskID: "t-running", State: api.ContainerRunning},
		{ID: "c2", TaskID: "t-created", State: api.ContainerCreated},
		{ID: "c3", TaskID: "t-exited", State: api.ContainerExited},
	}
	f := newFiles(dir, map[string][]byte{"db": []byte("s3cret")}, configs, ctrs, &calls)
	spec := api.ServiceSpec{
		Secrets: []api.FileReference{{Source: "db", Mode: 0o400}},
		Configs: []api.FileReference{{Source: "app.conf", Target: "/etc/app.conf"}},
	}
	ids := []string{"t-running", "t-created", "t-exited", "t-starting", "t-gone"}
	t.Cleanup(func() {
		for _, id := range ids {
			if err := secretfs.Release(filepath.Join(dir, id)); err != nil {
				t.Error(err)
			}
		}
	})
	for _, id := range ids {
		mounts, err := f.Prepare(context.Background(), &api.Task{ID: id, Spec: spec})
		if err != nil {
			t.Fatalf("Prepare %s: %v", id, err)
		}
		if len(mounts) != 2 || mounts[0].Target != api.SecretTarget(spec.Secrets[0]) || mounts[1].Target != "/etc/app.conf" {
			t.Fatalf("Prepare %s mounts %+v", id, mounts)
		}
		st, err := os.Stat(mounts[0].Source)
		if err != nil || st.Mode().Perm() != 0o400 {
			t.Fatalf("secret file of %s: %v, %v; want mode 0400", id, st, err)
		}
		if b, err := os.ReadFile(mounts[1].Source); err != nil || string(b) != "x=1\n" {
			t.Fatalf("config file of %s: %q, %v", id, b, err)
		}
	}

	f.GC(map[string]bool{"t-starting": true})
	for id, want := range map[string]bool{"t-running": true, "t-created": true, "t-starting": true, "t-exited": false, "t-gone": false} {
		_, err := os.Stat(filepath.Join(dir, id))
		if got := err == nil; got != want {
			t.Errorf("after GC, files of %s exist = %v, want %v (%v)", id, got, want, err)
		}
	}
}
