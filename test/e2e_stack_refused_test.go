package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// refusedCompose is a stack whose service b takes, on the external network
// back, the alias www that service front outside the stack holds there;
// a comes first and brings a network and a secret of the stack.
const refusedCompose = `name: shop
services:
  a:
    image: bb:1
    command: ["sleep", "3600"]
    networks: [inner]
    secrets: [pw]
  b:
    image: bb:1
    command: ["sleep", "3600"]
    networks:
      back:
        aliases: [www]
networks:
  inner: {}
  back:
    external: true
secrets:
  pw:
    file: ./pw.txt
`

// TestStackDeployRefusedChangesNothing: a deploy one of whose writes only
// the cluster refuses (an alias a service outside the stack holds) is
// refused whole through a follower's API, naming the service and the
// clash, with no service, network or secret of the stack left behind;
// without the clash the same file deploys.
func TestStackDeployRefusedChangesNothing(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "network", "create", "back")
	h1.MustCLI(t, "service", "create", "-d", "--name", "front", "--network", "name=back,alias=www", "bb:1", "sleep", "3600")
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	if err := os.WriteFile(file, []byte(refusedCompose), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pw.txt"), []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := h2.CLI("stack", "deploy", "-c", file)
	t.Logf("refused deploy: %s", errOut)
	if err == nil || out != "" || strings.Count(errOut, "shop_b") == 0 || strings.Count(errOut, "create service shop_b") != 1 ||
		!strings.Contains(errOut, "www") || !strings.Contains(errOut, "front") {
		t.Fatalf("deploy: err %v, stdout %q, stderr %q", err, out, errOut)
	}
	if got := strings.Join(strings.Fields(h1.MustCLI(t, "service", "ls", "-q")), " "); strings.Count(got, " ") != 0 {
		t.Errorf("services after the refused deploy: %q (want front's ID only)", got)
	}
	for _, kind := range []string{"network", "secret"} {
		if ls := h1.MustCLI(t, kind, "ls"); strings.Contains(ls, "shop_") {
			t.Errorf("%s ls after the refused deploy:\n%s", kind, ls)
		}
	}

	// Without the clash the file deploys.
	h1.MustCLI(t, "service", "rm", "front")
	out, errOut, err = h2.CLI("stack", "deploy", "-c", file)
	if err != nil || !strings.Contains(out, "Creating service shop_b") {
		t.Fatalf("deploy: err %v, stdout %q, stderr %q", err, out, errOut)
	}
}
