package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/compose"
)

const testCompose = `
version: "3.8"
services:
  web:
    image: nginx:1
    command: nginx -g 'daemon off;'
    ports:
      - "${WEB_PORT:-8080}:80"
      - 53:53/udp
      - target: 443
        published: 8443
    environment:
      A: 1
      B: "two"
    deploy:
      replicas: ${APP_REPLICAS}
    networks: [front]
  agent:
    image: busybox
    command: ["sleep", "1000"]
    deploy:
      mode: global
networks:
  front: {}
volumes:
  data: {}
`

func TestCLIStack(t *testing.T) {
	f := newFakeAgent(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	if err := os.WriteFile(file, []byte(testCompose), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("APP_REPLICAS=3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code != 0 || out != "Creating network app_front\nCreating service app_agent\nCreating service app_web\n" ||
		strings.Contains(errOut, "networks") || strings.Contains(errOut, "volumes") {
		t.Fatalf("deploy: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if f.lastSpec.Name != "app_web" || f.lastSpec.Replicas != 3 || len(f.lastSpec.Ports) != 3 || f.lastSpec.Ports[0].Published != 8080 ||
		!slices.Equal(f.lastSpec.Networks, []string{"app_front"}) {
		t.Fatalf("created %+v", f.lastSpec)
	}
	if len(f.networks) != 1 || f.networks[0].Name != "app_front" {
		t.Fatalf("networks created: %+v", f.networks)
	}

	// The same file again changes nothing.
	f.lastQuery = ""
	out, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code != 0 || out != "Service app_agent is up to date\nService app_web is up to date\n" || f.lastQuery != "" {
		t.Fatalf("redeploy: exit %d, stdout %q, stderr %q, update %q", code, out, errOut, f.lastQuery)
	}

	// The environment beats .env; stdin works as a file.
	t.Setenv("APP_REPLICAS", "5")
	out, errOut, code = runCLI(t, f.host, testCompose, "stack", "deploy", "-c", "-", "app")
	if code != 0 || out != "Updating service app_web\nService app_agent is up to date\n" {
		t.Fatalf("redeploy from stdin: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if f.lastQuery != "version=1" || f.lastSpec.Name != "app_web" || f.lastSpec.Replicas != 5 {
		t.Fatalf("update sent %q %+v", f.lastQuery, f.lastSpec)
	}

	out, _, code = runCLI(t, f.host, "", "stack", "ls")
	if code != 0 || out != "NAME   SERVICES\napp    2\n" {
		t.Fatalf("stack ls: %d %q", code, out)
	}
	out, _, code = runCLI(t, f.host, "", "stack", "ls", "--format", "json")
	if code != 0 || !strings.Contains(out, `"name": "app"`) || !strings.Contains(out, `"services": 2`) {
		t.Fatalf("stack ls json: %d %q", code, out)
	}
	// A network of another stack, and an external one (no label), stay.
	f.mu.Lock()
	f.networks = append(f.networks, api.Network{ID: "net8", Name: "other_front", Labels: map[string]string{compose.StackLabel: "other"}},
		api.Network{ID: "net9", Name: "shared"})
	f.mu.Unlock()
	out, errOut, code = runCLI(t, f.host, "", "stack", "rm", "app")
	if code != 0 || out != "Removing service app_agent\nRemoving service app_web\nRemoving network app_front\n" {
		t.Fatalf("stack rm: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if len(f.networks) != 2 || f.networks[0].Name != "other_front" || f.networks[1].Name != "shared" {
		t.Fatalf("networks after stack rm: %+v", f.networks)
	}
	// As docker's: a note on stderr and exit 0 (a teardown may run twice).
	_, errOut, code = runCLI(t, f.host, "", "stack", "rm", "nope")
	if code != 0 || errOut != "Nothing found in stack: nope\n" {
		t.Fatalf("stack rm nope: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "app")
	if code != 2 {
		t.Fatalf("deploy without -c: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "-c", file)
	if code != 2 || !strings.Contains(errOut, "no stack name") {
		t.Fatalf("deploy without a name: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "-c", file, "App_1")
	if code != 2 || !strings.Contains(errOut, "invalid stack name") {
		t.Fatalf("deploy with a bad name: %d %q", code, errOut)
	}
}

func TestCLIStackBadFileChangesNothing(t *testing.T) {
	f := newFakeAgent(t)
	file := filepath.Join(t.TempDir(), "compose.yml")
	// Two good services and one typo: nothing may be created.
	doc := "services:\n  a:\n    image: x\n  b:\n    image: y\n  c:\n    image: z\n    replica: 2\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code == 0 || out != "" || !strings.Contains(errOut, file+":8: services.c.replica: unknown key") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if len(f.services) != 0 {
		t.Fatalf("created %d services", len(f.services))
	}
	// A missing required variable, likewise.
	doc = "services:\n  a:\n    image: x\n  b:\n    image: y:${TAG:?set TAG}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code == 0 || !strings.Contains(errOut, file+":5: services.b.image: required variable TAG is missing a value: set TAG") || len(f.services) != 0 {
		t.Fatalf("exit %d, stderr %q, %d services", code, errOut, len(f.services))
	}
}

// TestCLIStackErrorNamesOnce: the agent's refusal already names the
// operation and the service; the stack's deploy said it twice ("create
// service app_a: create service app_a: name taken").
func TestCLIStackErrorNamesOnce(t *testing.T) {
	f := newFakeAgent(t)
	f.refuseCreate = "create service app_a: alias www on network back is taken by web"
	file := filepath.Join(t.TempDir(), "compose.yml")
	if err := os.WriteFile(file, []byte("services:\n  a:\n    image: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code == 0 || strings.Count(errOut, "create service app_a") != 1 || !strings.Contains(errOut, "is taken by web") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// clashCompose is a stack whose second service takes an alias a service
// outside the stack has on the network: only the cluster can tell.
const clashCompose = `
services:
  a:
    image: x
    networks: [front]
    secrets: [pw]
  b:
    image: y
    networks:
      front:
        aliases: [www]
networks:
  front: {}
secrets:
  pw:
    file: ./pw.txt
`

// TestCLIStackRefusalChangesNothing: a refusal that only the cluster sees
// (here: service b's alias) came after the deploy had created the stack's
// network, its secret and service a; the deploy now asks the agent to
// check every write first, and a refusal changes nothing.
func TestCLIStackRefusalChangesNothing(t *testing.T) {
	f := newFakeAgent(t)
	const refusal = "create service app_b: alias www of service app_b on network app_front: the name is taken there by alias www of service web"
	f.refuseName = map[string]string{"app_b": refusal}
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	if err := os.WriteFile(file, []byte(clashCompose), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pw.txt"), []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code == 0 || strings.Count(errOut, "create service app_b") != 1 || !strings.Contains(errOut, "taken there by alias www of service web") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if len(f.services) != 0 || len(f.networks) != 0 || len(f.secrets) != 0 {
		t.Fatalf("a refused deploy left %d services, networks %+v, secrets %+v (stdout %q)", len(f.services), f.networks, f.secrets, out)
	}
	// What the check was asked: the network and secret to create, both
	// services, in the order the deploy writes them.
	if len(f.checks) != 1 {
		t.Fatalf("%d checks", len(f.checks))
	}
	c := f.checks[0]
	if len(c.Networks) != 1 || c.Networks[0].Name != "app_front" || len(c.Secrets) != 1 || c.Secrets[0].Name != "app_pw" ||
		c.Secrets[0].Size != len("hunter2") || len(c.Create) != 2 || c.Create[0].Name != "app_a" || c.Create[1].Name != "app_b" {
		t.Fatalf("check %+v", c)
	}

	// Without the clash it deploys, after one more check.
	f.refuseName = nil
	out, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code != 0 || len(f.services) != 2 || len(f.networks) != 1 || len(f.secrets) != 1 || len(f.checks) != 2 {
		t.Fatalf("exit %d, stdout %q, stderr %q, %d checks", code, out, errOut, len(f.checks))
	}
}

// TestCLIStackOlderAgent: an agent without the check route (an older
// release) gets the deploy as before, with a warning that a refusal may
// leave it half applied.
func TestCLIStackOlderAgent(t *testing.T) {
	f := newFakeAgent(t)
	f.noCheck = true
	file := filepath.Join(t.TempDir(), "compose.yml")
	if err := os.WriteFile(file, []byte("services:\n  a:\n    image: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code != 0 || out != "Creating service app_a\n" || strings.Count(errOut, "Warning: ") != 1 || !strings.Contains(errOut, "older release") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestCLIStackDeployWaits: `stack deploy --detach=false` (docker 26+'s
// flag, which the command used to refuse as undefined) follows every
// service it created or updated until it converges, on stderr, and fails
// when one does not; the default returns at once, as docker's.
func TestCLIStackDeployWaits(t *testing.T) {
	f := newFakeAgent(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yml")
	// A short monitor: the wait verifies that tasks stay running that long.
	if err := os.WriteFile(file, []byte("services:\n  web:\n    image: busybox\n    deploy:\n      replicas: 2\n      update_config:\n        monitor: 30ms\n  db:\n    image: busybox\n    deploy:\n      update_config:\n        monitor: 30ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, f.host, "", "stack", "deploy", "--detach=false", "-c", file, "app")
	if code != 0 || out != "Creating service app_db\nCreating service app_web\n" {
		t.Fatalf("deploy --detach=false: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, want := range []string{"app_web.2: running\n", "app_web: converged, 2/2 running\n", "app_db: converged, 1/1 running\n"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("progress %q lacks %q", errOut, want)
		}
	}
	// Unchanged: nothing to wait for.
	if _, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "-d=false", "-c", file, "app"); code != 0 || strings.Contains(errOut, "converged") {
		t.Errorf("unchanged deploy -d=false: exit %d, stderr %q", code, errOut)
	}
	// An update whose tasks keep failing fails the deploy, naming the service.
	f.mu.Lock()
	f.failTasks = true
	f.mu.Unlock()
	if err := os.WriteFile(file, []byte("services:\n  web:\n    image: busybox:2\n    deploy:\n      replicas: 2\n  db:\n    image: busybox\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "--detach=false", "-q", "-c", file, "app")
	if code != 1 || !strings.Contains(errOut, "Error: service app_web: tasks of app_web keep failing") || strings.HasPrefix(errOut, "app_web.1:") || strings.Contains(errOut, "\napp_web.1:") {
		t.Errorf("failing update: exit %d, stderr %q", code, errOut)
	}
	// By default the deploy does not wait.
	if _, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "-c", file, "other"); code != 0 || strings.Contains(errOut, "keep failing") {
		t.Errorf("default deploy: exit %d, stderr %q", code, errOut)
	}
}

// TestCLIStackDeployUndoesRefused: a deploy the agent refuses part way
// (here the second service's create: a published port another stack
// holds, an image no node has) removes the services, networks, secrets
// and configs it made, instead of leaving the stack half there; it used
// to leave them all.
func TestCLIStackDeployUndoesRefused(t *testing.T) {
	f := newFakeAgent(t)
	f.refuseCreate, f.refuseCreateOf = "create service app_b: published port already in use: 8080/tcp is published by service shop_web", "app_b"
	file := filepath.Join(t.TempDir(), "compose.yml")
	doc := "services:\n  a:\n    image: x\n    networks: [net]\n  b:\n    image: x\n    ports: [\"8080:80\"]\n    networks: [net]\nnetworks:\n  net: {}\n"
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code != 1 || !strings.Contains(errOut, "8080/tcp is published by service shop_web (what this deploy created was removed again)") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if want := "Creating network app_net\nCreating service app_a\nCreating service app_b\nRemoving service app_a\nRemoving network app_net\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.services) != 0 || len(f.networks) != 0 {
		t.Errorf("left %d services, %d networks", len(f.services), len(f.networks))
	}
}

// TestCLIStackRmLeftovers: `stack rm` of a stack whose services are gone
// (removed by hand, or a deploy that failed) still removes its networks,
// as docker's does; it used to say "nothing found in stack" and leave them.
func TestCLIStackRmLeftovers(t *testing.T) {
	f := newFakeAgent(t)
	f.networks = append(f.networks, api.Network{ID: "netold", Name: "old_net", Labels: map[string]string{compose.StackLabel: "old"}})
	out, errOut, code := runCLI(t, f.host, "", "stack", "rm", "old")
	if code != 0 || out != "Removing network old_net\n" {
		t.Fatalf("stack rm old: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	f.mu.Lock()
	left := len(f.networks)
	f.mu.Unlock()
	if left != 0 {
		t.Errorf("%d networks left", left)
	}
	if _, errOut, code = runCLI(t, f.host, "", "stack", "rm", "old"); code != 0 || errOut != "Nothing found in stack: old\n" {
		t.Errorf("stack rm old again: exit %d, stderr %q", code, errOut)
	}
}

// TestCLIStackRmInUseNamedOnce: `stack rm` of a stack whose network a
// service outside it still uses fails naming the network once; the agent's
// refusal already starts "remove network NAME:", and stack rm wrapped it
// again ("remove network old_net: remove network old_net: used by ...").
func TestCLIStackRmInUseNamedOnce(t *testing.T) {
	f := newFakeAgent(t)
	f.networks = append(f.networks, api.Network{ID: "netold", Name: "old_net", Labels: map[string]string{compose.StackLabel: "old"}})
	f.networkInUse = map[string]string{"old_net": "remove network old_net: used by service other: already in use"}
	_, errOut, code := runCLI(t, f.host, "", "stack", "rm", "old")
	if code == 0 || errOut != "Error: remove network old_net: used by service other: already in use\n" {
		t.Fatalf("stack rm old: exit %d, stderr %q", code, errOut)
	}
}

// TestCLIStackDeployDirectory: `stack deploy -c DIR` names the directory
// once; it printed "read DIR: read DIR: is a directory".
func TestCLIStackDeployDirectory(t *testing.T) {
	f := newFakeAgent(t)
	dir := t.TempDir()
	_, errOut, code := runCLI(t, f.host, "", "stack", "deploy", "-c", dir, "app")
	if want := "Error: read " + dir + ": is a directory\n"; code == 0 || errOut != want {
		t.Fatalf("stack deploy -c DIR: exit %d, stderr %q, want %q", code, errOut, want)
	}
}
