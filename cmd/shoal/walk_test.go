package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestCLIServiceScaleAllOrNothing: a scale naming a service that does not
// exist (or a global one, or a count past the agent's bound) is refused
// before any service is scaled.
func TestCLIServiceScaleAllOrNothing(t *testing.T) {
	f := newFakeAgent(t)
	f.services = []*api.Service{
		{ID: "svc1", Name: "web", Version: 1, Spec: api.ServiceSpec{Name: "web", Mode: api.ModeReplicated, Replicas: 1, Image: "busybox"}},
		{ID: "svc2", Name: "agent", Version: 1, Spec: api.ServiceSpec{Name: "agent", Mode: api.ModeGlobal, Image: "busybox"}},
		{ID: "svc3", Name: "db", Version: 1, Spec: api.ServiceSpec{Name: "db", Mode: api.ModeReplicated, Replicas: 1, Image: "busybox"}},
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"web=3", "nosuch=2"}, "scale nosuch: service nosuch not found"},
		{[]string{"web=3", "agent=2"}, "scale agent: scale can only be used with replicated or replicated-job mode (it is global)"},
		// The agent refuses the count (the fake does not): web was
		// scaled before db's refusal arrived.
		{[]string{"web=3", "db=70000"}, "scale db: invalid service spec: replicas 70000: more than 65536"},
	} {
		out, errOut, code := runCLI(t, f.host, "", append([]string{"service", "scale", "-d"}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("scale %v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
		if out != "" {
			t.Errorf("scale %v: printed %q", tc.args, out)
		}
		if r := f.service("web").Spec.Replicas; r != 1 {
			t.Fatalf("scale %v: web scaled to %d though the command was refused", tc.args, r)
		}
	}
	out, errOut, code := runCLI(t, f.host, "", "service", "scale", "-d", "web=3")
	if code != 0 || out != "web scaled to 3\n" || f.service("web").Spec.Replicas != 3 {
		t.Fatalf("scale web=3: exit %d, out %q, stderr %q", code, out, errOut)
	}
}

// TestCLIBadFlagValue: a number or duration flag given something else says
// which flag and what it wants, not "parse error".
func TestCLIBadFlagValue(t *testing.T) {
	f := newFakeAgent(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"service", "create", "--name", "x", "--replicas", "-1", "busybox"}, `invalid value "-1" for --replicas: want a whole number, 0 or more`},
		{[]string{"service", "create", "--name", "x", "--health-interval", "5", "busybox"}, `invalid value "5" for --health-interval: want a duration with a unit`},
		{[]string{"service", "update", "--update-max-failure-ratio", "half", "web"}, `invalid value "half" for --update-max-failure-ratio: want a number`},
		{[]string{"service", "create", "busybox"}, "flag --name is required"},
		{[]string{"service", "create", "--name", "", "busybox"}, "flag --name is required"},
		{[]string{"service", "create", "--name", "x", "--update-failure-action", "explode", "busybox"}, `invalid --update-failure-action "explode": want pause, continue or rollback`},
		{[]string{"service", "create", "--name", "x", "--rollback-failure-action", "rollback", "busybox"}, `invalid --rollback-failure-action "rollback": want pause or continue`},
	} {
		_, errOut, code := runCLI(t, f.host, "", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if len(f.services) != 0 {
		t.Fatalf("a refused create made %d services", len(f.services))
	}
}

// TestServiceHelpDefaults: each flag's help shows its real default once;
// --replicas read "(replicated mode, default 1) (default: 0)".
func TestServiceHelpDefaults(t *testing.T) {
	f := newFakeAgent(t)
	line := func(help, flag string) string {
		for _, l := range strings.Split(help, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), flag+" ") {
				return l
			}
		}
		t.Fatalf("no %s in help:\n%s", flag, help)
		return ""
	}
	create, _, _ := runCLI(t, f.host, "", "service", "create", "--help")
	update, _, _ := runCLI(t, f.host, "", "service", "update", "--help")
	for _, tc := range []struct {
		help, flag, want string
	}{
		{create, "--replicas", "number of tasks (replicated mode; completions of a replicated-job) (default: 1)"},
		{create, "--restart-delay", "wait before a task that ended is replaced; 0 replaces it at once (default: 5s)"},
		{create, "--mode", "replicated, global, replicated-job or global-job (default: replicated)"},
		{create, "--update-parallelism", "tasks changed at once, 0 = all (default: 1)"},
		{update, "--replicas", "number of tasks (replicated mode; completions of a replicated-job) (default: unchanged)"},
		{update, "--stop-grace-period", "(default: unchanged)"},
		{create, "--max-concurrent", "tasks of a replicated-job that run at once (default: --replicas)"},
		{update, "--max-concurrent", "tasks of a replicated-job that run at once (default: unchanged)"},
	} {
		if l := line(tc.help, tc.flag); !strings.HasSuffix(l, tc.want) || strings.Count(l, "default") != 1 {
			t.Errorf("%s: %q, want it to end in %q", tc.flag, l, tc.want)
		}
	}
}

// TestCLIServicePsJSONFields: every task field DESIGN.md lists is in
// `service ps --format json`, error and ip included when empty.
func TestCLIServicePsJSONFields(t *testing.T) {
	f := newFakeAgent(t)
	if _, errOut, code := runCLI(t, f.host, "", "service", "create", "-d", "--name", "web", "busybox"); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	out, errOut, code := runCLI(t, f.host, "", "service", "ps", "web", "--format", "json")
	if code != 0 {
		t.Fatalf("ps: exit %d: %s", code, errOut)
	}
	var tasks []map[string]any
	if err := json.Unmarshal([]byte(out), &tasks); err != nil || len(tasks) != 1 {
		t.Fatalf("ps json: %v\n%s", err, out)
	}
	for _, k := range []string{"id", "name", "service", "slot", "node_id", "node", "desired_state", "state", "error", "exit_code", "ip", "image"} {
		if _, ok := tasks[0][k]; !ok {
			t.Errorf("task JSON lacks %q: %v", k, tasks[0])
		}
	}
	if tasks[0]["error"] != "" || tasks[0]["name"] != "web.1" {
		t.Errorf("task JSON: %v", tasks[0])
	}
	out, _, _ = runCLI(t, f.host, "", "service", "ps", "web", "--format", "{{.Name}} {{.State}} [{{.Error}}]")
	if !strings.HasPrefix(out, "web.1 ") || !strings.HasSuffix(out, " []\n") {
		t.Errorf("template: %q", out)
	}
}

// TestCLIRunBadName: a --name the runtime would refuse is a usage error
// that states the rule, and nothing is sent to the agent.
func TestCLIRunBadName(t *testing.T) {
	f := newFakeAgent(t)
	for _, name := range []string{"bad name", "-x", "a/b", ".hidden"} {
		_, errOut, code := runCLI(t, f.host, "", "run", "--name", name, "busybox", "true")
		if code != 2 || !strings.Contains(errOut, "invalid --name") || !strings.Contains(errOut, "letters, digits") {
			t.Errorf("--name %q: exit %d, stderr %q", name, code, errOut)
		}
	}
	if f.lastRun.Image != "" {
		t.Fatalf("a refused run reached the agent: %+v", f.lastRun)
	}
	if _, errOut, code := runCLI(t, f.host, "", "run", "-d", "--name", "job_1.a-b", "busybox", "true"); code != 0 || f.lastRun.Name != "job_1.a-b" {
		t.Fatalf("good name: exit %d, %q, sent %q", code, errOut, f.lastRun.Name)
	}
}

// TestCLIServiceUpdateRemoveMissing: a --*-rm naming something the
// service does not have is refused (exit 2) and the service is not
// updated; one naming what it has goes through.
func TestCLIServiceUpdateRemoveMissing(t *testing.T) {
	f := newFakeAgent(t)
	f.services = []*api.Service{{ID: "svc1", Name: "web", Version: 1, Spec: api.ServiceSpec{
		Name: "web", Mode: api.ModeReplicated, Replicas: 1, Image: "busybox",
		Env: []string{"A=1"}, Labels: map[string]string{"x": "y"}, Constraints: []string{"node.labels.zone==a"},
		Ports:   []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}},
		Mounts:  []api.Mount{{Type: "tmpfs", Target: "/tmp"}},
		Secrets: []api.FileReference{{Source: "pw"}}, Configs: []api.FileReference{{Source: "conf", Target: "/c"}},
	}}}
	for _, tc := range []struct{ flag, bad, good string }{
		{"--env-rm", "B", "A"},
		{"--label-rm", "z", "x"},
		{"--constraint-rm", "node.labels.zone==b", "node.labels.zone==a"},
		{"--publish-rm", "81", "80"},
		{"--mount-rm", "/var", "/tmp"},
		{"--secret-rm", "pw2", "pw"},
		{"--config-rm", "cnf", "conf"},
	} {
		_, errOut, code := runCLI(t, f.host, "", "service", "update", "-d", tc.flag, tc.bad, "web")
		if code != 2 || !strings.Contains(errOut, "the service has no such") {
			t.Errorf("%s %s: exit %d, stderr %q", tc.flag, tc.bad, code, errOut)
		}
		if v := f.service("web").Version; v != 1 {
			t.Fatalf("%s %s: the service was updated (version %d)", tc.flag, tc.bad, v)
		}
	}
	for _, tc := range []struct{ flag, good string }{
		{"--env-rm", "A"}, {"--label-rm", "x"}, {"--constraint-rm", "node.labels.zone==a"}, {"--publish-rm", "80"},
		{"--mount-rm", "/tmp"}, {"--secret-rm", "pw"}, {"--config-rm", "conf"},
	} {
		if _, errOut, code := runCLI(t, f.host, "", "service", "update", "-d", tc.flag, tc.good, "web"); code != 0 {
			t.Errorf("%s %s: exit %d, stderr %q", tc.flag, tc.good, code, errOut)
		}
	}
	sp := f.service("web").Spec
	if len(sp.Env)+len(sp.Labels)+len(sp.Constraints)+len(sp.Ports)+len(sp.Mounts)+len(sp.Secrets)+len(sp.Configs) != 0 {
		t.Fatalf("removals not applied: %+v", sp)
	}
}

// TestCLIExecTTYNeedsTerminal: -it with input that is not a terminal is
// refused before the agent is asked, as docker refuses it; such a session
// could never end.
func TestCLIExecTTYNeedsTerminal(t *testing.T) {
	f := newFakeAgent(t)
	_, errOut, code := runCLI(t, f.host, "echo hi\n", "exec", "-it", "web.1", "sh")
	if code != 1 || !strings.Contains(errOut, "the input device is not a TTY") {
		t.Fatalf("exec -it with piped input: exit %d, stderr %q", code, errOut)
	}
}

// TestCLILogsTaskName: `shoal logs web.1` reads the newest running
// container of task web.1 on this node, as `shoal exec web.1` does; a
// name that is neither a container nor a task here is still refused. The
// agent resolves the name; with an agent that predates that, the CLI does.
func TestCLILogsTaskName(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC)
	cs := []api.Container{
		{ID: "c-old", Name: "web.1.aaaa", TaskID: "aaaa", State: "exited", CreatedAt: t0.Add(2 * time.Minute)},
		{ID: "c-run", Name: "web.1.bbbb", TaskID: "bbbb", State: "running", CreatedAt: t0},
		{ID: "c-11", Name: "web.11.cccc", TaskID: "cccc", State: "running", CreatedAt: t0.Add(time.Hour)},
		{ID: "c-own", Name: "web.1.x.y", State: "running", CreatedAt: t0.Add(time.Hour)},
	}
	for _, old := range []bool{false, true} {
		f := newFakeAgent(t)
		f.containers, f.oldAgent = cs, old
		for _, tc := range []struct{ ref, want string }{{"web.1", "c-run"}, {"web.1.aaaa", "c-old"}, {"web.11", "c-11"}} {
			f.mu.Lock()
			f.logs = []api.LogLine{{Stream: "stdout", Line: "hi from " + tc.ref}}
			f.mu.Unlock()
			out, errOut, code := runCLI(t, f.host, "", "logs", tc.ref)
			f.mu.Lock()
			got := f.logsRead
			f.mu.Unlock()
			if code != 0 || got != tc.want || out != "hi from "+tc.ref+"\n" {
				t.Errorf("old agent %v: logs %s: exit %d, read %q (want %q), out %q, stderr %q", old, tc.ref, code, got, tc.want, out, errOut)
			}
		}
		for _, ref := range []string{"web", "web.2", "web.1.x"} {
			if _, errOut, code := runCLI(t, f.host, "", "logs", ref); code != 1 || errOut != "Error: logs of "+ref+": no such container: "+ref+"\n" {
				t.Errorf("old agent %v: logs %s: exit %d, stderr %q", old, ref, code, errOut)
			}
		}
	}
}

// TestCLIRunLogFlags: `shoal run` takes --log-driver and --log-opt as
// `service create` does, with the same rules: bad ones are usage errors
// and nothing reaches the agent. An attached run of a container that keeps
// no logs waits for its exit code without asking for its logs.
func TestCLIRunLogFlags(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		driver   string
		opts     map[string]string
		wantCode int
		wantErr  string
	}{
		{args: []string{"--log-opt", "max-size=1m", "--log-opt", "max-file=2"}, opts: map[string]string{"max-size": "1m", "max-file": "2"}},
		{args: []string{"--log-driver", "local", "--log-opt", "max-file=5"}, driver: "local", opts: map[string]string{"max-file": "5"}},
		{args: []string{"--log-driver", "none"}, driver: "none"},
		{args: []string{"--log-driver", "syslog"}, wantCode: 2, wantErr: `unsupported log driver "syslog"`},
		{args: []string{"--log-opt", "max-size=1"}, wantCode: 2, wantErr: "log option max-size 1: must be between 4k and 1g"},
		{args: []string{"--log-opt", "compress=true"}, wantCode: 2, wantErr: `unsupported log option "compress"`},
		{args: []string{"--log-opt", "max-size"}, wantCode: 2, wantErr: `"max-size": want KEY=VALUE`},
		{args: []string{"--log-driver", "none", "--log-opt", "max-file=2"}, wantCode: 2, wantErr: "log driver none takes no options"},
	} {
		f := newFakeAgent(t)
		args := append(append([]string{"run", "-d"}, tc.args...), "busybox", "true")
		_, errOut, code := runCLI(t, f.host, "", args...)
		f.mu.Lock()
		sent := f.lastRun
		f.mu.Unlock()
		if tc.wantErr != "" {
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantErr) || sent.Image != "" {
				t.Errorf("%s: exit %d, stderr %q, sent %+v; want exit %d, %q", tc.args, code, errOut, sent, tc.wantCode, tc.wantErr)
			}
			continue
		}
		if code != 0 || sent.LogDriver != tc.driver || !reflect.DeepEqual(sent.LogOptions, tc.opts) {
			t.Errorf("%s: exit %d (%q), sent driver %q options %v; want %q %v", tc.args, code, errOut, sent.LogDriver, sent.LogOptions, tc.driver, tc.opts)
		}
	}

	f := newFakeAgent(t)
	f.exitCode = 4
	_, errOut, code := runCLI(t, f.host, "", "run", "--log-driver", "none", "busybox", "sh", "-c", "exit 4")
	f.mu.Lock()
	logReads := f.requests["GET /v1/containers/ctr1/logs"]
	f.mu.Unlock()
	if code != 4 || errOut != "" || logReads != 0 {
		t.Fatalf("attached run with no logs: exit %d, stderr %q, %d log reads", code, errOut, logReads)
	}
}

// TestCLIRemoveEach: the commands that act on each argument (shell.EachRef)
// go on past a failure, print each one done, and name the operation and
// the object of each failure; network rm printed the agent's bare message.
func TestCLIRemoveEach(t *testing.T) {
	f := newFakeAgent(t)
	f.networks = []api.Network{{ID: "net1", Name: "front"}, {ID: "net2", Name: "back"}}
	out, errOut, code := runCLI(t, f.host, "", "network", "rm", "front", "ghost", "back")
	if code != 1 || out != "front\nback\n" || errOut != "Error: remove network ghost: no such network: ghost\n" {
		t.Errorf("network rm: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	f.services = []*api.Service{{ID: "svc1", Name: "web"}}
	out, errOut, code = runCLI(t, f.host, "", "service", "rm", "ghost", "web")
	if code != 1 || out != "web\n" || errOut != "Error: remove service ghost: service not found\n" {
		t.Errorf("service rm: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := runCLI(t, f.host, "", "volume", "rm"); code != 2 || !strings.Contains(errOut, "NAME...") {
		t.Errorf("volume rm without a name: exit %d, stderr %q", code, errOut)
	}
}

// TestCLIListErrors: a list the agent cannot answer says which
// (shell.FetchAll); the fake agent has no image or volume routes.
func TestCLIListErrors(t *testing.T) {
	f := newFakeAgent(t)
	for _, what := range []string{"image", "volume"} {
		if _, errOut, code := runCLI(t, f.host, "", what, "ls"); code != 1 || !strings.HasPrefix(errOut, "Error: list "+what+"s: ") {
			t.Errorf("%s ls: exit %d, stderr %q", what, code, errOut)
		}
	}
}
