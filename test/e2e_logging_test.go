package test

// End-to-end test of a service's log options (--log-driver, --log-opt):
// the rotation reaches the node's supervisor, none keeps no logs and the
// logs commands say so, and what Shoal does not implement is refused by
// the CLI and by the leader with nothing created.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// runningLogTask waits for svc's one task to run and returns it.
func runningLogTask(t *testing.T, h *harness.Host, svc string, not string) api.Task {
	t.Helper()
	var got api.Task
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, tk := range tasksOf(t, h, svc) {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning && tk.ContainerID != "" && tk.ContainerID != not {
				got = tk
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s: no running task (other than container %.12s)", svc, not)
	}, svc+" running")
	return got
}

// logFiles are the log files of a container on h (runtime/README.md's
// layout: DATA/runtime/containers/ID/log/container.log[.N]) and their total size.
func logFiles(t *testing.T, h *harness.Host, containerID string) ([]string, int64) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(h.DataDir, "runtime", "containers", containerID, "log", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			total += fi.Size()
		}
	}
	return files, total
}

func TestServiceLogOptions(t *testing.T) {
	c, _ := svcCluster(t, 1)
	h := c.Host(1)

	// 20,000 lines (~1 MB of JSON lines) through max-size 8k × max-file 2:
	// at most 16 KiB stay on the node, and they are the last lines.
	h.MustCLI(t, "service", "create", "-d", "--name", "chatty", "--log-driver", "json-file",
		"--log-opt", "max-size=8k", "--log-opt", "max-file=2",
		"bb:1", "sh", "-c", "seq 1 20000; sleep 100000")
	tk := runningLogTask(t, h, "chatty", "")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, _, err := h.CLI("service", "logs", "--tail", "1", "chatty")
		return err == nil && strings.Contains(out, "20000"), fmt.Sprintf("service logs: %v %q", err, out)
	}, "the last line in service logs")
	files, total := logFiles(t, h, tk.ContainerID)
	if len(files) != 2 || total > 16<<10 {
		t.Fatalf("log files %v hold %d bytes; want 2 files and at most 16 KiB", files, total)
	}
	t.Logf("20000 lines kept in %d files, %d bytes", len(files), total)
	var svc api.Service
	if err := h.JSON(&svc, "service", "inspect", "chatty"); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.LogDriver != "json-file" || svc.Spec.LogOptions["max-size"] != "8k" || svc.Spec.LogOptions["max-file"] != "2" {
		t.Fatalf("service inspect: log_driver %q log_options %v", svc.Spec.LogDriver, svc.Spec.LogOptions)
	}
	if raw := h.MustCLI(t, "service", "inspect", "--format", "json", "chatty"); !strings.Contains(raw, `"log_options"`) || !strings.Contains(raw, `"log_driver"`) {
		t.Fatalf("service inspect JSON lacks log_driver or log_options:\n%s", raw)
	}

	// A change of the options is material: the task rolls.
	h.MustCLI(t, "service", "update", "-d", "--log-opt", "max-file=3", "chatty")
	runningLogTask(t, h, "chatty", tk.ContainerID)

	// Bad input is refused naming what is supported, by the CLI and by
	// the leader (the API, no CLI check), and changes nothing.
	before := servicesState(t, h)
	_, _, err := h.CLI("service", "create", "-d", "--name", "sys", "--log-driver", "syslog", "bb:1", "sleep", "1000")
	mustFail(t, err, "--log-driver syslog", "Shoal supports json-file, local, none")
	_, _, err = h.CLI("service", "update", "-d", "--log-opt", "compress=true", "chatty")
	mustFail(t, err, "--log-opt compress", "Shoal supports max-size and max-file")
	ctx := harness.Context(t, 30*time.Second)
	_, err = apiClient(t, h).CreateService(ctx, api.ServiceSpec{Name: "sys", Image: "bb:1", Command: []string{"sleep", "1000"},
		LogDriver: "fluentd"})
	if err == nil || !strings.Contains(err.Error(), `unsupported log driver "fluentd"`) {
		t.Fatalf("the leader took log driver fluentd: %v", err)
	}
	_, err = apiClient(t, h).CreateService(ctx, api.ServiceSpec{Name: "sys", Image: "bb:1", Command: []string{"sleep", "1000"},
		LogOptions: map[string]string{"max-size": "1g", "max-file": "100"}})
	if err == nil || !strings.Contains(err.Error(), "exceed the 10 GiB") {
		t.Fatalf("the leader took 100 GiB of logs: %v", err)
	}
	if after := servicesState(t, h); after != before {
		t.Fatalf("refused writes changed the services:\n%s\n%s", before, after)
	}

	// --log-driver none: no log files, and both logs commands say that
	// logging is disabled.
	h.MustCLI(t, "service", "create", "-d", "--name", "quiet", "--log-driver", "none",
		"bb:1", "sh", "-c", "seq 1 1000; sleep 100000")
	qt := runningLogTask(t, h, "quiet", "")
	_, _, err = h.CLI("service", "logs", "quiet")
	mustFail(t, err, "service logs of log driver none", "configured logging driver does not support reading")
	_, _, err = h.CLI("logs", qt.ContainerID)
	mustFail(t, err, "logs of a log driver none container", "configured logging driver does not support reading")
	if files, _ := logFiles(t, h, qt.ContainerID); len(files) != 0 {
		t.Fatalf("log driver none left log files %v", files)
	}
}

// TestRunLogOptions: `shoal run` takes the service's log flags: the
// rotation reaches the supervisor, none keeps no logs (an attached run
// still returns the exit code), and what Shoal does not implement is
// refused by the CLI and by the agent with nothing run.
func TestRunLogOptions(t *testing.T) {
	c, _ := svcCluster(t, 1)
	h := c.Host(1)
	t.Cleanup(func() { _, _, _ = h.CLI("rm", "-f", "chatty-run", "quiet-run") })

	id := strings.TrimSpace(h.MustCLI(t, "run", "-d", "--name", "chatty-run", "--log-opt", "max-size=8k", "--log-opt", "max-file=2",
		"bb:1", "sh", "-c", "seq 1 20000; sleep 100000"))
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, _, err := h.CLI("logs", "--tail", "1", "chatty-run")
		return err == nil && strings.Contains(out, "20000"), fmt.Sprintf("logs: %v %q", err, out)
	}, "the last line in logs")
	files, total := logFiles(t, h, id)
	if len(files) != 2 || total > 16<<10 {
		t.Fatalf("log files %v hold %d bytes; want 2 files and at most 16 KiB", files, total)
	}

	out, _, err := h.CLI("run", "--rm", "--log-driver", "none", "bb:1", "sh", "-c", "seq 1 1000; exit 5")
	if exitCode(err) != 5 || out != "" {
		t.Fatalf("attached run with log driver none: exit %d (%v), output %q", exitCode(err), err, out)
	}
	qid := strings.TrimSpace(h.MustCLI(t, "run", "-d", "--name", "quiet-run", "--log-driver", "none", "bb:1", "sh", "-c", "seq 1 1000; sleep 100000"))
	_, _, err = h.CLI("logs", "quiet-run")
	mustFail(t, err, "logs of a run with log driver none", "configured logging driver does not support reading")
	if files, _ := logFiles(t, h, qid); len(files) != 0 {
		t.Fatalf("log driver none left log files %v", files)
	}

	var before []api.Container
	if err := h.JSON(&before, "ps", "-a"); err != nil {
		t.Fatal(err)
	}
	_, _, err = h.CLI("run", "--log-driver", "syslog", "bb:1", "true")
	mustFail(t, err, "run --log-driver syslog", "Shoal supports json-file, local, none")
	_, err = apiClient(t, h).RunContainer(harness.Context(t, 30*time.Second), api.RunRequest{Image: "bb:1", Command: []string{"true"},
		LogOptions: map[string]string{"compress": "true"}})
	if err == nil || !strings.Contains(err.Error(), `unsupported log option "compress"`) {
		t.Fatalf("the agent ran a container with log option compress: %v", err)
	}
	var after []api.Container
	if err := h.JSON(&after, "ps", "-a"); err != nil || len(after) != len(before) {
		t.Fatalf("refused runs changed the containers: %v, %d then %d", err, len(before), len(after))
	}
}
