package record

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/layout"
)

// TestOldRecordLayout: a container.json written before run dirs existed
// (no run_dir) gives the old layout, and a new record round-trips its run
// dir.
func TestOldRecordLayout(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	old := `{
  "id": "` + id + `",
  "name": "web.1",
  "spec": {"image": "busybox", "limits": {}},
  "image_id": "sha256:00",
  "layers": ["/var/lib/shoal/runtime/images/layers/x"],
  "args": ["sh"],
  "hostname": "0123456789ab",
  "state": "running",
  "pid": 4242,
  "exit_code": 0,
  "created_at": "2024-01-02T03:04:05Z"
}`
	dir := t.TempDir()
	p := filepath.Join(dir, "container.json")
	if err := os.WriteFile(p, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if rec.RunDir != "" || !layout.ValidRunDir(rec.RunDir, rec.ID) {
		t.Fatalf("old record: run dir %q", rec.RunDir)
	}
	got := layout.For("/data/runtime", rec.ID, rec.RunDir)
	if want := "/data/runtime/containers/" + id; got.Bundle != want || got.Config != want+"/config.json" ||
		got.Netns != "/data/runtime/netns/"+id || got.PidFile != want+"/init.pid" {
		t.Errorf("old record's paths %+v", got)
	}

	rec.RunDir = "/run/shoal/containers-n1/" + id
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"run_dir":"/run/shoal/containers-n1/`+id+`"`) {
		t.Errorf("record JSON lacks its run dir: %s", b)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil || back.RunDir != rec.RunDir {
		t.Errorf("round trip: %q %v", back.RunDir, err)
	}
}

// TestLoadDir: a record is trusted only when it names its own dir and a
// run dir RunDirFor could have made; a dir without one is an error.
func TestLoadDir(t *testing.T) {
	id := NewID()
	other := NewID()
	for _, tc := range []struct {
		name string
		rec  *Record // nil: no container.json
		ok   bool
	}{
		{"old layout", &Record{ID: id}, true},
		{"run dir", &Record{ID: id, RunDir: "/run/shoal/containers-n1/" + id}, true},
		{"no record", nil, false},
		{"another id", &Record{ID: other}, false},
		{"run dir of another", &Record{ID: id, RunDir: "/run/shoal/containers-n1/" + other}, false},
		{"relative run dir", &Record{ID: id, RunDir: "x/" + id}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(layout.For(root, id, "").Dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.rec != nil {
				// Save writes where the record says: under its own ID's dir.
				b, err := json.Marshal(tc.rec)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(layout.For(root, id, "").Record, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			rec, err := LoadDir(root, id)
			if (err == nil) != tc.ok {
				t.Fatalf("LoadDir: %+v, %v; want ok %v", rec, err, tc.ok)
			}
			if tc.ok && (rec.ID != tc.rec.ID || rec.RunDir != tc.rec.RunDir) {
				t.Errorf("LoadDir: %+v, want %+v", rec, *tc.rec)
			}
		})
	}
}

// TestSaveLoad: Save writes the record where Load, and LoadDir, read it.
func TestSaveLoad(t *testing.T) {
	root := t.TempDir()
	rec := Record{ID: NewID(), Name: "web.1", Spec: Spec{Image: "busybox"}, State: api.ContainerCreated}
	if err := os.MkdirAll(layout.For(root, rec.ID, "").Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := rec.Save(root); err != nil {
		t.Fatal(err)
	}
	back, err := LoadDir(root, rec.ID)
	if err != nil || back.Name != rec.Name || back.Spec.Image != "busybox" || back.State != api.ContainerCreated {
		t.Fatalf("LoadDir after Save: %+v, %v", back, err)
	}
}

// TestStartedExited: a start clears what the last run left; an exit keeps
// the exit record's end and error when it has them, else now and none.
func TestStartedExited(t *testing.T) {
	end := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := Record{State: api.ContainerExited, ExitCode: 137, Error: "x", OOMKilled: true, FinishedAt: end}
	before := time.Now().UTC()
	rec.Started(42, "10.0.0.2")
	if rec.State != api.ContainerRunning || rec.Pid != 42 || rec.IP != "10.0.0.2" || rec.ExitCode != 0 ||
		rec.Error != "" || rec.OOMKilled || !rec.FinishedAt.IsZero() || rec.StartedAt.Before(before) {
		t.Fatalf("Started: %+v", rec)
	}
	for _, tc := range []struct {
		name      string
		errMsg    string
		finished  time.Time
		wantError string
		wantEnd   time.Time // zero: now
	}{
		{"recorded", "", end, "", end},
		{"unrecorded", "exit status not recorded", time.Time{}, "exit status not recorded", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rec
			r.Error = "stale"
			before := time.Now().UTC()
			r.Exited(3, tc.errMsg, tc.finished, true)
			if r.State != api.ContainerExited || r.ExitCode != 3 || !r.OOMKilled || r.Pid != 0 || r.IP != "" || r.Error != tc.wantError {
				t.Fatalf("Exited: %+v", r)
			}
			if tc.wantEnd.IsZero() && r.FinishedAt.Before(before) || !tc.wantEnd.IsZero() && !r.FinishedAt.Equal(tc.wantEnd) {
				t.Errorf("Exited: finished at %v, want %v (zero: now)", r.FinishedAt, tc.wantEnd)
			}
		})
	}
}
