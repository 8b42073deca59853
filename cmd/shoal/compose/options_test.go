package compose

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestComposeContainerOptions: the container options of a compose
// service land in its spec, none reported as ignored, and bad values are
// refused naming the key.
func TestComposeContainerOptions(t *testing.T) {
	runKeyCases(t, []keyCase{
		{
			name: "read_only",
			yaml: `
services:
  app:
    image: busybox
    read_only: true
`,
			got:     func(s api.ServiceSpec) any { return s.ReadOnly },
			want:    true,
			ignored: []string{},
		},
		{
			name: "cap_add and cap_drop, normalized",
			yaml: `
services:
  app:
    image: busybox
    cap_add: [net_admin, CAP_SYS_TIME]
    cap_drop: [ALL]
`,
			got:     func(s api.ServiceSpec) any { return [][]string{s.CapAdd, s.CapDrop} },
			want:    [][]string{{"CAP_NET_ADMIN", "CAP_SYS_TIME"}, {"ALL"}},
			ignored: []string{},
		},
		{
			name: "sysctls, list and map",
			yaml: `
services:
  app:
    image: busybox
    sysctls:
      net.core.somaxconn: 1024
      kernel.sem: "250 32000 100 128"
`,
			got:     func(s api.ServiceSpec) any { return s.Sysctls },
			want:    map[string]string{"net.core.somaxconn": "1024", "kernel.sem": "250 32000 100 128"},
			ignored: []string{},
		},
		{
			name: "sysctls list syntax",
			yaml: `
services:
  app:
    image: busybox
    sysctls: ["net.ipv4.ip_forward=1"]
`,
			got:     func(s api.ServiceSpec) any { return s.Sysctls },
			want:    map[string]string{"net.ipv4.ip_forward": "1"},
			ignored: []string{},
		},
		{
			name: "host sysctl",
			yaml: `
services:
  app:
    image: busybox
    sysctls:
      vm.swappiness: 10
`,
			err: []string{"services.app.sysctls.vm.swappiness", `"vm.swappiness" is not namespaced`},
		},
		{
			name: "ulimits, single and soft/hard",
			yaml: `
services:
  app:
    image: busybox
    ulimits:
      nproc: 65535
      nofile:
        soft: 20000
        hard: 40000
`,
			got:     func(s api.ServiceSpec) any { return s.Ulimits },
			want:    []api.Ulimit{{Name: "nofile", Soft: 20000, Hard: 40000}, {Name: "nproc", Soft: 65535, Hard: 65535}},
			ignored: []string{},
		},
		{
			name: "ulimit soft above hard",
			yaml: `
services:
  app:
    image: busybox
    ulimits:
      nofile:
        soft: 4000
        hard: 2000
`,
			err: []string{"services.app.ulimits.nofile", "soft limit 4000 above the hard limit 2000"},
		},
		{
			name: "unknown ulimit",
			yaml: `
services:
  app:
    image: busybox
    ulimits:
      files: 10
`,
			err: []string{"services.app.ulimits.files", `unknown limit "files"`},
		},
		{
			name: "stop_signal",
			yaml: `
services:
  app:
    image: nginx
    stop_signal: quit
`,
			got:     func(s api.ServiceSpec) any { return s.StopSignal },
			want:    "SIGQUIT",
			ignored: []string{},
		},
		{
			name: "stop_signal not forwarded",
			yaml: `
services:
  app:
    image: nginx
    stop_signal: SIGSTOP
`,
			err: []string{"services.app.stop_signal", "does not pass it on"},
		},
		{
			name: "hostname",
			yaml: `
services:
  app:
    image: nginx
    hostname: app-host
`,
			got:     func(s api.ServiceSpec) any { return s.Hostname },
			want:    "app-host",
			ignored: []string{},
		},
		{
			name: "bad hostname",
			yaml: `
services:
  app:
    image: nginx
    hostname: app_host
`,
			err: []string{"services.app.hostname", `"app_host": character '_' not allowed`},
		},
		{
			name: "extra_hosts, list syntax",
			yaml: `
services:
  app:
    image: nginx
    extra_hosts:
      - "somehost:162.242.195.82"
      - "otherhost=50.31.209.229"
      - "v6:[2001:db8::1]"
`,
			got:     func(s api.ServiceSpec) any { return s.ExtraHosts },
			want:    []string{"otherhost:50.31.209.229", "somehost:162.242.195.82", "v6:2001:db8::1"},
			ignored: []string{},
		},
		{
			name: "extra_hosts, map syntax",
			yaml: `
services:
  app:
    image: nginx
    extra_hosts:
      db: 10.0.0.5
`,
			got:     func(s api.ServiceSpec) any { return s.ExtraHosts },
			want:    []string{"db:10.0.0.5"},
			ignored: []string{},
		},
		{
			name: "extra_hosts bad address",
			yaml: `
services:
  app:
    image: nginx
    extra_hosts: ["db:10.0.0"]
`,
			err: []string{"services.app.extra_hosts", `address "10.0.0"`},
		},
		{
			name: "init: true is what every Shoal container has",
			yaml: `
services:
  app:
    image: nginx
    init: true
`,
			got:     func(s api.ServiceSpec) any { return s.Name },
			want:    "s_app",
			ignored: []string{},
		},
		{
			name: "init: false cannot be honoured: reported",
			yaml: `
services:
  app:
    image: nginx
    init: false
`,
			got:     func(s api.ServiceSpec) any { return s.Name },
			want:    "s_app",
			ignored: []string{"services.app.init"},
		},
		{
			name: "unknown capability",
			yaml: `
services:
  app:
    image: busybox
    cap_add: [NET_ADMIN, FLY]
`,
			err: []string{"services.app.cap_add[1]", `unknown capability "FLY"`},
		},
	})
}
