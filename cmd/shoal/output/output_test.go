package output

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

var now = time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)

func TestRenderServices(t *testing.T) {
	var b bytes.Buffer
	err := RenderServices(&b, []api.Service{
		{ID: "abcdefghijklmnopqrstuvwxy", Name: "web", Mode: "replicated", Replicas: 3, Running: 2, Image: "nginx:1",
			Ports: []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}, {Published: 53, Target: 53, Protocol: "udp"}}},
		{ID: "zz", Spec: api.ServiceSpec{Name: "agent", Mode: "global", Image: "busybox"}, Replicas: 2, Running: 2},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := "ID             NAME    MODE         REPLICAS   IMAGE     PORTS\n" +
		"abcdefghijkl   web     replicated   2/3        nginx:1   *:8080->80/tcp, *:53->53/udp\n" +
		"zz             agent   global       2/2        busybox   \n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestRenderTasks(t *testing.T) {
	var b bytes.Buffer
	tasks := []api.Task{
		{ID: "t1old", Name: "web.1", Service: "web", Slot: 1, Image: "nginx:1", Node: "h1", DesiredState: "shutdown", State: "failed",
			Error: "exit 1", CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-50 * time.Minute)},
		{ID: "t2", Name: "web.2", Service: "web", Slot: 2, Image: "nginx:1", Node: "h2", DesiredState: "running", State: "running",
			CreatedAt: now.Add(-time.Minute), UpdatedAt: now.Add(-30 * time.Second)},
		// Running for 20 minutes, its record written again 2 seconds ago
		// (a report to a new leader): running 20 minutes ago, not 2 s.
		{ID: "t5", Name: "web.5", Service: "web", Slot: 5, Image: "nginx:1", Node: "h2", DesiredState: "running", State: "running",
			CreatedAt: now.Add(-21 * time.Minute), StartedAt: now.Add(-20 * time.Minute), UpdatedAt: now.Add(-2 * time.Second)},
		// After a blip: the replacement (newer) stopped, the original
		// kept; the kept one heads its slot.
		{ID: "t6r", Name: "web.6", Service: "web", Slot: 6, Image: "nginx:1", Node: "h1", DesiredState: "shutdown", State: "shutdown",
			CreatedAt: now.Add(-time.Minute), UpdatedAt: now.Add(-5 * time.Second)},
		{ID: "t6o", Name: "web.6", Service: "web", Slot: 6, Image: "nginx:1", Node: "h2", DesiredState: "running", State: "running",
			CreatedAt: now.Add(-10 * time.Minute), StartedAt: now.Add(-10 * time.Minute), UpdatedAt: now.Add(-10 * time.Minute)},
		{ID: "t1new", Name: "web.1", Service: "web", Slot: 1, Image: "nginx:1", Node: "h1", DesiredState: "running", State: "running",
			CreatedAt: now.Add(-10 * time.Minute), UpdatedAt: now.Add(-5 * time.Minute)},
		{ID: "t3", Name: "web.3", Service: "web", Slot: 3, Image: "nginx:1", DesiredState: "running", State: "new",
			Message: "no suitable node (2 nodes unmatched constraint node.labels.disk==nvme)", CreatedAt: now.Add(-time.Minute), UpdatedAt: now.Add(-time.Minute)},
		{ID: "t4", Name: "web.4", Service: "web", Slot: 4, Image: "nginx:1", Node: "h2", DesiredState: "running", State: "starting",
			Message: "rebalancing: replaces task x on node y", CreatedAt: now.Add(-time.Minute), UpdatedAt: now.Add(-time.Minute)},
	}
	if err := RenderTasks(&b, tasks, true, now); err != nil {
		t.Fatal(err)
	}
	// A pending task shows why it waits, as docker's does; other
	// messages are not errors.
	want := "ID      NAME        IMAGE     NODE   DESIRED STATE   CURRENT STATE                 ERROR\n" +
		"t1new   web.1       nginx:1   h1     running         running 5 minutes ago         \n" +
		"t1old    \\_ web.1   nginx:1   h1     shutdown        failed 50 minutes ago         \"exit 1\"\n" +
		"t2      web.2       nginx:1   h2     running         running 30 seconds ago        \n" +
		"t3      web.3       nginx:1          running         new About a minute ago        \"no suitable node (2 nodes unmatched constraint node.labels.disk==nvme)\"\n" +
		"t4      web.4       nginx:1   h2     running         starting About a minute ago   \n" +
		"t5      web.5       nginx:1   h2     running         running 20 minutes ago        \n" +
		"t6o     web.6       nginx:1   h2     running         running 10 minutes ago        \n" +
		"t6r      \\_ web.6   nginx:1   h1     shutdown        shutdown 5 seconds ago        \n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestRenderContainersAndImages(t *testing.T) {
	var b bytes.Buffer
	err := RenderContainers(&b, []api.Container{
		{ID: "0123456789abcdef", Name: "web.1", Image: "nginx", Command: []string{"nginx", "-g", "daemon off; worker 4;"}, State: "running", StartedAt: now.Add(-3 * time.Minute), Health: "healthy"},
		{ID: "c2", Name: "job", Image: "busybox", Command: []string{"true"}, State: "exited", ExitCode: 2, FinishedAt: now.Add(-2 * time.Hour)},
	}, false, now)
	if err != nil {
		t.Fatal(err)
	}
	want := "CONTAINER ID   IMAGE     COMMAND                  STATUS                   HEALTH    NAMES\n" +
		"0123456789ab   nginx     \"nginx -g daemon o...\"   Up 3 minutes             healthy   web.1\n" +
		"c2             busybox   \"true\"                   Exited (2) 2 hours ago             job\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	err = RenderImages(&b, []api.Image{
		{ID: "sha256:0123456789abcdef0123", Tags: []string{"busybox:latest", "reg:5000/app"}, Size: 1_234_567},
		{ID: "sha256:fedcba9876543210", Size: 999},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	want = "REPOSITORY     TAG      IMAGE ID       SIZE\n" +
		"busybox        latest   0123456789ab   1.235MB\n" +
		"reg:5000/app   latest   0123456789ab   1.235MB\n" +
		"<none>         <none>   fedcba987654   999B\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteListFormats(t *testing.T) {
	items := []api.Node{{ID: "n1", Hostname: "h1"}}
	id := func(n api.Node) string { return n.ID }
	table := func(w io.Writer) error { _, err := w.Write([]byte("TABLE\n")); return err }
	tests := []struct {
		opts Opts
		in   []api.Node
		want string
	}{
		{Opts{}, items, "TABLE\n"},
		{Opts{Quiet: true}, items, "n1\n"},
		{Opts{Format: "{{.Hostname}}"}, items, "h1\n"},
		{Opts{Format: "json"}, nil, "[]\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := WriteList(&b, tt.opts, tt.in, id, func(w io.Writer) error { return table(w) }); err != nil {
			t.Fatal(err)
		}
		if b.String() != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.opts, b.String(), tt.want)
		}
	}
	var b bytes.Buffer
	if err := WriteList(&b, Opts{Format: "json"}, items, id, nil); err != nil || !strings.HasPrefix(b.String(), "[\n  {\n    \"id\": \"n1\"") {
		t.Fatalf("json: %v %q", err, b.String())
	}
}

func TestHumanize(t *testing.T) {
	sizes := map[int64]string{0: "0B", 999: "999B", 1000: "1kB", 4_860_000: "4.86MB", 1_500_000_000: "1.5GB"}
	for n, want := range sizes {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %q, want %q", n, got, want)
		}
	}
	durs := map[time.Duration]string{
		0: "Less than a second", 30 * time.Second: "30 seconds", 90 * time.Second: "About a minute",
		10 * time.Minute: "10 minutes", 90 * time.Minute: "About an hour", 5 * time.Hour: "5 hours",
		72 * time.Hour: "3 days", time.Second: "1 second", 1500 * time.Millisecond: "1 second",
		2 * time.Second: "2 seconds",
	}
	for d, want := range durs {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestReplicasCell: a job's REPLICAS is docker's "running/desired
// (completed/total completed)", desired being what may still run now.
func TestReplicasCell(t *testing.T) {
	job := func(mode string, running, completed int, total, maxc uint64) api.Service {
		return api.Service{Mode: mode, Running: running, Completed: completed, Replicas: total,
			Spec: api.ServiceSpec{Mode: mode, MaxConcurrent: maxc}}
	}
	for _, tc := range []struct {
		name string
		s    api.Service
		want string
	}{
		{"replicated", api.Service{Mode: api.ModeReplicated, Running: 2, Replicas: 3}, "2/3"},
		{"job starting, 2 at once", job(api.ModeReplicatedJob, 2, 0, 3, 2), "2/2 (0/3 completed)"},
		{"job, last one due", job(api.ModeReplicatedJob, 1, 2, 3, 2), "1/1 (2/3 completed)"},
		{"job done", job(api.ModeReplicatedJob, 0, 3, 3, 2), "0/0 (3/3 completed)"},
		{"job, max concurrent = replicas", job(api.ModeReplicatedJob, 3, 0, 3, 0), "3/3 (0/3 completed)"},
		{"global job", job(api.ModeGlobalJob, 1, 2, 3, 0), "1/1 (2/3 completed)"},
	} {
		if got := ReplicasCell(tc.s); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
