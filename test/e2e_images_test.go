package test

// Images follow the work (issue 8): `shoal run` of an image only a peer
// holds fetches it from that peer; a service of a private registry's image
// carries the CLI user's credentials (`--with-registry-auth`), sealed, so
// that every node can pull it, and no data dir ever holds the password.

import (
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/image/imagetest"
	"github.com/shoal-org/shoal/test/harness"
)

func TestRunFetchesImageFromPeer(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 2)
	c.Form(t)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "image", "import", busyboxTar(t), "bb:1")

	// Node 2 has never seen the image: `run` fetches it from node 1.
	out, stderr, err := h2.CLI("run", "--rm", "bb:1", "sh", "-c", "echo hello from a fetched image")
	if err != nil || !strings.Contains(out, "hello from a fetched image") {
		t.Fatalf("run on the node without the image: %v\nstdout %q\nstderr %q", err, out, stderr)
	}
	var imgs []api.Image
	if err := h2.JSON(&imgs, "image", "ls"); err != nil || len(imgs) != 1 || !strings.Contains(strings.Join(imgs[0].Tags, ","), "bb:1") {
		t.Fatalf("image ls on node 2 after run: %+v %v", imgs, err)
	}
	// An image no node has: a clear error, nothing run.
	_, _, err = h2.CLI("run", "--rm", "nope:1", "true")
	mustFail(t, err, "run of an image no node has", "nope:1", "not found on any node")
	var cs []api.Container
	if err := h2.JSON(&cs, "ps", "-a"); err != nil || len(cs) != 0 {
		t.Fatalf("containers after the runs: %+v %v", cs, err)
	}
}

// privateRegistry serves an in-process registry that wants basic auth on
// the cluster's bridge address (reachable from every host) and pushes the
// busybox image under each of refs (repository paths). It returns the
// registry's host:port.
func privateRegistry(t *testing.T, c *harness.Cluster, user, pass string, repos ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("10.213.%d.1:0", c.Subnet))
	if err != nil {
		t.Fatalf("registry listener: %v", err)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="shoal-test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	host := ln.Addr().String()
	img := imagetest.Image(t, api.ImageConfig{Cmd: []string{"sh"}}, false, busyboxTar(t))
	for _, repo := range repos {
		ref, err := name.ParseReference(host + "/" + repo)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
	}
	return host
}

func TestServiceWithRegistryAuth(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	c.Form(t)
	h1, h2 := c.Host(1), c.Host(2)
	const user = "deployer"
	pass := "reg-pw-" + strings.ReplaceAll(t.Name(), "/", "-") + fmt.Sprint(time.Now().UnixNano())
	reg := privateRegistry(t, c, user, pass, "team/app:1", "team/app:2")
	ref1, ref2 := reg+"/team/app:1", reg+"/team/app:2"

	// The CLI user's docker config file holds the credentials; the agents
	// never read it.
	cfgDir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(`{"auths":{"`+reg+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())

	// Without the flag: node 1 pulled the image with -u/-p once and removed
	// it, so the cluster knows it only as "pulled from the registry"; the
	// nodes' anonymous pulls fail, each task saying what to do.
	h1.MustCLI(t, "image", "pull", "-u", user, "-p", pass, ref1)
	h1.MustCLI(t, "image", "rm", ref1)
	h2.MustCLI(t, "service", "create", "--name", "noauth", "-d", "--replicas", "2", ref1, "sleep", "3600")
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		var tasks []api.Task
		if err := h2.JSON(&tasks, "service", "ps", "noauth"); err != nil {
			return false, err.Error()
		}
		for _, tk := range tasks {
			if tk.State == api.TaskRejected && strings.Contains(tk.Error, "--with-registry-auth") && strings.Contains(tk.Error, ref1) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("tasks: %+v", tasks)
	}, "a task of a private image without credentials is rejected with a clear error")
	h2.MustCLI(t, "service", "rm", "noauth")
	// --with-registry-auth without credentials for the registry: refused,
	// nothing created.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	_, _, err := h2.CLI("service", "create", "--name", "nocreds", "--with-registry-auth", "-d", ref2, "sleep", "3600")
	mustFail(t, err, "--with-registry-auth without credentials", "no registry credentials", reg)
	if _, _, err := h2.CLI("service", "inspect", "nocreds"); err == nil {
		t.Fatal("a refused create made a service")
	}

	// With the flag: an image no node has yet (as docker allows), every
	// replica pulls or fetches it and runs.
	t.Setenv("DOCKER_CONFIG", cfgDir)
	h2.MustCLI(t, "service", "create", "--name", "priv", "--with-registry-auth", "-d", "--replicas", "3", ref2, "sleep", "3600")
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		var tasks []api.Task
		if err := h1.JSON(&tasks, "service", "ps", "priv"); err != nil {
			return false, err.Error()
		}
		running, nodes := 0, map[string]bool{}
		for _, tk := range tasks {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
				running++
				nodes[tk.NodeID] = true
			}
		}
		return running == 3 && len(nodes) == 3, fmt.Sprintf("tasks: %+v", tasks)
	}, "every replica of the private image runs")
	insp := h1.MustCLI(t, "service", "inspect", "--format", "json", "priv")
	if strings.Contains(insp, pass) || strings.Contains(insp, auth) || !strings.Contains(insp, `"sealed"`) {
		t.Fatalf("service inspect shows the credentials, or no sealed form:\n%s", insp)
	}
	// An update without the flag keeps the sealed credentials.
	h1.MustCLI(t, "service", "update", "-d", "--env-add", "X=1", "priv")
	var svc api.Service
	if err := h1.JSON(&svc, "service", "inspect", "priv"); err != nil || svc.Spec.RegistryAuth == nil || len(svc.Spec.RegistryAuth.Sealed) == 0 {
		t.Fatalf("credentials after an update without the flag: %+v %v", svc.Spec.RegistryAuth, err)
	}

	// stack deploy --with-registry-auth: the stack runs; deploying it again
	// with the same credentials keeps the sealed form, so no task is rolled.
	compose := filepath.Join(t.TempDir(), "compose.yml")
	if err := os.WriteFile(compose, []byte("services:\n  app:\n    image: "+ref2+"\n    command: [\"sleep\", \"3600\"]\n    deploy:\n      replicas: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h2.MustCLI(t, "stack", "deploy", "--with-registry-auth", "-c", compose, "shop")
	running := func() map[string]bool {
		ids := map[string]bool{}
		var tasks []api.Task
		if err := h1.JSON(&tasks, "service", "ps", "shop_app"); err != nil {
			return ids
		}
		for _, tk := range tasks {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
				ids[tk.ID] = true
			}
		}
		return ids
	}
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		n := len(running())
		return n == 2, fmt.Sprintf("%d running", n)
	}, "the stack's private image runs")
	before := running()
	var stackSvc api.Service
	if err := h1.JSON(&stackSvc, "service", "inspect", "shop_app"); err != nil || stackSvc.Spec.RegistryAuth == nil {
		t.Fatalf("stack service credentials: %+v %v", stackSvc.Spec.RegistryAuth, err)
	}
	h2.MustCLI(t, "stack", "deploy", "--with-registry-auth", "-c", compose, "shop")
	var again api.Service
	if err := h1.JSON(&again, "service", "inspect", "shop_app"); err != nil || again.Spec.RegistryAuth == nil ||
		string(again.Spec.RegistryAuth.Sealed) != string(stackSvc.Spec.RegistryAuth.Sealed) {
		t.Fatalf("a redeploy with the same credentials changed the sealed form: %v", err)
	}
	harness.Consistently(t, 5*time.Second, func() (bool, string) {
		now := running()
		for id := range before {
			if !now[id] {
				return false, "task " + id + " was replaced"
			}
		}
		return true, ""
	}, "a redeploy with the same credentials rolls no task")

	// No data dir or agent log holds the password (raft log, snapshots,
	// task records), in the clear or as the docker config encodes it.
	for _, h := range c.Hosts() {
		for _, needle := range []string{pass, auth} {
			if hits := grepRun(h.DataDir, []byte(needle)); len(hits) > 0 {
				t.Errorf("%s's data dir holds the registry password: %v", h.Name, hits)
			}
		}
	}
	if hits := grepRun(c.Dir, []byte(pass)); len(hits) > 0 {
		t.Errorf("the cluster dir (data dirs, logs) holds the registry password: %v", hits)
	}
}

// importSeedImage imports the busybox rootfs plus /var/lib/app (a file
// owned by uid 7, mode 0640, and a subdirectory) as NAME.
func importSeedImage(t *testing.T, h *harness.Host, ref string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(root, "var/lib/app/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", root, "-xf", busyboxTar(t)).CombinedOutput(); err != nil {
		t.Fatalf("untar: %v: %s", err, out)
	}
	for p, data := range map[string]string{"var/lib/app/seed.txt": "from the image\n", "var/lib/app/sub/deep": "deep\n"} {
		if err := os.WriteFile(filepath.Join(root, p), []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(root, "var/lib/app/seed.txt"), 7, 7); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "seed.tar")
	if out, err := exec.Command("tar", "--numeric-owner", "-C", root, "-cf", p, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	h.MustCLI(t, "image", "import", p, ref)
}

func TestVolumeSeededFromImage(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 1)
	c.Form(t)
	h := c.Host(1)
	importSeedImage(t, h, "seeded:1")

	// A service's new volume starts with the image's content at the target.
	h.MustCLI(t, "service", "create", "-d", "--name", "app", "--stop-grace-period", "1s",
		"--mount", "type=volume,source=appdata,target=/var/lib/app",
		"seeded:1", "sh", "-c", "echo task >> /var/lib/app/seed.txt; exec sleep 3600")
	first := runningTask(t, h, "app", "")
	v, err := volumeOf(t, h, "appdata")
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(v.Mountpoint, "seed.txt")
	harness.Eventually(t, volTimeout, func() (bool, string) {
		b, _ := os.ReadFile(seed)
		return string(b) == "from the image\ntask\n", string(b)
	}, "the volume holds the image's file and the task's line")
	if fi, err := os.Stat(seed); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("seeded file mode: %v %v", fi, err)
	}
	if out := execOut(t, h, "app.1", "sh", "-c", "stat -c '%u %a' /var/lib/app/seed.txt; cat /var/lib/app/sub/deep"); out != "7 640\ndeep\n" {
		t.Fatalf("seeded owner, mode and subdirectory in the task: %q", out)
	}
	// The replacement task finds the data, not a fresh copy of the image's.
	h.MustCLI(t, "service", "update", "-d", "--force", "app")
	runningTask(t, h, "app", first.ID)
	harness.Eventually(t, volTimeout, func() (bool, string) {
		b, _ := os.ReadFile(seed)
		return string(b) == "from the image\ntask\ntask\n", string(b)
	}, "the second task appends to the seeded file, no re-seed")

	// volume-nocopy keeps a new volume empty.
	out, stderr, err := h.CLI("run", "--rm", "--mount", "type=volume,source=bare,target=/var/lib/app,volume-nocopy", "seeded:1", "ls", "-A", "/var/lib/app")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("run with volume-nocopy: %v, ls %q %s", err, out, stderr)
	}
	// Without it, `run` seeds as well.
	out, stderr, err = h.CLI("run", "--rm", "--mount", "type=volume,source=fresh,target=/var/lib/app", "seeded:1", "cat", "/var/lib/app/seed.txt")
	if err != nil || out != "from the image\n" {
		t.Fatalf("run with a new volume: %v, %q %s", err, out, stderr)
	}
}
