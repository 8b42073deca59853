package test

// End-to-end tests of backups: `shoal snapshot save|restore` on a running
// cluster and `shoal init --from-snapshot` on new hosts after the old
// cluster is gone; damaged files are refused with nothing changed.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// snapServices creates web (3 replicas, published port, env) and db (1
// replica) and waits until they run.
func snapServices(t *testing.T, h *harness.Host) {
	t.Helper()
	h.MustCLI(t, "service", "create", "-d", "--name", "web", "--replicas", "3", "--publish", "18093:80",
		"--env", "GREETING=hello", "bb:1", "sh", "-c", webCmd)
	h.MustCLI(t, "service", "create", "-d", "--name", "db", "--replicas", "1", "--limit-memory", "64M",
		"bb:1", "sh", "-c", "sleep 100000")
	waitSlots(t, h, "web", 3, "", 90*time.Second)
	waitSlots(t, h, "db", 1, "", 90*time.Second)
}

// serviceView is what must survive a backup: name, spec and VIP.
type serviceView struct {
	Spec api.ServiceSpec
	VIP  string
}

// servicesOn returns the services `service ls` shows on h, by name.
func servicesOn(t *testing.T, h *harness.Host) map[string]serviceView {
	t.Helper()
	var svcs []api.Service
	if err := h.JSON(&svcs, "service", "ls"); err != nil {
		t.Fatalf("service ls on %s: %v", h.Name, err)
	}
	out := map[string]serviceView{}
	for _, s := range svcs {
		out[s.Name] = serviceView{Spec: s.Spec, VIP: s.VIP}
	}
	return out
}

func serviceNames(m map[string]serviceView) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// saveSnapshot runs `snapshot save` on h into dir and checks the file.
func saveSnapshot(t *testing.T, h *harness.Host, dir string) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, "cluster.snap")
	var info api.SnapshotInfo
	if err := snapJSON(h, &info, "save", path); err != nil {
		t.Fatalf("snapshot save: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file mode %v, want 0600", st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("SHOAL-SNAPSHOT\n")) || int64(len(b)) <= info.Size || info.Services != 2 {
		t.Fatalf("snapshot file: %d bytes, info %+v", len(b), info)
	}
	return path, b
}

// snapJSON runs `shoal snapshot SUB --format json ARGS…` on h (the
// harness's JSON puts the flag after the first word only).
func snapJSON(h *harness.Host, v any, sub string, args ...string) error {
	out, _, err := h.CLI(append([]string{"snapshot", sub, "--format", "json"}, args...)...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// damaged writes a truncated and a tampered copy of a snapshot file.
func damaged(t *testing.T, dir string, file []byte) (truncated, tampered string) {
	t.Helper()
	truncated = filepath.Join(dir, "truncated.snap")
	if err := os.WriteFile(truncated, file[:len(file)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	// Still valid JSON, still the same size: one more replica of web.
	b := bytes.Replace(file, []byte(`"replicas":3`), []byte(`"replicas":9`), 1)
	if bytes.Equal(b, file) {
		t.Fatal("no web replicas field found to tamper with")
	}
	tampered = filepath.Join(dir, "tampered.snap")
	if err := os.WriteFile(tampered, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return truncated, tampered
}

// refused runs a command that must fail saying the file was refused.
func refused(t *testing.T, h *harness.Host, args ...string) {
	t.Helper()
	_, stderr, err := h.CLI(args...)
	if err == nil {
		t.Fatalf("%v succeeded, want a refusal", args)
	}
	if !strings.Contains(stderr, "refused") || !strings.Contains(stderr, "nothing changed") {
		t.Fatalf("%v: stderr %q, want it to say the file was refused and nothing changed", args, stderr)
	}
}

// taskContainers maps the running task container IDs of svc on every host.
func taskContainers(t *testing.T, c *harness.Cluster, svc string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, h := range c.Hosts() {
		for _, ct := range containersOn(t, h, false) {
			if strings.HasPrefix(ct.Name, svc+".") {
				out[ct.ID] = true
			}
		}
	}
	return out
}

func TestSnapshotRestoreRunningCluster(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	snapServices(t, h1)
	want := servicesOn(t, h1)
	webBefore := taskContainers(t, c, "web")
	if len(webBefore) != 3 {
		t.Fatalf("web containers before: %v", webBefore)
	}

	dir := t.TempDir()
	path, file := saveSnapshot(t, h2, dir)
	truncated, tampered := damaged(t, dir, file)

	// Changes after the save: a new service, web scaled.
	h1.MustCLI(t, "service", "create", "-d", "--name", "extra", "--replicas", "2", "bb:1", "sh", "-c", "sleep 100000")
	waitSlots(t, h1, "extra", 2, "", 90*time.Second)
	after := servicesOn(t, h1)

	// Damaged files: refused, nothing changed.
	refused(t, h3, "snapshot", "restore", truncated)
	refused(t, h3, "snapshot", "restore", tampered)
	if got := servicesOn(t, h1); !reflect.DeepEqual(got, after) {
		t.Fatalf("a refused restore changed the services: %v, want %v", serviceNames(got), serviceNames(after))
	}
	waitSlots(t, h1, "extra", 2, "", 30*time.Second)

	// A file of another cluster needs --force.
	other := filepath.Join(dir, "other.snap")
	if err := os.WriteFile(other, otherClusterFile(t, file), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := h3.CLI("snapshot", "restore", other)
	if err == nil || !strings.Contains(stderr, "another cluster") && !strings.Contains(stderr, "saved from cluster") {
		t.Fatalf("restore of another cluster's file: err %v, stderr %q", err, stderr)
	}

	// The restore, through a node that is not the leader: the file travels
	// to the leader over the cluster port.
	leader := c.Leader(t, electionTimeout)
	via := h3
	if via == leader {
		via = h2
	}
	var res api.SnapshotRestoreResponse
	if err := snapJSON(via, &res, "restore", path); err != nil {
		t.Fatalf("snapshot restore: %v", err)
	}
	if !reflect.DeepEqual(res.Services, []string{"db", "web"}) || len(res.DroppedNodes) != 0 {
		t.Fatalf("restore answer %+v", res)
	}
	for _, h := range c.Hosts() {
		h := h
		harness.Eventually(t, 60*time.Second, func() (bool, string) {
			got := servicesOn(t, h)
			return reflect.DeepEqual(got, want), fmt.Sprintf("%s: services %v, want %v", h.Name, serviceNames(got), serviceNames(want))
		}, "restored services on %s", h.Name)
	}
	waitSlots(t, h2, "web", 3, "", 90*time.Second)
	waitSlots(t, h2, "db", 1, "", 90*time.Second)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		n := len(taskContainers(t, c, "extra"))
		return n == 0, fmt.Sprintf("%d containers of extra still running", n)
	}, "extra's containers stopped")
	// web's tasks kept running through the restore: same containers.
	if got := taskContainers(t, c, "web"); !reflect.DeepEqual(got, webBefore) {
		t.Fatalf("web containers changed across the restore: %v, before %v", got, webBefore)
	}
	// The cluster goes on.
	h2.MustCLI(t, "service", "scale", "web=4")
	waitSlots(t, h1, "web", 4, "", 90*time.Second)
}

// caPin is the CA fingerprint part of a join token.
func caPin(token string) string {
	parts := strings.Split(token, "-")
	if len(parts) != 4 {
		return ""
	}
	return parts[2]
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// otherClusterFile re-labels a snapshot file with another cluster ID and a
// matching checksum: an intact file of another cluster.
func otherClusterFile(t *testing.T, file []byte) []byte {
	t.Helper()
	parts := bytes.SplitN(file, []byte("\n"), 3)
	var hd map[string]any
	if err := json.Unmarshal(parts[1], &hd); err != nil {
		t.Fatal(err)
	}
	old := hd["cluster_id"].(string)
	body := bytes.ReplaceAll(parts[2], []byte(`"cluster_id":"`+old+`"`), []byte(`"cluster_id":"someothercluster"`))
	hd["cluster_id"] = "someothercluster"
	hd["size"] = len(body)
	hd["sha256"] = sha256Hex(body)
	line, _ := json.Marshal(hd)
	return append(append(append([]byte("SHOAL-SNAPSHOT\n"), line...), '\n'), body...)
}

func TestSnapshotInitFromSnapshot(t *testing.T) {
	c, tar := svcCluster(t, 3)
	old := c.Host(1)
	snapServices(t, old)
	want := servicesOn(t, old)
	st, err := old.Status()
	if err != nil {
		t.Fatal(err)
	}
	oldCluster := st.ClusterID
	oldToken := old.Token(t)
	dir := t.TempDir()
	path, file := saveSnapshot(t, c.Host(2), dir)
	truncated, tampered := damaged(t, dir, file)

	// The whole cluster is gone.
	c.Close()

	c2 := harness.New(t, 3)
	c2.StartAll(t)
	h1 := c2.Host(1)
	// Damaged files: refused, and the node is still in no cluster.
	refused(t, h1, "init", "--from-snapshot", truncated)
	refused(t, h1, "init", "--from-snapshot", tampered)
	if st, err := h1.Status(); err != nil || st.Joined {
		t.Fatalf("status after refused inits: %+v %v", st, err)
	}

	out := h1.MustCLI(t, "init", "--from-snapshot", path)
	if !strings.Contains(out, "shoal join --token") {
		t.Fatalf("init output: %s", out)
	}
	st, err = h1.Status()
	if err != nil || !st.Joined || st.ClusterID == oldCluster {
		t.Fatalf("new cluster: %+v %v (old cluster %s)", st, err, oldCluster)
	}
	if got := servicesOn(t, h1); !reflect.DeepEqual(got, want) {
		t.Fatalf("services after init: %+v, want %+v", got, want)
	}
	h1.MustCLI(t, "image", "import", tar, "bb:1")
	token := h1.Token(t)
	// A new identity: the token pins another CA (SHOAL-1-<CA hash>-<secret>),
	// so the old cluster's certificates and token mean nothing here.
	if caPin(token) == caPin(oldToken) || caPin(token) == "" {
		t.Fatalf("new cluster pins CA %q, the old one pinned %q", caPin(token), caPin(oldToken))
	}
	for _, h := range c2.Hosts()[1:] {
		if err := h.Join(token, h1); err != nil {
			t.Fatal(err)
		}
	}
	c2.WaitReady(t, formTimeout, 3)
	for _, h := range c2.Hosts() {
		if got := servicesOn(t, h); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: services %v, want %v", h.Name, serviceNames(got), serviceNames(want))
		}
	}
	waitSlots(t, c2.Host(2), "web", 3, "", 2*time.Minute)
	waitSlots(t, c2.Host(3), "db", 1, "", 2*time.Minute)
	// The published port answers through the new cluster.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		body, err := get(fmt.Sprintf("http://%s:18093/", c2.Host(3).IP))
		return err == nil && strings.Contains(body, "hello from web."), fmt.Sprintf("%q %v", body, err)
	}, "published port of the restored web service")
	// New tasks land on the nodes that joined too.
	c2.Host(2).MustCLI(t, "service", "scale", "web=6")
	per := waitSlots(t, h1, "web", 6, "", 2*time.Minute)
	if len(per) < 2 {
		t.Fatalf("web's tasks on %v: want them on the joined nodes too", per)
	}
}
