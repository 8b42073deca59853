package servicespec

import (
	"errors"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestValidateContainerOptions: the container options Validate takes, and
// those it refuses naming the field (what runc would choke on fails the
// create, not every task).
func TestValidateContainerOptions(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*api.ServiceSpec)
		want   string // substring of the error; "" = valid
	}{
		{"read only", func(s *api.ServiceSpec) { s.ReadOnly = true }, ""},
		{"caps", func(s *api.ServiceSpec) {
			s.CapAdd, s.CapDrop = []string{"NET_ADMIN", "CAP_SYS_TIME", "all"}, []string{"ALL", "cap_chown"}
		}, ""},
		{"unknown cap_add", func(s *api.ServiceSpec) { s.CapAdd = []string{"NET_ADMIN", "NET_ADMINN"} }, `cap_add[1]: unknown capability "NET_ADMINN"`},
		{"unknown cap_drop", func(s *api.ServiceSpec) { s.CapDrop = []string{""} }, `cap_drop[0]: unknown capability ""`},
		{"sysctls", func(s *api.ServiceSpec) {
			s.Sysctls = map[string]string{"net.core.somaxconn": "1024", "kernel.shmmax": "1", "fs.mqueue.msg_max": "10"}
		}, ""},
		{"host sysctl", func(s *api.ServiceSpec) { s.Sysctls = map[string]string{"vm.swappiness": "1"} }, `sysctls: "vm.swappiness" is not namespaced`},
		{"host-only net sysctl", func(s *api.ServiceSpec) { s.Sysctls = map[string]string{"net.core.netdev_max_backlog": "1"} }, `sysctls: "net.core.netdev_max_backlog" is not namespaced`},
		{"empty sysctl value", func(s *api.ServiceSpec) { s.Sysctls = map[string]string{"net.core.somaxconn": ""} }, "want one non-empty line"},
		{"ulimits", func(s *api.ServiceSpec) {
			s.Ulimits = []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "core", Soft: -1, Hard: -1}}
		}, ""},
		{"soft above hard", func(s *api.ServiceSpec) { s.Ulimits = []api.Ulimit{{Name: "nofile", Soft: 2048, Hard: 1024}} }, "ulimits[0]: nofile: soft limit 2048 above the hard limit 1024"},
		{"unknown ulimit", func(s *api.ServiceSpec) { s.Ulimits = []api.Ulimit{{Name: "files", Soft: 1, Hard: 1}} }, `ulimits[0]: unknown limit "files"`},
		{"ulimit twice", func(s *api.ServiceSpec) {
			s.Ulimits = []api.Ulimit{{Name: "nproc", Soft: 1, Hard: 1}, {Name: "nproc", Soft: 2, Hard: 2}}
		}, "ulimits[1]: nproc given twice"},
		{"unlimited nofile", func(s *api.ServiceSpec) { s.Ulimits = []api.Ulimit{{Name: "nofile", Soft: -1, Hard: -1}} }, "at most 1048576"},
		{"stop signal", func(s *api.ServiceSpec) { s.StopSignal = "SIGQUIT" }, ""},
		{"unknown stop signal", func(s *api.ServiceSpec) { s.StopSignal = "SIGFOO" }, `stop_signal: unknown signal "SIGFOO"`},
		{"stop signal not forwarded", func(s *api.ServiceSpec) { s.StopSignal = "SIGSTOP" }, `stop_signal: signal "SIGSTOP": the container's init (PID 1) does not pass it on`},
		{"hostname", func(s *api.ServiceSpec) { s.Hostname = "app-host" }, ""},
		{"bad hostname", func(s *api.ServiceSpec) { s.Hostname = "app_host" }, `hostname "app_host": character '_' not allowed`},
		{"hostname template", func(s *api.ServiceSpec) { s.Hostname = "{{.Task.Slot}}" }, "templates are not supported"},
		{"extra hosts", func(s *api.ServiceSpec) { s.ExtraHosts = []string{"db:10.0.0.5", "v6:2001:db8::1"} }, ""},
		{"extra host without address", func(s *api.ServiceSpec) { s.ExtraHosts = []string{"db:10.0.0.5", "db"} }, `extra_hosts[1]: "db": want HOST:IP`},
		{"extra host bad address", func(s *api.ServiceSpec) { s.ExtraHosts = []string{"db:10.0.0.500"} }, `extra_hosts[0]: "db:10.0.0.500": address "10.0.0.500"`},
		{"log options", func(s *api.ServiceSpec) {
			s.LogDriver, s.LogOptions = "json-file", map[string]string{"max-size": "10m", "max-file": "3"}
		}, ""},
		{"log driver none", func(s *api.ServiceSpec) { s.LogDriver = "none" }, ""},
		{"log driver syslog", func(s *api.ServiceSpec) { s.LogDriver = "syslog" }, `logging: unsupported log driver "syslog": Shoal supports json-file, local, none`},
		{"log option compress", func(s *api.ServiceSpec) { s.LogOptions = map[string]string{"compress": "true"} }, `logging: unsupported log option "compress"`},
		{"log max-size too small", func(s *api.ServiceSpec) { s.LogOptions = map[string]string{"max-size": "1k"} }, "max-size 1k: must be between 4k and 1g"},
		{"log unbounded total", func(s *api.ServiceSpec) { s.LogOptions = map[string]string{"max-size": "1g", "max-file": "100"} }, "exceed the 10 GiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := api.ServiceSpec{Name: "web", Image: "nginx"}
			tt.mutate(&s)
			err := Validate(s)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrInvalidSpec containing %q", err, tt.want)
			}
		})
	}
}
