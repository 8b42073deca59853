package test

// End-to-end tests of secrets and configs (issue 8): a secret reaches only
// the node of a task that uses it, as a tmpfs-backed file, and no node's
// data dir ever holds it; a config lands at its target; bad input changes
// nothing.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

// writeTemp writes data to a new file in t's temp dir.
func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// grepRun is grepDir for a live agent's dirs, where runc state, sockets
// and network namespace mounts come and go during the walk: unreadable
// files (a netns bind mount) are skipped.
func grepRun(dir string, needle []byte) []string {
	var hits []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, needle) {
			hits = append(hits, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	return hits
}

// objJSON runs `shoal KIND VERB --format json ARGS...` (secret and config
// are command groups the harness's JSON helper does not know) into v.
func objJSON(h *harness.Host, v any, kind, verb string, args ...string) error {
	out, _, err := h.CLI(append([]string{kind, verb, "--format", "json"}, args...)...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// serviceLogs returns `service logs NAME` through h, or "".
func serviceLogs(h *harness.Host, svc string) string {
	out, _, err := h.CLI("service", "logs", svc)
	if err != nil {
		return ""
	}
	return out
}

func TestSecretsEndToEnd(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 4)
	c.Form(t)
	waitVoters(t, c, 4, 3)
	var task *harness.Host // the non-voter: it has no KEK and must ask
	for _, h := range c.Hosts() {
		if st, err := h.Status(); err == nil && !st.Voter {
			task = h
		}
	}
	if task == nil {
		t.Fatal("no non-voter")
	}
	others := hostsExcept(c.Hosts(), task)
	h1 := others[0]
	h1.MustCLI(t, "image", "import", busyboxTar(t), "bb:1")

	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	plain := "pw-" + hex.EncodeToString(rnd[:])
	sum := sha256.Sum256([]byte(plain))
	wantSum := hex.EncodeToString(sum[:])

	// Created on the non-voter: the plaintext goes to the leader, which seals it.
	id := strings.TrimSpace(task.MustCLI(t, "secret", "create", "db_pass", writeTemp(t, "pw", []byte(plain))))
	task.MustCLI(t, "config", "create", "app.conf", writeTemp(t, "conf", []byte("x=1\n")))

	// Bad input: clear errors, nothing created.
	big := writeTemp(t, "big", make([]byte, api.MaxSecretSize+1))
	_, _, err := h1.CLI("secret", "create", "huge", big)
	mustFail(t, err, "a secret over 500 KiB", "500 KiB")
	_, _, err = h1.CLI("secret", "create", "db_pass", writeTemp(t, "pw2", []byte("other")))
	mustFail(t, err, "a secret name used twice", "already exists")
	_, _, err = h1.CLI("service", "create", "--name", "nope", "--secret", "missing", "bb:1", "sleep", "1")
	mustFail(t, err, "a service with an unknown secret", "not found")
	// Exactly 500 KiB passes, through a node that forwards it to the leader.
	maxFile := writeTemp(t, "max", make([]byte, api.MaxSecretSize))
	task.MustCLI(t, "secret", "create", "max_size", maxFile)
	task.MustCLI(t, "secret", "rm", "max_size")
	var secrets []api.Secret
	if err := objJSON(h1, &secrets, "secret", "ls"); err != nil || len(secrets) != 1 || secrets[0].ID != id {
		t.Fatalf("secret ls after bad input: %+v %v", secrets, err)
	}
	// Never printed back.
	insp := h1.MustCLI(t, "secret", "inspect", "--format", "json", "db_pass")
	var obj map[string]any
	if err := json.Unmarshal([]byte(insp), &obj); err != nil || obj["id"] != id || obj["name"] != "db_pass" || obj["created_at"] == nil {
		t.Fatalf("secret inspect: %s (%v)", insp, err)
	}
	if strings.Contains(insp, plain) {
		t.Fatal("secret inspect printed the secret")
	}
	var cfg api.Config
	if err := objJSON(h1, &cfg, "config", "inspect", "app.conf"); err != nil || string(cfg.Data) != "x=1\n" {
		t.Fatalf("config inspect: %+v %v", cfg, err)
	}

	// A task on the non-voter prints what it sees (a hash: its log is on disk).
	script := `sha256sum /run/secrets/db_pass; grep ' /run/secrets/db_pass ' /proc/mounts; ls -ln /run/secrets/other; cat /etc/app.conf; echo READY; exec sleep 3600`
	h1.MustCLI(t, "service", "create", "--name", "vault", "-d", "--constraint", "node.id=="+task.NodeID(t),
		"--secret", "db_pass", "--secret", "source=db_pass,target=other,mode=0400,uid=7,gid=8",
		"--config", "source=app.conf,target=/etc/app.conf", "bb:1", "sh", "-c", script)
	var logs string
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		logs = serviceLogs(h1, "vault")
		return strings.Contains(logs, "READY"), "logs: " + logs
	}, "the task prints its secrets")
	for _, want := range []string{wantSum, "tmpfs", "-r--------", " 7 ", " 8 ", "x=1"} {
		if !strings.Contains(logs, want) {
			t.Fatalf("task output lacks %q:\n%s", want, logs)
		}
	}

	// Read back through `shoal exec` on the task's node (the output stays
	// in this process: nothing is written anywhere).
	var ctr api.Container
	for _, cc := range containersOn(t, task, false) {
		if strings.HasPrefix(cc.Name, "vault.") {
			ctr = cc
		}
	}
	if ctr.ID == "" {
		t.Fatal("no vault container on the task's node")
	}
	for _, p := range []string{"/run/secrets/db_pass", "/run/secrets/other"} {
		if out := task.MustCLI(t, "exec", ctr.ID, "cat", p); out != plain {
			t.Fatalf("exec cat %s: %q", p, out)
		}
	}
	if _, _, err := task.CLI("exec", ctr.ID, "sh", "-c", "echo x > /run/secrets/db_pass"); err == nil {
		t.Fatal("the task could write its secret file")
	}

	// Removing a secret in use is refused and keeps it.
	_, _, err = h1.CLI("secret", "rm", "db_pass")
	mustFail(t, err, "removing an in-use secret", "used by service vault")
	_, _, err = h1.CLI("config", "rm", "app.conf")
	mustFail(t, err, "removing an in-use config", "used by service vault")

	// The fetch RPC: the leader refuses a node without the task.
	tasks := tasksOf(t, h1, "vault")
	var taskID string
	for _, tk := range tasks {
		if tk.DesiredState == api.TaskRunning {
			taskID = tk.ID
		}
	}
	leader := c.Leader(t, electionTimeout)
	var stranger *harness.Host
	for _, h := range others {
		if h != leader {
			stranger = h
		}
	}
	code, msg := rawRPC(t, stranger, leader.Addr(), "secrets", map[string]string{"task_id": taskID})
	if code != "forbidden" {
		t.Fatalf("secrets of another node's task: code %q, %s", code, msg)
	}
	if code, msg := rawRPC(t, task, leader.Addr(), "secrets", map[string]string{"task_id": taskID}); code != "" {
		t.Fatalf("secrets of the node's own task: code %q, %s", code, msg)
	}

	// No data dir holds the plaintext (raft log, snapshots, logs, bundles),
	// and no other node's run dir either.
	for _, h := range c.Hosts() {
		if hits := grepRun(h.DataDir, []byte(plain)); len(hits) > 0 {
			t.Errorf("%s's data dir holds the secret: %v", h.Name, hits)
		}
	}
	for _, h := range others {
		if hits := grepRun(h.RunDir, []byte(plain)); len(hits) > 0 {
			t.Errorf("%s runs no task with the secret, yet its run dir holds it: %v", h.Name, hits)
		}
	}
	if hits := grepRun(task.RunDir, []byte(plain)); len(hits) == 0 {
		t.Error("the task's node holds no tmpfs copy of the secret (is the grep blind?)")
	}

	// Dropping the secret rolls the task; the old tmpfs goes with it, and
	// then the secret can be removed.
	h1.MustCLI(t, "service", "update", "-d", "--secret-rm", "db_pass", "vault")
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		for _, tk := range tasksOf(t, h1, "vault") {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning && len(tk.Spec.Secrets) == 0 {
				hits := grepRun(task.RunDir, []byte(plain))
				return len(hits) == 0, "still held: " + strings.Join(hits, ", ")
			}
		}
		return false, "no running task without the secret"
	}, "the task rolled and its node dropped the secret")
	h1.MustCLI(t, "secret", "rm", "db_pass")
	if err := objJSON(h1, &secrets, "secret", "ls"); err != nil || len(secrets) != 0 {
		t.Fatalf("secret ls after rm: %+v %v", secrets, err)
	}
}

// TestSecretsStack: `stack deploy` makes a stack's secrets and configs
// from their files before its services, a redeploy keeps them, a file over
// 500 KiB creates nothing, and `stack rm` removes them with the services.
func TestSecretsStack(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1 := c.Host(1)
	dir := t.TempDir()
	var rnd [12]byte
	_, _ = rand.Read(rnd[:])
	plain := "st-" + hex.EncodeToString(rnd[:])
	sum := sha256.Sum256([]byte(plain))
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pw.txt", []byte(plain))
	write("app.conf", []byte("mode=stack\n"))
	write("big.txt", make([]byte, api.MaxSecretSize+1))
	write("compose.yml", []byte(`name: vault
services:
  app:
    image: bb:1
    command: ["sh", "-c", "sha256sum /run/secrets/db_password; cat /etc/app.conf; echo READY; exec sleep 3600"]
    secrets: [db_password]
    configs:
      - source: app_conf
        target: /etc/app.conf
secrets:
  db_password:
    file: ./pw.txt
configs:
  app_conf:
    file: ./app.conf
`))
	write("big.yml", []byte(`name: big
services:
  app:
    image: bb:1
    command: ["sleep", "3600"]
    secrets: [huge]
secrets:
  huge:
    file: ./big.txt
`))
	_, _, err := h1.CLI("stack", "deploy", "-c", filepath.Join(dir, "big.yml"))
	mustFail(t, err, "a stack with a secret over 500 KiB", "500 KiB")
	var secrets []api.Secret
	if err := objJSON(h1, &secrets, "secret", "ls"); err != nil || len(secrets) != 0 {
		t.Fatalf("secrets after a refused deploy: %+v %v", secrets, err)
	}
	if _, ok := stackServices(t, h1)["big_app"]; ok {
		t.Fatal("a refused deploy created its service")
	}

	out := h1.MustCLI(t, "stack", "deploy", "-c", filepath.Join(dir, "compose.yml"))
	for _, want := range []string{"Creating secret vault_db_password", "Creating config vault_app_conf", "Creating service vault_app"} {
		if !strings.Contains(out, want) {
			t.Fatalf("deploy output lacks %q:\n%s", want, out)
		}
	}
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		logs := serviceLogs(h1, "vault_app")
		return strings.Contains(logs, "READY") && strings.Contains(logs, hex.EncodeToString(sum[:])) &&
			strings.Contains(logs, "mode=stack"), "logs: " + logs
	}, "the stack's task reads its secret and config")
	if out := h1.MustCLI(t, "stack", "deploy", "-c", filepath.Join(dir, "compose.yml")); strings.Contains(out, "Creating secret") {
		t.Fatalf("a redeploy created the secret again:\n%s", out)
	}

	out = h1.MustCLI(t, "stack", "rm", "vault")
	if !strings.Contains(out, "Removing secret vault_db_password") || !strings.Contains(out, "Removing config vault_app_conf") {
		t.Fatalf("stack rm output:\n%s", out)
	}
	var configs []api.Config
	if err := objJSON(h1, &secrets, "secret", "ls"); err != nil || len(secrets) != 0 {
		t.Fatalf("secrets after stack rm: %+v %v", secrets, err)
	}
	if err := objJSON(h1, &configs, "config", "ls"); err != nil || len(configs) != 0 {
		t.Fatalf("configs after stack rm: %+v %v", configs, err)
	}
}
