package specflags

import (
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/shoal-org/shoal/api"
)

// applyArgs runs Apply over args as `service create` (or, with update,
// `service update`) parses them, from spec.
func applyArgs(t *testing.T, update bool, spec api.ServiceSpec, args ...string) (api.ServiceSpec, error) {
	t.Helper()
	var applyErr error
	app := &cli.App{
		Name: "x", Writer: io.Discard, ErrWriter: io.Discard,
		DisableSliceFlagSeparator: true, // as cmd/shoal's app: --network name=a,alias=b is one value
		Flags:                     Flags(update),
		ExitErrHandler:            func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			applyErr = Apply(c, &spec, update)
			return nil
		},
	}
	if err := app.Run(append([]string{"x"}, args...)); err != nil {
		return spec, err
	}
	return spec, applyErr
}

// TestOptionFlags: the container option flags of `service create` and
// `service update` and the spec fields they set.
func TestOptionFlags(t *testing.T) {
	tests := []struct {
		name   string
		update bool
		from   func(*api.ServiceSpec)
		args   []string
		want   func(*api.ServiceSpec)
		err    string
	}{
		{name: "read-only", args: []string{"--read-only"}, want: func(s *api.ServiceSpec) { s.ReadOnly = true }},
		{name: "update read-only off", update: true, from: func(s *api.ServiceSpec) { s.ReadOnly = true },
			args: []string{"--read-only=false"}, want: func(s *api.ServiceSpec) { s.ReadOnly = false }},
		{name: "update leaves read-only alone", update: true, from: func(s *api.ServiceSpec) { s.ReadOnly = true },
			args: []string{"--replicas", "1"}, want: func(s *api.ServiceSpec) { s.ReadOnly = true }},
		{name: "caps normalized", args: []string{"--cap-add", "net_admin", "--cap-add", "CAP_SYS_TIME", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN"},
			want: func(s *api.ServiceSpec) {
				s.CapAdd, s.CapDrop = []string{"CAP_NET_ADMIN", "CAP_SYS_TIME"}, []string{"ALL"}
			}},
		{name: "unknown cap", args: []string{"--cap-add", "FLY"}, err: `--cap-add: unknown capability "FLY"`},
		{name: "unknown dropped cap", args: []string{"--cap-drop", "NET_RAWW"}, err: `--cap-drop: unknown capability "NET_RAWW"`},
		{name: "update cap-add undoes a drop", update: true,
			from: func(s *api.ServiceSpec) {
				s.CapAdd, s.CapDrop = []string{"CAP_SYS_TIME"}, []string{"CAP_NET_RAW", "CAP_CHOWN"}
			},
			args: []string{"--cap-add", "NET_RAW", "--cap-drop", "SYS_TIME"},
			want: func(s *api.ServiceSpec) {
				s.CapAdd, s.CapDrop = []string{"CAP_NET_RAW"}, []string{"CAP_CHOWN", "CAP_SYS_TIME"}
			}},
		{name: "sysctls", args: []string{"--sysctl", "net.core.somaxconn=1024", "--sysctl", "kernel.shmmax = 1"},
			want: func(s *api.ServiceSpec) {
				s.Sysctls = map[string]string{"net.core.somaxconn": "1024", "kernel.shmmax": "1"}
			}},
		{name: "host sysctl", args: []string{"--sysctl", "vm.swappiness=1"}, err: `--sysctl: "vm.swappiness" is not namespaced`},
		{name: "sysctl without value", args: []string{"--sysctl", "net.core.somaxconn"}, err: "--sysctl: invalid KEY=VALUE"},
		{name: "update sysctls", update: true,
			from: func(s *api.ServiceSpec) {
				s.Sysctls = map[string]string{"net.core.somaxconn": "1024", "kernel.sem": "1 2 3 4"}
			},
			args: []string{"--sysctl-rm", "kernel.sem", "--sysctl-add", "net.ipv4.ip_forward=1"},
			want: func(s *api.ServiceSpec) {
				s.Sysctls = map[string]string{"net.core.somaxconn": "1024", "net.ipv4.ip_forward": "1"}
			}},
		{name: "update removes the last sysctl", update: true,
			from: func(s *api.ServiceSpec) { s.Sysctls = map[string]string{"kernel.sem": "1 2 3 4"} },
			args: []string{"--sysctl-rm", "kernel.sem"}, want: func(s *api.ServiceSpec) { s.Sysctls = nil }},
		{name: "ulimits", args: []string{"--ulimit", "nproc=65535", "--ulimit", "nofile=1024:2048", "--ulimit", "nproc=100:200"},
			want: func(s *api.ServiceSpec) {
				s.Ulimits = []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "nproc", Soft: 100, Hard: 200}}
			}},
		{name: "ulimit soft above hard", args: []string{"--ulimit", "nofile=2048:1024"}, err: "--ulimit: \"nofile=2048:1024\": nofile: soft limit 2048 above the hard limit 1024"},
		{name: "unknown ulimit", args: []string{"--ulimit", "files=1"}, err: `unknown limit "files"`},
		{name: "update ulimits", update: true,
			from: func(s *api.ServiceSpec) {
				s.Ulimits = []api.Ulimit{{Name: "core", Soft: 0, Hard: 0}, {Name: "nofile", Soft: 1, Hard: 2}}
			},
			args: []string{"--ulimit-rm", "core", "--ulimit-add", "nofile=10:20"},
			want: func(s *api.ServiceSpec) { s.Ulimits = []api.Ulimit{{Name: "nofile", Soft: 10, Hard: 20}} }},
		{name: "stop signal", args: []string{"--stop-signal", "quit"}, want: func(s *api.ServiceSpec) { s.StopSignal = "SIGQUIT" }},
		{name: "stop signal number", args: []string{"--stop-signal", "10"}, want: func(s *api.ServiceSpec) { s.StopSignal = "SIGUSR1" }},
		{name: "unknown stop signal", args: []string{"--stop-signal", "SIGFOO"}, err: `--stop-signal: unknown signal "SIGFOO"`},
		{name: "update stop signal back to the default", update: true, from: func(s *api.ServiceSpec) { s.StopSignal = "SIGQUIT" },
			args: []string{"--stop-signal", ""}, want: func(s *api.ServiceSpec) { s.StopSignal = "" }},
		{name: "hostname", args: []string{"--hostname", "app-host"}, want: func(s *api.ServiceSpec) { s.Hostname = "app-host" }},
		{name: "bad hostname", args: []string{"--hostname", "app host"}, err: `--hostname: "app host": character ' ' not allowed`},
		{name: "update hostname back to the task name", update: true, from: func(s *api.ServiceSpec) { s.Hostname = "x" },
			args: []string{"--hostname", ""}, want: func(s *api.ServiceSpec) { s.Hostname = "" }},
		{name: "hosts", args: []string{"--add-host", "db:10.0.0.5", "--add-host", "v6=2001:db8::1", "--add-host", "db:10.0.0.5"},
			want: func(s *api.ServiceSpec) { s.ExtraHosts = []string{"db:10.0.0.5", "v6:2001:db8::1"} }},
		{name: "bad host", args: []string{"--add-host", "db"}, err: `--add-host: "db": want HOST:IP`},
		{name: "update hosts", update: true, from: func(s *api.ServiceSpec) { s.ExtraHosts = []string{"db:10.0.0.5", "db:10.0.0.6", "cache:10.0.0.7"} },
			args: []string{"--host-rm", "db", "--host-add", "mq:10.0.0.8"},
			want: func(s *api.ServiceSpec) { s.ExtraHosts = []string{"cache:10.0.0.7", "mq:10.0.0.8"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := DefaultSpec()
			if tt.from != nil {
				tt.from(&from)
			}
			got, err := applyArgs(t, tt.update, from, tt.args...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := from
			want.Replicas = got.Replicas
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}
