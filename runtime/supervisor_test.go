package runtime

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/companion"
	"github.com/shoal-org/shoal/runtime/supervisor"
)

// The supervisor's names as the tests use them.
const (
	supervisorArg0    = supervisor.Arg0
	supervisorPidFile = supervisor.PidFile
	supMaxRequest     = supervisor.MaxRequest
	supMaxLine        = supervisor.MaxLine
)

type supReply = supervisor.Reply

var readLine = supervisor.ReadLine

var shoalBin struct {
	once sync.Once
	path string
	err  error
}

// shoalBinary is the real shoal binary: SHOAL_BIN, else built once here.
// The supervisor tests need it rather than the test binary, which has none
// of the agent's big dependencies.
func shoalBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SHOAL_BIN"); p != "" {
		return p
	}
	shoalBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "shoal-bin-")
		if err != nil {
			shoalBin.err = err
			return
		}
		shoalBin.path, shoalBin.err = buildBinary(dir, "shoal", "github.com/shoal-org/shoal/cmd/shoal")
	})
	if shoalBin.err != nil {
		t.Fatal(shoalBin.err)
	}
	return shoalBin.path
}

// TestSupervisorSkipsAgentInit: the shoal binary started as
// shoal-supervisor runs the supervisor before the package initialisers of
// the agent's big dependencies, whose heap it would otherwise keep (3 MB
// allocated at init, the jsonschema of compose-go 1.7 MB of it).
func TestSupervisorSkipsAgentInit(t *testing.T) {
	cmd := exec.Command(shoalBinary(t), "--root", "relative")
	cmd.Args[0] = supervisorArg0
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("supervisor with a relative root: %v, want exit 2; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "--root must be an absolute path") {
		t.Fatalf("not the supervisor's refusal:\n%s", stderr.String())
	}
	inits := 0
	for _, l := range strings.Split(stderr.String(), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "init" {
			continue
		}
		inits++
		for _, heavy := range []string{
			"main",
			"github.com/santhosh-tekuri/jsonschema/v6",
			"github.com/compose-spec/compose-go/v2/loader",
			"github.com/prometheus/client_golang/prometheus",
			"github.com/hashicorp/raft",
			"github.com/shoal-org/shoal/node",
		} {
			if f[1] == heavy {
				t.Errorf("the supervisor ran the init of %s", heavy)
			}
		}
	}
	if inits == 0 {
		t.Fatalf("no init trace (GODEBUG=inittrace=1) in:\n%s", stderr.String())
	}
}

// TestSupervisorTrimsAfterStarts: starting containers makes the supervisor
// touch its binary all over, and the kernel's fault-around maps 16 pages
// per fault; once quiet it gives those page references back, so its
// file-backed PSS comes down to what its loops use (about 1.2 MiB of the
// shoal binary; 6-8 MiB when it trimmed at start only).
func TestSupervisorTrimsAfterStarts(t *testing.T) {
	cfg := testConfig(t)
	cfg.SupervisorBinary = shoalBinary(t)
	h := startHarness(t, cfg)
	for i := 0; i < 20; i++ {
		h.run(t, Spec{Image: "busybox", Command: []string{"sleep", "100000"}})
	}
	pid, err := readPid(filepath.Join(cfg.Root, supervisorPidFile))
	if err != nil {
		t.Fatal(err)
	}
	const maxFileKB = 3 << 10
	deadline := time.Now().Add(30 * time.Second)
	for {
		file := smapsKB(pid, "Pss_File")
		if file > 0 && file <= maxFileKB {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor's file-backed PSS stays at %d KiB, want <= %d KiB once quiet", file, maxFileKB)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range h.rt.List() {
		if err := h.rt.Remove(context.Background(), c.ID, true); err != nil {
			t.Fatal(err)
		}
	}
}

var supBin struct {
	once sync.Once
	path string
	err  error
}

// supervisorBinary is the supervisor's own binary (cmd/shoal-supervisor):
// SHOAL_BIN's companion when make build left one, else built once here.
func supervisorBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SHOAL_BIN"); p != "" {
		if own := companion.FirstExecutable(companion.Candidates(p, companion.SupervisorName)[:1]); own != "" {
			return own
		}
	}
	supBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "shoal-sup-bin-")
		if err != nil {
			supBin.err = err
			return
		}
		supBin.path, supBin.err = buildBinary(dir, companion.SupervisorName, "github.com/shoal-org/shoal/runtime/cmd/shoal-supervisor")
	})
	if supBin.err != nil {
		t.Fatal(supBin.err)
	}
	return supBin.path
}

// TestSupervisorOwnBinary: the supervisor built on its own (the agent's
// default when it finds it) supervises as the shoal binary does — output,
// exit codes — and costs what its loops need: with 20 sleeping containers
// its PSS comes down to ≤ 3.5 MiB once quiet (2.6–3.0 MiB measured; the
// shoal binary as supervisor stays above 5 MiB, the agent's package data).
func TestSupervisorOwnBinary(t *testing.T) {
	cfg := testConfig(t)
	cfg.SupervisorBinary = supervisorBinary(t)
	h := startHarness(t, cfg)
	c, logs := h.runToExit(t, Spec{Command: []string{"sh", "-c", "echo out; echo err >&2; exit 5"}})
	if c.ExitCode != 5 || !strings.Contains(logs, "out") || !strings.Contains(logs, "err") {
		t.Fatalf("exit %d logs %q, want 5 with out and err", c.ExitCode, logs)
	}
	for i := 0; i < 20; i++ {
		h.run(t, Spec{Image: "busybox", Command: []string{"sleep", "100000"}})
	}
	pid, err := readPid(filepath.Join(cfg.Root, supervisorPidFile))
	if err != nil {
		t.Fatal(err)
	}
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err != nil || exe != cfg.SupervisorBinary {
		t.Fatalf("supervisor runs %q (%v), want %s", exe, err, cfg.SupervisorBinary)
	}
	const maxKB = 3584
	deadline := time.Now().Add(30 * time.Second)
	for {
		pss := pssKB(pid)
		if pss > 0 && pss <= maxKB {
			t.Logf("supervisor PSS %d KiB (anonymous %d, file %d) with 20 containers", pss, smapsKB(pid, "Pss_Anon"), smapsKB(pid, "Pss_File"))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor's PSS stays at %d KiB with 20 containers, want <= %d KiB once quiet", pss, maxKB)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFirstWatchFails: when the runtime's first watch of the supervisor
// fails (here the supervisor cannot start the first time; a slow boot or
// a supervisor idling out as the agent connects do the same), it keeps
// trying to watch, so the exit of a container started later is still
// seen. It used to follow no supervisor for the rest of the agent's life:
// containers stayed "running" after they exited.
func TestFirstWatchFails(t *testing.T) {
	cfg := testConfig(t)
	real := supervisorBinary(t)
	dir := t.TempDir()
	mark := filepath.Join(dir, "failed-once")
	wrapper := filepath.Join(dir, "flaky-supervisor")
	script := "#!/bin/bash\nif [ ! -e " + mark + " ]; then : > " + mark + "; echo 'failing once' >&2; exit 1; fi\nexec -a " + companion.SupervisorName + " " + real + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.SupervisorBinary = wrapper
	h := startHarness(t, cfg)
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("the runtime's first watch did not go through the failing start: %v", err)
	}
	c, _ := h.runToExit(t, Spec{Command: []string{"sh", "-c", "exit 7"}})
	if c.ExitCode != 7 || c.State != api.ContainerExited {
		t.Fatalf("container %s exit %d, want exited with 7", c.State, c.ExitCode)
	}
}

func TestIsSupervisorInvocation(t *testing.T) {
	for arg0, want := range map[string]bool{
		"shoal-supervisor":                true,
		"/usr/local/bin/shoal-supervisor": true,
		"/.shoal/init":                    false,
		"/usr/bin/shoal":                  false,
		"shoal-supervisor2":               false,
	} {
		if got := IsSupervisorInvocation(arg0); got != want {
			t.Errorf("IsSupervisorInvocation(%q) = %v", arg0, got)
		}
	}
}
