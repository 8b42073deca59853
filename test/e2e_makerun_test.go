package test

// `make run` is the README's first command: scripts/run-cluster.sh brings up
// three agents in network namespaces and a demo service, and `make stop`
// (scripts/stop-cluster.sh) tears them down keeping the data, so that the
// next `make run` resumes the same cluster. Here the scripts run as the
// Makefile runs them, on names of the test's own (SHOAL_RUN_*), so a
// developer's own `make run` cluster is left alone.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// TestMakeRunResumesScaledDemo: make run answers on the published port of
// every node; after the user scales the demo (as make run suggests), make
// stop and make run again resume the cluster with every replica running and
// nothing of it left behind afterwards. Before, the resume waited for
// exactly 3 running replicas and failed after 90 s on a scaled demo.
func TestMakeRunResumesScaledDemo(t *testing.T) {
	harness.Requirements(t)
	for _, tool := range []string{"jq", "busybox", "unshare", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("make run needs %s (scripts/deps.sh installs it)", tool)
		}
	}
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	name, x, release, err := harness.ReserveNet()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	net := fmt.Sprintf("10.213.%d", x)
	sockDir := filepath.Join("/run", name+"-run")
	env := append(os.Environ(),
		"SHOAL_RUN_BIN="+bin,
		"SHOAL_RUN_DIR="+t.TempDir(),
		"SHOAL_RUN_SOCKDIR="+sockDir,
		"SHOAL_RUN_BRIDGE="+name,
		"SHOAL_RUN_NET="+net,
		"SHOAL_RUN_NS="+name+"-h",
	)
	script := func(which string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", which))
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	stop := func() {
		t.Helper()
		if out, err := script("stop-cluster.sh"); err != nil {
			t.Errorf("stop-cluster.sh: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() {
		stop()
		_ = os.RemoveAll(sockDir)
	})
	cli := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append([]string{"--host", "unix://" + filepath.Join(sockDir, "h2.sock")}, args...)...).CombinedOutput()
		return string(out), err
	}
	// Every node answers on the published port (the routing mesh).
	answers := func() {
		t.Helper()
		for i := 1; i <= 3; i++ {
			url := fmt.Sprintf("http://%s.%d:8080/", net, 10+i)
			harness.Eventually(t, 30*time.Second, func() (bool, string) {
				body, err := get(url)
				return err == nil && strings.HasPrefix(body, "hello from web."), fmt.Sprintf("%q %v", body, err)
			}, url)
		}
	}

	if out, err := script("run-cluster.sh"); err != nil {
		t.Fatalf("first run-cluster.sh: %v\n%s", err, out)
	}
	answers()
	if out, err := cli("service", "scale", "-d", "web=2"); err != nil {
		t.Fatalf("scale web=2: %v\n%s", err, out)
	}
	harness.Eventually(t, time.Minute, func() (bool, string) {
		out, err := cli("service", "ls", "--format", "json")
		var svcs []api.Service
		if err != nil || json.Unmarshal([]byte(out), &svcs) != nil || len(svcs) != 1 {
			return false, out
		}
		return svcs[0].Running == 2, out
	}, "2 replicas of web running")

	stop()
	out, err := script("run-cluster.sh")
	if err != nil {
		t.Fatalf("run-cluster.sh resuming a scaled demo: %v\n%s", err, out)
	}
	if !strings.Contains(out, "resuming the cluster") {
		t.Errorf("the second run did not resume the cluster:\n%s", out)
	}
	got, err := cli("service", "ls", "--format", "json")
	var svcs []api.Service
	if err != nil || json.Unmarshal([]byte(got), &svcs) != nil || len(svcs) != 1 || svcs[0].Replicas != 2 || svcs[0].Running != 2 {
		t.Errorf("after the resume: %v %s, want web with 2 of 2 running", err, got)
	}
	answers()

	stop()
	if links, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(links), name) {
		t.Errorf("links of %s left after stop-cluster.sh:\n%s", name, links)
	}
	if nss, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(nss), name) {
		t.Errorf("namespaces of %s left after stop-cluster.sh:\n%s", name, nss)
	}
}
