package test

// End-to-end tests of images and one-off containers through the CLI, as a
// user drives them on one node: import and load, run attached and detached,
// ps, logs, stop, rm, and an agent killed with -9 that re-adopts what runs.

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/image/imagetest"
	"github.com/shoal-org/shoal/test/harness"
)

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func TestContainersThroughCLI(t *testing.T) {
	c := harness.New(t, 1)
	c.StartAll(t)
	h := c.Host(1)
	rootfs := busyboxTar(t)

	// Images: import a rootfs, load a docker-save archive of the same layer
	// under another name (stored once), inspect, list as JSON.
	h.MustCLI(t, "image", "import", rootfs, "bb:1")
	save := imagetest.DockerSaveArchive(t, rootfs, "saved:1", api.ImageConfig{Cmd: []string{"echo", "from config"}})
	h.MustCLI(t, "image", "load", "-i", save)
	var imgs []api.Image
	if err := h.JSON(&imgs, "image", "ls"); err != nil || len(imgs) != 2 {
		t.Fatalf("image ls: %v %+v", err, imgs)
	}
	var saved api.Image
	if err := h.JSON(&saved, "image", "inspect", "saved:1"); err != nil || saved.ID == "" {
		t.Fatalf("image inspect: %v %+v", err, saved)
	}
	if out := h.MustCLI(t, "run", "--rm", "saved:1"); !strings.Contains(out, "from config") {
		t.Fatalf("the image's Cmd was not run: %q", out)
	}
	// A hostile archive is refused and changes nothing.
	bad := filepath.Join(t.TempDir(), "bad.tar")
	if err := exec.Command("sh", "-c", "head -c 3000 "+save+" > "+bad).Run(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.CLI("image", "load", "-i", bad); err == nil {
		t.Fatal("a truncated archive was accepted")
	}
	if err := h.JSON(&imgs, "image", "ls"); err != nil || len(imgs) != 2 {
		t.Fatalf("a refused load changed the images: %v %+v", err, imgs)
	}

	// Attached run: output streamed, exit code returned, env and workdir.
	out, _, err := h.CLI("run", "--rm", "-e", "WHO=shoal", "bb:1", "sh", "-c", `echo "hi $WHO from $(pwd)"; exit 3`)
	if exitCode(err) != 3 || !strings.Contains(out, "hi shoal from /") {
		t.Fatalf("run: exit %d (%v), output %q", exitCode(err), err, out)
	}
	// A memory limit kills an allocation above it.
	_, _, err = h.CLI("run", "--rm", "--memory", "32M", "bb:1", "sh", "-c", `x=$(head -c 100000000 /dev/zero | tr '\0' a); echo ${#x}`)
	if exitCode(err) != 137 {
		t.Fatalf("allocation above --memory: exit %d (%v), want 137", exitCode(err), err)
	}

	// Detached: ps, logs, stop (fast: the init forwards SIGTERM), rm.
	id := strings.TrimSpace(h.MustCLI(t, "run", "-d", "--name", "ticker", "bb:1", "sh", "-c", "while true; do echo tick; sleep 0.2; done"))
	if id == "" {
		t.Fatal("run -d printed no ID")
	}
	harness.Eventually(t, 20*time.Second, func() (bool, string) {
		out, _, err := h.CLI("logs", "ticker")
		return err == nil && strings.Count(out, "tick") >= 2, out
	}, "logs of a detached container")

	// kill -9 of the agent: the container keeps running; the new agent
	// re-adopts it, keeps its logs and learns its exit code.
	if err := h.KillProcess(); err != nil {
		t.Fatal(err)
	}
	if err := h.Restart(); err != nil {
		t.Fatal(err)
	}
	var cs []api.Container
	harness.Eventually(t, 20*time.Second, func() (bool, string) {
		if err := h.JSON(&cs, "ps"); err != nil {
			return false, err.Error()
		}
		return len(cs) == 1 && cs[0].Name == "ticker" && cs[0].State == api.ContainerRunning, fmt.Sprintf("%+v", cs)
	}, "container re-adopted after kill -9 of the agent")
	start := time.Now()
	h.MustCLI(t, "stop", "ticker")
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("stop took %s: SIGTERM was not forwarded", d)
	}
	var all []api.Container
	if err := h.JSON(&all, "ps", "-a"); err != nil || len(all) != 1 || all[0].State != api.ContainerExited || all[0].ExitCode != 143 {
		t.Fatalf("after stop: %v %+v (want exited 143)", err, all)
	}
	h.MustCLI(t, "rm", "ticker")
	if err := h.JSON(&all, "ps", "-a"); err != nil || len(all) != 0 {
		t.Fatalf("after rm: %v %+v", err, all)
	}
	if _, _, err := h.CLI("logs", "ticker"); err == nil {
		t.Fatal("logs of a removed container answered")
	}
	h.MustCLI(t, "image", "rm", "saved:1")
	if _, _, err := h.CLI("image", "inspect", "saved:1"); err == nil {
		t.Fatal("a removed image still answers")
	}
}
