package servicespec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestValidateSpec(t *testing.T) {
	good := func() api.ServiceSpec { return api.ServiceSpec{Name: "web", Image: "nginx"} }
	cases := []struct {
		name   string
		mutate func(*api.ServiceSpec)
		want   string // substring of the error; "" = valid
	}{
		{"minimal", func(*api.ServiceSpec) {}, ""},
		{"defaulted", func(s *api.ServiceSpec) { *s = Defaults(*s) }, ""},
		{"zero replicas", func(s *api.ServiceSpec) { s.Replicas = 0; s.Mode = api.ModeReplicated }, ""},
		{"stack name", func(s *api.ServiceSpec) { s.Name = "a1_b-c9" }, ""},
		{"dotted name", func(s *api.ServiceSpec) { s.Name = "a1.b" }, `character '.' not allowed`},
		{"name ends with dash", func(s *api.ServiceSpec) { s.Name = "web-" }, "must end with a letter or digit"},
		{"empty name", func(s *api.ServiceSpec) { s.Name = "" }, `name "": must not be empty`},
		{"name starts with dash", func(s *api.ServiceSpec) { s.Name = "-web" }, "must start with a letter or digit"},
		{"name with space", func(s *api.ServiceSpec) { s.Name = "my web" }, `character ' ' not allowed`},
		{"long name", func(s *api.ServiceSpec) { s.Name = strings.Repeat("a", 64) }, "longer than 63"},
		{"63 chars", func(s *api.ServiceSpec) { s.Name = strings.Repeat("a", 63) }, ""},
		{"bad mode", func(s *api.ServiceSpec) { s.Mode = "daemon" }, `mode "daemon"`},
		{"no image", func(s *api.ServiceSpec) { s.Image = " " }, "image: must not be empty"},
		{"too many replicas", func(s *api.ServiceSpec) { s.Replicas = MaxReplicas + 1 }, "replicas"},
		{"bad env", func(s *api.ServiceSpec) { s.Env = []string{"=x"} }, "env[0]"},
		{"max replicas", func(s *api.ServiceSpec) { s.Replicas = MaxReplicas }, ""},
		{"two million replicas", func(s *api.ServiceSpec) { s.Replicas = 2000000 }, "replicas 2000000: more than 65536"},
		{"global with replicas", func(s *api.ServiceSpec) { s.Mode = api.ModeGlobal; s.Replicas = 3 }, "replicas 3: a global service"},
		{"global", func(s *api.ServiceSpec) { s.Mode = api.ModeGlobal }, ""},
		{"replicated-job", func(s *api.ServiceSpec) { s.Mode = api.ModeReplicatedJob; s.Replicas = 3; s.MaxConcurrent = 2 }, ""},
		{"global-job", func(s *api.ServiceSpec) { s.Mode = api.ModeGlobalJob }, ""},
		{"global-job with replicas", func(s *api.ServiceSpec) { s.Mode = api.ModeGlobalJob; s.Replicas = 3 }, "replicas 3: a global-job service"},
		{"max_concurrent on a service", func(s *api.ServiceSpec) { s.MaxConcurrent = 2 }, "max_concurrent 2: applies to replicated-job"},
		{"max_concurrent on a global job", func(s *api.ServiceSpec) { s.Mode = api.ModeGlobalJob; s.MaxConcurrent = 2 }, "max_concurrent 2"},
		{"max_concurrent too big", func(s *api.ServiceSpec) { s.Mode = api.ModeReplicatedJob; s.MaxConcurrent = MaxReplicas + 1 }, "more than 65536"},
		{"job autoscaled", func(s *api.ServiceSpec) {
			s.Mode = api.ModeReplicatedJob
			s.Autoscale = &api.AutoscaleConfig{Min: 1, Max: 2, CPUPercent: 50}
		}, "autoscale: a replicated-job"},
		{"max per node on a global job", func(s *api.ServiceSpec) { s.Mode = api.ModeGlobalJob; s.MaxReplicasPerNode = 1 }, "max_replicas_per_node 1"},
		{"mounts", func(s *api.ServiceSpec) {
			s.Mounts = []api.Mount{{Type: api.MountVolume, Source: "d", Target: "/d"}, {Type: api.MountTmpfs, Target: "/t"}}
		}, ""},
		{"relative bind", func(s *api.ServiceSpec) {
			s.Mounts = []api.Mount{{Type: api.MountBind, Source: "srv", Target: "/srv"}}
		}, `mounts[0]: bind source "srv": must be an absolute path`},
		{"mount on /.shoal", func(s *api.ServiceSpec) {
			s.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "/.shoal"}}
		}, "mounts[0]: target \"/.shoal\": /.shoal is reserved"},
		{"negative disconnect grace", func(s *api.ServiceSpec) { s.DisconnectGrace = -time.Second }, "disconnect_grace"},
		{"at most once", func(s *api.ServiceSpec) { s.AtMostOnce, s.DisconnectGrace = true, 5*time.Second }, ""},
		{"NUL in env", func(s *api.ServiceSpec) { s.Env = []string{"A=b\x00c"} }, `env[0] "A=b\x00c": contains a NUL byte`},
		{"NUL in command", func(s *api.ServiceSpec) { s.Command = []string{"sh", "-c", "x\x00"} }, "command[2]"},
		{"NUL in entrypoint", func(s *api.ServiceSpec) { s.Entrypoint = []string{"\x00"} }, "entrypoint[0]"},
		{"NUL in image", func(s *api.ServiceSpec) { s.Image = "bb\x00:1" }, "image"},
		{"NUL in workdir", func(s *api.ServiceSpec) { s.Workdir = "/a\x00" }, "workdir"},
		{"NUL in user", func(s *api.ServiceSpec) { s.User = "\x00" }, "user"},
		{"NUL in label", func(s *api.ServiceSpec) { s.Labels = map[string]string{"a": "\x00"} }, "labels[a]"},
		{"NUL in health test", func(s *api.ServiceSpec) { s.Healthcheck = &api.HealthConfig{Test: []string{"CMD", "true\x00"}} }, "healthcheck.test[1]"},
		{"port zero: the cluster picks one", func(s *api.ServiceSpec) { s.Ports = []api.PortConfig{{Published: 0, Target: 80}} }, ""},
		{"two ports to pick", func(s *api.ServiceSpec) {
			s.Ports = []api.PortConfig{{Target: 80}, {Target: 80, Protocol: "tcp"}, {Target: 53, Protocol: "udp", Mode: api.PublishHost}}
		}, ""},
		{"port negative", func(s *api.ServiceSpec) { s.Ports = []api.PortConfig{{Published: -1, Target: 80}} }, "published port -1 out of range 1-65535 (or none: the cluster picks one of 30000-32767)"},
		{"published too big", func(s *api.ServiceSpec) { s.Ports = []api.PortConfig{{Published: 65536, Target: 80}} }, "published port 65536 out of range"},
		{"port too big", func(s *api.ServiceSpec) { s.Ports = []api.PortConfig{{Published: 80, Target: 70000}} }, "target port 70000"},
		{"bad protocol", func(s *api.ServiceSpec) { s.Ports = []api.PortConfig{{Published: 80, Target: 80, Protocol: "sctp"}} }, `protocol "sctp"`},
		{"duplicate port", func(s *api.ServiceSpec) {
			s.Ports = []api.PortConfig{{Published: 80, Target: 80}, {Published: 80, Target: 81, Protocol: "tcp"}}
		}, "80/tcp listed twice"},
		{"same port tcp and udp", func(s *api.ServiceSpec) {
			s.Ports = []api.PortConfig{{Published: 53, Target: 53, Protocol: "tcp"}, {Published: 53, Target: 53, Protocol: "udp"}}
		}, ""},
		{"bad constraint", func(s *api.ServiceSpec) { s.Constraints = []string{"node.zone==a"} }, "unknown key"},
		{"bad restart", func(s *api.ServiceSpec) { s.RestartPolicy.Condition = "always" }, `restart_policy.condition "always"`},
		{"negative delay", func(s *api.ServiceSpec) { s.RestartPolicy.Delay = -time.Second }, "restart_policy.delay"},
		{"bad order", func(s *api.ServiceSpec) { s.UpdateConfig.Order = "random" }, `update_config.order "random"`},
		{"bad action", func(s *api.ServiceSpec) { s.UpdateConfig.FailureAction = "panic" }, "update_config.failure_action"},
		{"rollback on rollback", func(s *api.ServiceSpec) { s.RollbackConfig.FailureAction = api.FailureRollback }, "rollback_config.failure_action"},
		{"negative parallelism", func(s *api.ServiceSpec) { s.UpdateConfig.Parallelism = -1 }, "update_config.parallelism -1"},
		{"ratio above 1", func(s *api.ServiceSpec) { s.UpdateConfig.MaxFailureRatio = 1.5 }, "max_failure_ratio 1.5"},
		{"negative monitor", func(s *api.ServiceSpec) { s.RollbackConfig.Monitor = -time.Second }, "rollback_config.monitor -1s"},
		{"negative monitor other than none", func(s *api.ServiceSpec) { s.UpdateConfig.Monitor = api.ExplicitZero - 1 }, "update_config.monitor -2ns"},
		{"no monitor", func(s *api.ServiceSpec) {
			s.UpdateConfig.Monitor, s.RollbackConfig.Monitor = api.ExplicitZero, api.ExplicitZero
		}, ""},
		{"no restart delay", func(s *api.ServiceSpec) { s.RestartPolicy.Delay = api.ExplicitZero }, ""},
		{"no stop grace", func(s *api.ServiceSpec) { s.StopGracePeriod = api.ExplicitZero }, ""},
		{"negative stop grace", func(s *api.ServiceSpec) { s.StopGracePeriod = -time.Second }, "stop_grace_period -1s"},
		{"negative restart delay other than none", func(s *api.ServiceSpec) { s.RestartPolicy.Delay = api.ExplicitZero - 1 }, "restart_policy.delay -2ns"},
		{"negative health", func(s *api.ServiceSpec) {
			s.Healthcheck = &api.HealthConfig{Test: []string{"CMD", "true"}, Interval: -time.Second, Retries: -1}
		}, "healthcheck.interval"},
		{"bad health test", func(s *api.ServiceSpec) { s.Healthcheck = &api.HealthConfig{Test: []string{"RUN", "x"}} }, `healthcheck.test[0] "RUN"`},
		{"negative limit", func(s *api.ServiceSpec) { s.Resources.Limits.MemoryBytes = -1 }, "resources.limits.memory_bytes -1"},
		{"memory limit below the minimum", func(s *api.ServiceSpec) { s.Resources.Limits.MemoryBytes = 1024 },
			"resources.limits.memory_bytes 1024 is below the 6MiB minimum"},
		{"memory limit at the minimum", func(s *api.ServiceSpec) { s.Resources.Limits.MemoryBytes = api.MinMemoryLimit }, ""},
		{"memory reservation above the limit", func(s *api.ServiceSpec) {
			s.Resources.Limits.MemoryBytes, s.Resources.Reservations.MemoryBytes = 64<<20, 128<<20
		}, "resources.reservations.memory_bytes 134217728 is above resources.limits.memory_bytes 67108864"},
		{"at most once, start-first update", func(s *api.ServiceSpec) {
			s.AtMostOnce, s.UpdateConfig.Order = true, api.OrderStartFirst
		}, "update_config.order start-first: an at-most-once service never runs two tasks of one slot"},
		{"at most once, start-first rollback", func(s *api.ServiceSpec) {
			s.AtMostOnce, s.RollbackConfig.Order = true, api.OrderStartFirst
		}, "rollback_config.order start-first"},
		{"at most once, stop-first", func(s *api.ServiceSpec) {
			s.AtMostOnce, s.UpdateConfig.Order = true, api.OrderStopFirst
		}, ""},
		{"negative reservation", func(s *api.ServiceSpec) { s.Resources.Reservations.NanoCPUs = -5 }, "resources.reservations.nano_cpus"},
		{"negative grace", func(s *api.ServiceSpec) { s.StopGracePeriod = -time.Second }, "stop_grace_period"},
		{"max replicas per node", func(s *api.ServiceSpec) { s.Replicas, s.MaxReplicasPerNode = 4, 1 }, ""},
		{"max replicas per node, global", func(s *api.ServiceSpec) { s.Mode, s.MaxReplicasPerNode = api.ModeGlobal, 1 },
			"max_replicas_per_node 1: a global service runs one task per node"},
		{"max replicas per node too big", func(s *api.ServiceSpec) { s.MaxReplicasPerNode = MaxReplicas + 1 },
			"max_replicas_per_node 65537: more than 65536"},
		{"spread", func(s *api.ServiceSpec) {
			s.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}, {Spread: "node.labels.rack"}}
		}, ""},
		{"spread over a hostname", func(s *api.ServiceSpec) {
			s.PlacementPreferences = []api.PlacementPreference{{Spread: "node.hostname"}}
		}, "placement_preferences: invalid placement preference spread=node.hostname: want node.labels.NAME"},
		{"empty spread", func(s *api.ServiceSpec) { s.PlacementPreferences = []api.PlacementPreference{{}} },
			"placement_preferences: invalid placement preference: empty spread"},
		{"NUL in spread", func(s *api.ServiceSpec) {
			s.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.z\x00"}}
		}, "placement_preferences"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.mutate(&s)
			err := Validate(s)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestValidateSpecListsEveryProblem(t *testing.T) {
	err := Validate(api.ServiceSpec{Name: "-x", Mode: "m"})
	for _, want := range []string{"name", "mode", "image"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v lacks %q", err, want)
		}
	}
}

func TestDefaults(t *testing.T) {
	in := api.ServiceSpec{Name: "web", Image: "x", Ports: []api.PortConfig{{Published: 80, Target: 80}}}
	d := Defaults(in)
	if d.Mode != api.ModeReplicated || d.Replicas != 1 || d.RestartPolicy.Condition != api.RestartAny ||
		d.RestartPolicy.Delay != 5*time.Second || d.UpdateConfig.Parallelism != 1 ||
		d.UpdateConfig.Order != api.OrderStopFirst || d.UpdateConfig.FailureAction != api.FailurePause ||
		d.UpdateConfig.Monitor != 5*time.Second || d.RollbackConfig != d.UpdateConfig ||
		d.StopGracePeriod != 10*time.Second || d.Ports[0].Protocol != "tcp" {
		t.Fatalf("defaults %+v", d)
	}
	if in.Ports[0].Protocol != "" {
		t.Fatal("Defaults modified its input's ports")
	}
	// `--update-monitor 0` and `--restart-delay 0` are kept: only 0 means
	// the default.
	none := Defaults(api.ServiceSpec{UpdateConfig: api.UpdateConfig{Monitor: api.ExplicitZero},
		RestartPolicy: api.RestartPolicy{Delay: api.ExplicitZero}})
	if none.UpdateConfig.Monitor != api.ExplicitZero || none.UpdateConfig.MonitorPeriod() != 0 || none.RollbackConfig.Monitor != 5*time.Second {
		t.Fatalf("no monitor became update %v, rollback %v", none.UpdateConfig.Monitor, none.RollbackConfig.Monitor)
	}
	if none.RestartPolicy.Delay != api.ExplicitZero || none.RestartPolicy.DelayPeriod() != 0 {
		t.Fatalf("no restart delay became %v", none.RestartPolicy.Delay)
	}
	g := Defaults(api.ServiceSpec{Mode: api.ModeGlobal})
	if g.Replicas != 0 {
		t.Fatalf("global got %d replicas", g.Replicas)
	}
	// Jobs: docker's restart condition on-failure, one completion.
	j := Defaults(api.ServiceSpec{Mode: api.ModeReplicatedJob})
	if j.Replicas != 1 || j.RestartPolicy.Condition != api.RestartOnFailure || j.MaxConcurrent != 0 {
		t.Fatalf("replicated-job defaults %+v", j)
	}
	if gj := Defaults(api.ServiceSpec{Mode: api.ModeGlobalJob}); gj.Replicas != 0 || gj.RestartPolicy.Condition != api.RestartOnFailure {
		t.Fatalf("global-job defaults %+v", gj)
	}
	if kept := Defaults(api.ServiceSpec{Mode: api.ModeGlobalJob, RestartPolicy: api.RestartPolicy{Condition: api.RestartNone}}); kept.RestartPolicy.Condition != api.RestartNone {
		t.Fatalf("a job's set restart condition replaced: %+v", kept.RestartPolicy)
	}
	keep := Defaults(api.ServiceSpec{Replicas: 3, UpdateConfig: api.UpdateConfig{Order: api.OrderStartFirst, Parallelism: 4}})
	if keep.Replicas != 3 || keep.UpdateConfig.Order != api.OrderStartFirst || keep.UpdateConfig.Parallelism != 4 {
		t.Fatalf("defaults overwrote set fields: %+v", keep)
	}
	// `--update-parallelism 0` (all at once): an update config with any
	// field set keeps parallelism 0.
	all := Defaults(api.ServiceSpec{Replicas: 3, UpdateConfig: api.UpdateConfig{Order: api.OrderStopFirst}})
	if all.UpdateConfig.Parallelism != 0 || all.RollbackConfig.Parallelism != 1 {
		t.Fatalf("parallelism 0 of a set update config: %+v / %+v", all.UpdateConfig, all.RollbackConfig)
	}
}

func TestCheckPortClash(t *testing.T) {
	existing := []api.Service{
		{Name: "web", Spec: api.ServiceSpec{Name: "web", Ports: []api.PortConfig{{Published: 80, Target: 80, Protocol: "tcp"}}}},
		{Name: "dns", Spec: api.ServiceSpec{Name: "dns", Ports: []api.PortConfig{{Published: 53, Target: 53, Protocol: "udp"}}}},
	}
	cases := []struct {
		name  string
		spec  api.ServiceSpec
		clash bool
	}{
		{"free port", api.ServiceSpec{Name: "api", Ports: []api.PortConfig{{Published: 8080, Target: 80}}}, false},
		{"taken port", api.ServiceSpec{Name: "api", Ports: []api.PortConfig{{Published: 80, Target: 8080}}}, true},
		{"other protocol", api.ServiceSpec{Name: "api", Ports: []api.PortConfig{{Published: 53, Target: 53, Protocol: "tcp"}}}, false},
		{"same protocol", api.ServiceSpec{Name: "api", Ports: []api.PortConfig{{Published: 53, Target: 53, Protocol: "udp"}}}, true},
		{"own port on update", api.ServiceSpec{Name: "web", Ports: []api.PortConfig{{Published: 80, Target: 80}}}, false},
		{"port to pick", api.ServiceSpec{Name: "api", Ports: []api.PortConfig{{Target: 80}, {Target: 80}}}, false},
		{"port to pick beside a taken one", api.ServiceSpec{Name: "api", Ports: []api.PortConfig{{Target: 80}, {Published: 80, Target: 80}}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPortClash(tc.spec, existing)
			if (err != nil) != tc.clash || (err != nil && !errors.Is(err, ErrPortInUse)) {
				t.Fatalf("err = %v, want clash=%v", err, tc.clash)
			}
		})
	}
}
