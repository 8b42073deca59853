package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
)

// helperEnv carries the config of a helper agent process (JSON of Config's
// path fields); its presence turns TestHelperAgent on.
const helperEnv = "SHOAL_TEST_HELPER_AGENT"

// TestHelperAgent is not a test: it is the agent process that
// TestAgentKill9 starts and kills. It runs a runtime, starts one container,
// prints its ID and waits to be killed.
func TestHelperAgent(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("helper process for TestAgentKill9")
	}
	var dirs struct{ Root, RunRoot, RuncRoot, CgroupParent string }
	if err := json.Unmarshal([]byte(raw), &dirs); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Root, cfg.RunRoot, cfg.RuncRoot, cfg.CgroupParent = dirs.Root, dirs.RunRoot, dirs.RuncRoot, dirs.CgroupParent
	cfg.InitBinary, cfg.Images = testInit, images
	rt, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	go rt.Run(context.Background())
	<-rt.Ready()
	c, err := rt.RunContainer(context.Background(), Spec{Image: "busybox", Name: "kill9", Command: []string{"sh", "-c",
		`echo started; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo finishing; exit 7`}})
	if err != nil {
		t.Fatal(err)
	}
	away, err := rt.RunContainer(context.Background(), Spec{Image: "busybox", Name: "away", Command: []string{"sh", "-c",
		`echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo while-away; exit 9`}})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("CONTAINER %s %d %s\n", c.ID, c.Pid, away.ID)
	select {}
}

// TestAgentKill9: the agent process is SIGKILLed while its container runs;
// the container keeps running under the node supervisor (not the new
// agent), and a new agent re-adopts it and still learns its exit code and
// its logs, including what it printed while no agent ran.
func TestAgentKill9(t *testing.T) {
	cfg := testConfig(t)

	dirs, _ := json.Marshal(map[string]string{"Root": cfg.Root, "RunRoot": cfg.RunRoot, "RuncRoot": cfg.RuncRoot, "CgroupParent": cfg.CgroupParent})
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAgent$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(dirs), "SHOAL_TEST_INIT="+testInit, "SHOAL_TEST_ROOTFS="+testRootfs)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "CONTAINER ") {
				lines <- sc.Text()
				return
			}
		}
		close(lines)
	}()
	var id, awayID string
	var pid int
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("helper agent exited without starting a container")
		}
		fmt.Sscanf(l, "CONTAINER %s %d %s", &id, &pid, &awayID)
	case <-time.After(60 * time.Second):
		t.Fatal("helper agent did not start a container")
	}
	_ = cmd.Process.Signal(unix.SIGKILL)
	_ = cmd.Wait()

	// The container outlived its agent and is no child of ours.
	if err := unix.Kill(pid, 0); err != nil {
		t.Fatalf("container init %d died with the agent: %v", pid, err)
	}
	if ppid := parentOf(pid); ppid == os.Getpid() {
		t.Fatalf("container init %d was reparented to the test process", pid)
	}

	// "away" prints and exits while no agent runs.
	rec := filepath.Join(cfg.Root, "containers", awayID, exitRecordFile)
	if err := os.WriteFile(filepath.Join(pathsOnDisk(t, cfg, awayID).Rootfs, "tmp", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	poll(t, "exit record of a container that ended while no agent ran", 30*time.Second, func() bool { return fileExists(rec) })

	h := startHarness(t, cfg)
	if c, err := h.rt.Get("away"); err != nil || c.State != api.ContainerExited || c.ExitCode != 9 {
		t.Errorf("away: %+v %v, want exited 9", c, err)
	}
	if logs := h.logs(t, awayID); !strings.Contains(logs, "before\n") || !strings.Contains(logs, "while-away\n") {
		t.Errorf("away's logs %q", logs)
	}
	c, err := h.rt.Get("kill9")
	if err != nil {
		t.Fatal(err)
	}
	if c.State != api.ContainerRunning || c.Pid != pid {
		t.Fatalf("after restart: state %s pid %d, want running %d", c.State, c.Pid, pid)
	}
	if err := os.WriteFile(filepath.Join(pathsOnDisk(t, cfg, id).Rootfs, "tmp", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c = h.wait(t, id)
	if c.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", c.ExitCode)
	}
	logs := h.logs(t, id)
	if !strings.Contains(logs, "started\n") || !strings.Contains(logs, "finishing\n") {
		t.Errorf("logs %q", logs)
	}
}

// parentOf returns the parent pid of pid from /proc, or 0.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	var state string
	var ppid int
	fmt.Sscan(s[i+1:], &state, &ppid)
	return ppid
}
