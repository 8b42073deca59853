package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

const testCompose = `
version: "3.8"
services:
  web:
    image: nginx:1
    command: nginx -g 'daemon off;'
    ports:
      - "8080:80"
      - 53:53/udp
      - target: 443
        published: 8443
    environment:
      A: 1
      B: "two"
    deploy:
      replicas: 3
      resources:
        limits:
          cpus: 0.5
          memory: 64M
      placement:
        constraints: [node.labels.zone == a]
      restart_policy:
        condition: on-failure
        delay: 1s
      update_config:
        parallelism: 2
        order: start-first
    healthcheck:
      test: ["CMD-SHELL", "wget -q localhost"]
      interval: 5s
      retries: 2
    networks: [front]
  agent:
    image: busybox
    command: ["sleep", "1000"]
    environment:
      - X=1
    deploy:
      mode: global
volumes:
  data: {}
`

func TestStackSpecs(t *testing.T) {
	f, ignored, err := parseCompose([]byte(testCompose))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ignored, ",") != "volumes,web.networks" {
		t.Fatalf("ignored = %v", ignored)
	}
	specs, err := stackSpecs("app", f)
	if err != nil {
		t.Fatal(err)
	}
	agent := defaultSpec()
	agent.Name, agent.Mode, agent.Replicas, agent.Image = "app_agent", "global", 0, "busybox"
	agent.Command, agent.Env = []string{"sleep", "1000"}, []string{"X=1"}
	agent.Labels = map[string]string{stackLabel: "app"}

	web := defaultSpec()
	web.Name, web.Replicas, web.Image = "app_web", 3, "nginx:1"
	web.Command = []string{"nginx", "-g", "daemon off;"}
	web.Labels = map[string]string{stackLabel: "app"}
	web.Env = []string{"A=1", "B=two"}
	web.Ports = []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}, {Published: 53, Target: 53, Protocol: "udp"}, {Published: 8443, Target: 443, Protocol: "tcp"}}
	web.Resources.Limits = api.Resources{NanoCPUs: 500_000_000, MemoryBytes: 64 << 20}
	web.Constraints = []string{"node.labels.zone==a"}
	web.RestartPolicy.Condition, web.RestartPolicy.Delay = "on-failure", time.Second
	web.UpdateConfig.Parallelism, web.UpdateConfig.Order = 2, "start-first"
	web.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "wget -q localhost"}, Interval: 5 * time.Second, Retries: 2}

	want := []api.ServiceSpec{agent, web}
	if !reflect.DeepEqual(specs, want) {
		t.Fatalf("specs:\n%+v\nwant:\n%+v", specs, want)
	}
}

func TestStackSpecErrors(t *testing.T) {
	tests := map[string]string{
		"no services":   "version: '3'\n",
		"no image":      "services:\n  a:\n    command: x\n",
		"bad port":      "services:\n  a:\n    image: x\n    ports: ['99999:1']\n",
		"bad mode":      "services:\n  a:\n    image: x\n    deploy: {mode: sometimes}\n",
		"global+repl":   "services:\n  a:\n    image: x\n    deploy: {mode: global, replicas: 2}\n",
		"bad memory":    "services:\n  a:\n    image: x\n    deploy: {resources: {limits: {memory: lots}}}\n",
		"bad duration":  "services:\n  a:\n    image: x\n    stop_grace_period: soon\n",
		"not yaml":      "services: [\n",
		"bad condition": "services:\n  a:\n    image: x\n    deploy: {restart_policy: {condition: sometimes}}\n",
	}
	for name, doc := range tests {
		f, _, err := parseCompose([]byte(doc))
		if err == nil {
			_, err = stackSpecs("s", f)
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCLIStack(t *testing.T) {
	f := newFakeAgent(t)
	file := filepath.Join(t.TempDir(), "compose.yml")
	if err := os.WriteFile(file, []byte(testCompose), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, f.host, "", "stack", "deploy", "-c", file, "app")
	if code != 0 || out != "Creating service app_agent\nCreating service app_web\n" || !strings.Contains(errOut, "Ignoring unsupported option: web.networks") {
		t.Fatalf("deploy: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = runCLI(t, f.host, testCompose, "stack", "deploy", "-c", "-", "app")
	if code != 0 || out != "Updating service app_agent\nUpdating service app_web\n" {
		t.Fatalf("redeploy: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if f.lastQuery != "version=1" || f.lastSpec.Name != "app_web" {
		t.Fatalf("update sent %q %s", f.lastQuery, f.lastSpec.Name)
	}
	out, _, code = runCLI(t, f.host, "", "stack", "ls")
	if code != 0 || out != "NAME   SERVICES\napp    2\n" {
		t.Fatalf("stack ls: %d %q", code, out)
	}
	out, _, code = runCLI(t, f.host, "", "stack", "ls", "--format", "json")
	if code != 0 || !strings.Contains(out, `"name": "app"`) || !strings.Contains(out, `"services": 2`) {
		t.Fatalf("stack ls json: %d %q", code, out)
	}
	_, errOut, code = runCLI(t, f.host, "", "stack", "rm", "nope")
	if code != 1 || !strings.Contains(errOut, "nothing found in stack: nope") {
		t.Fatalf("stack rm nope: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, f.host, "", "stack", "deploy", "app")
	if code != 2 {
		t.Fatalf("deploy without -c: %d %q", code, errOut)
	}
}
