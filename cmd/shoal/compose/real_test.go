package compose

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// The corpus under testdata/real is compose files as projects write them
// for docker stack deploy and docker compose: each must keep meaning the
// same specs, report the same ignored keys, and the ones under refused/
// must keep failing with the key named.

// st is a service of stack st with its changes from the defaults.
func st(name, image string, f func(s *api.ServiceSpec)) api.ServiceSpec {
	s := stackSpec("st", name, image)
	if f != nil {
		f(&s)
	}
	return s
}

func TestComposeRealFiles(t *testing.T) {
	tests := []struct {
		dir      string
		files    []string
		profiles []string
		want     []api.ServiceSpec
		ignored  []string
		networks []StackNetwork
		objects  []string // Name of each secret or config, external marked "(ext)"
	}{
		{
			dir: "voting", files: []string{"docker-compose.yml"},
			want: []api.ServiceSpec{
				st("api", "example/api:latest", func(s *api.ServiceSpec) {
					s.Replicas = 3
					s.Command = []string{"gunicorn", "-b", "0.0.0.0:5000", "app:app"}
					s.Env = []string{"DATABASE_URL=postgres://app:app@db:5432/app", "REDIS_URL=redis://redis:6379/0"}
					s.Resources.Limits = api.Resources{NanoCPUs: 500_000_000, MemoryBytes: 512 << 20}
					s.Resources.Reservations = api.Resources{NanoCPUs: 250_000_000, MemoryBytes: 128 << 20}
					s.Healthcheck = &api.HealthConfig{Test: []string{"CMD", "curl", "-f", "http://localhost:5000/health"},
						Interval: 30 * time.Second, Timeout: 10 * time.Second, StartPeriod: 40 * time.Second, Retries: 3}
					s.Networks = []string{"st_backend", "st_frontend"}
				}),
				st("db", "postgres:15-alpine", func(s *api.ServiceSpec) {
					s.Env = []string{"POSTGRES_DB=app", "POSTGRES_PASSWORD=app", "POSTGRES_USER=app"}
					s.Constraints = []string{"node.role==manager"}
					s.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "pg_isready -U app"}, Interval: 10 * time.Second, Timeout: 5 * time.Second, Retries: 5}
					s.Mounts = []api.Mount{{Type: api.MountVolume, Source: "st_db-data", Target: "/var/lib/postgresql/data"}}
					s.Networks = []string{"st_backend"}
				}),
				st("redis", "redis:alpine", func(s *api.ServiceSpec) { s.Networks = []string{"st_backend"} }),
				st("web", "example/web:latest", func(s *api.ServiceSpec) {
					s.Replicas = 2
					s.Env = []string{"API_URL=http://api:5000", "NODE_ENV=production"}
					s.Ports = []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}}
					s.RestartPolicy.Condition = api.RestartOnFailure
					s.UpdateConfig.Parallelism, s.UpdateConfig.Delay, s.UpdateConfig.Order = 2, 10*time.Second, api.OrderStartFirst
					s.Networks = []string{"st_frontend"}
				}),
			},
			// build is docker stack's "Ignoring unsupported options: build".
			ignored:  []string{"services.api.build", "services.api.depends_on", "services.web.build", "services.web.depends_on"},
			networks: []StackNetwork{{Network: api.Network{Name: "st_backend", Labels: stLabel}}, {Network: api.Network{Name: "st_frontend", Labels: stLabel}}},
		},
		{
			dir: "wordpress", files: []string{"docker-compose.yml"},
			want: []api.ServiceSpec{
				st("db", "mysql:5.7", func(s *api.ServiceSpec) {
					s.Env = []string{"MYSQL_DATABASE=wordpress", "MYSQL_PASSWORD_FILE=/run/secrets/db_password", "MYSQL_ROOT_PASSWORD_FILE=/run/secrets/db_root_password", "MYSQL_USER=wordpress"}
					s.Secrets = []api.FileReference{{Source: "st_db_root_password", Target: "/run/secrets/db_root_password"}, {Source: "st_db_password", Target: "/run/secrets/db_password"}}
					s.Mounts = []api.Mount{{Type: api.MountVolume, Source: "st_db_data", Target: "/var/lib/mysql"}}
				}),
				st("wordpress", "wordpress:latest", func(s *api.ServiceSpec) {
					s.Env = []string{"WORDPRESS_DB_HOST=db:3306", "WORDPRESS_DB_PASSWORD_FILE=/run/secrets/db_password", "WORDPRESS_DB_USER=wordpress"}
					s.Ports = []api.PortConfig{{Published: 8000, Target: 80, Protocol: "tcp"}}
					s.Secrets = []api.FileReference{{Source: "st_db_password", Target: "/run/secrets/db_password"}}
					s.Mounts = []api.Mount{{Type: api.MountVolume, Source: "st_wp_content", Target: "/var/www/html/wp-content"}}
				}),
			},
			// restart: always is the restart policy (any, the default).
			ignored: []string{"services.wordpress.container_name", "services.wordpress.depends_on"},
			objects: []string{"st_db_password", "st_db_root_password"},
		},
		{
			// A port without a published one: the cluster picks it
			// (30000-32767, as Swarm); once refused.
			dir: "autoport", files: []string{"docker-compose.yml"},
			want: []api.ServiceSpec{
				st("redis", "redis:alpine", func(s *api.ServiceSpec) {
					s.Ports = []api.PortConfig{{Target: 6379, Protocol: "tcp"}}
				}),
			},
			ignored: []string{},
		},
		{
			dir: "anchors", files: []string{"docker-compose.yml"},
			want: []api.ServiceSpec{
				st("scheduler", "example/worker:1.4", func(s *api.ServiceSpec) {
					s.Command = []string{"scheduler"}
					s.Env = []string{"LOG_FORMAT=text", "TZ=Europe/Berlin"}
					s.Resources.Limits.MemoryBytes = 256 << 20
					s.RestartPolicy.Condition, s.RestartPolicy.MaxAttempts = api.RestartOnFailure, 5
					s.LogDriver, s.LogOptions = "json-file", map[string]string{"max-size": "10m", "max-file": "3"}
				}),
				st("worker", "example/worker:1.4", func(s *api.ServiceSpec) {
					s.Replicas = 2
					s.Command = []string{"worker", "--queue", "default"}
					s.Env = []string{"LOG_FORMAT=json", "TZ=Europe/Berlin"}
					s.Resources.Limits.MemoryBytes = 256 << 20
					s.RestartPolicy.Condition, s.RestartPolicy.MaxAttempts = api.RestartOnFailure, 5
					s.LogDriver, s.LogOptions = "json-file", map[string]string{"max-size": "10m", "max-file": "3"}
				}),
			},
			// restart: gives way to deploy.restart_policy, as in docker.
			ignored: []string{},
		},
		{
			dir: "interp", files: []string{"docker-compose.yml"},
			want: []api.ServiceSpec{
				st("app", "registry.example.com/app:2.1.0", func(s *api.ServiceSpec) {
					s.Replicas = 2
					s.Env = []string{"DB_PASSWORD=fromdotenv", "LITERAL=$HOME", "LOG_LEVEL=info", "REPLICA_HINT=1"}
					s.Ports = []api.PortConfig{{Published: 8088, Target: 8080, Protocol: "tcp"}}
					s.Resources.Limits.MemoryBytes = 256 << 20
				}),
			},
		},
		{
			dir: "deploy", files: []string{"docker-compose.yml"},
			want: []api.ServiceSpec{
				st("agent", "portainer/agent:2.19.4", func(s *api.ServiceSpec) {
					s.Mode, s.Replicas = api.ModeGlobal, 0
					s.Constraints = []string{"node.platform.os==linux"}
					s.Mounts = []api.Mount{{Type: api.MountBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"},
						{Type: api.MountBind, Source: "/var/lib/docker/volumes", Target: "/var/lib/docker/volumes"}}
				}),
				st("app", "traefik/whoami:v1.10", func(s *api.ServiceSpec) {
					s.Replicas = 6
					// One label set: deploy's win over the container's.
					s.Labels["com.example.container"] = "no"
					s.Labels["traefik.enable"] = "true"
					s.Labels["traefik.http.routers.whoami.rule"] = "Host(`whoami.example.com`)"
					s.Resources.Limits = api.Resources{NanoCPUs: 500_000_000, MemoryBytes: 50 << 20, Pids: 200}
					s.Resources.Reservations = api.Resources{NanoCPUs: 250_000_000, MemoryBytes: 20 << 20}
					s.Constraints = []string{"node.role==worker", "node.labels.region!=eu-west"}
					s.RestartPolicy = api.RestartPolicy{Condition: api.RestartOnFailure, Delay: 5 * time.Second, MaxAttempts: 3, Window: 2 * time.Minute}
					s.UpdateConfig = api.UpdateConfig{Parallelism: 2, Delay: 10 * time.Second, Order: api.OrderStartFirst,
						FailureAction: api.FailureRollback, Monitor: time.Minute, MaxFailureRatio: 0.3}
					s.RollbackConfig = api.UpdateConfig{Parallelism: 1, Order: api.OrderStopFirst, FailureAction: api.FailurePause, Monitor: 10 * time.Second}
					s.MaxReplicasPerNode = 2
					s.PlacementPreferences = []api.PlacementPreference{{Spread: "node.labels.zone"}}
				}),
				st("dns", "example/dnsrr:1", func(s *api.ServiceSpec) { s.EndpointMode = api.EndpointDNSRR }),
			},
		},
		{
			dir: "ports", files: []string{"docker-compose.yml"},
			want: []api.ServiceSpec{
				st("edge", "traefik:v2.11", func(s *api.ServiceSpec) {
					s.Ports = []api.PortConfig{
						{Published: 8080, Target: 80, Protocol: "tcp"},
						{Published: 53, Target: 53, Protocol: "udp"},
						{Published: 9000, Target: 9000, Protocol: "tcp"},
						{Published: 9001, Target: 9001, Protocol: "tcp"},
						{Published: 9002, Target: 9002, Protocol: "tcp"},
						{Published: 8443, Target: 443, Protocol: "tcp"},
						{Published: 8081, Target: 8081, Protocol: "tcp"},
						{Published: 8082, Target: 80, Protocol: "tcp", Mode: api.PublishHost},
					}
				}),
			},
			ignored: []string{"services.edge.expose"},
		},
		{
			dir: "health", files: []string{"docker-compose.yml"},
			want: []api.ServiceSpec{
				st("cmd", "example/c:1", func(s *api.ServiceSpec) {
					s.Healthcheck = &api.HealthConfig{Test: []string{"CMD", "wget", "-qO-", "http://localhost/"}, Interval: 5 * time.Second}
				}),
				st("cmdshell", "example/b:1", func(s *api.ServiceSpec) {
					s.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "curl -f http://localhost/ || exit 1"}}
				}),
				st("none", "example/e:1", func(s *api.ServiceSpec) { s.Healthcheck = &api.HealthConfig{Test: []string{"NONE"}} }),
				st("off", "example/d:1", func(s *api.ServiceSpec) { s.Healthcheck = &api.HealthConfig{Test: []string{"NONE"}} }),
				st("shell", "example/a:1", func(s *api.ServiceSpec) {
					s.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "curl -f http://localhost/ || exit 1"},
						Interval: 90 * time.Second, Timeout: 10 * time.Second, StartPeriod: 40 * time.Second, Retries: 3}
				}),
			},
			ignored: []string{"services.cmd.healthcheck.start_interval"},
		},
		{
			dir: "options", files: []string{"docker-compose.yml"}, profiles: []string{"extra"},
			want: []api.ServiceSpec{
				st("app", "example/app:3", func(s *api.ServiceSpec) {
					s.Entrypoint = []string{"/docker-entrypoint.sh"}
					s.Command = []string{"--config", "/etc/app/app.yml"}
					// env_file under environment:, listed without a value
					// taken from the caller's environment.
					s.Env = []string{"APP_SECRET=abc", "EMPTY=", "FROM_ENV=x", "MODE=prod"}
					s.Workdir, s.User = "/srv/app", "1000:1000"
					s.StopGracePeriod = 90 * time.Second
					s.ReadOnly = true
					s.StopSignal = "SIGQUIT"
					s.Hostname = "app-host"
					s.ExtraHosts = []string{"somehost:162.242.195.82"}
					s.CapAdd, s.CapDrop = []string{"CAP_NET_ADMIN"}, []string{"ALL"}
					s.Sysctls = map[string]string{"net.core.somaxconn": "1024"}
					s.Ulimits = []api.Ulimit{{Name: "nofile", Soft: 20000, Hard: 40000}, {Name: "nproc", Soft: 65535, Hard: 65535}}
					s.LogDriver, s.LogOptions = "local", map[string]string{"max-size": "20m", "max-file": "5"}
				}),
				st("shellform", "example/app:3", func(s *api.ServiceSpec) {
					s.Entrypoint = []string{"/bin/sh", "-c"}
					s.Command = []string{`echo "hello world" && sleep 1`}
				}),
			},
			// What Swarm runs and Shoal's spec cannot say yet, and what
			// docker stack ignores too (network_mode, privileged).
			ignored: []string{"services.app.dns",
				"services.app.network_mode",
				"services.app.privileged",
				"services.app.tty"},
		},
		{
			dir: "override", files: []string{"docker-compose.yml", "docker-compose.prod.yml"},
			want: []api.ServiceSpec{
				st("web", "example/web:1.2", func(s *api.ServiceSpec) {
					s.Replicas = 4
					s.Env = []string{"KEEP=1", "LEVEL=warn"}
					s.Ports = []api.PortConfig{{Published: 80, Target: 80, Protocol: "tcp"}, {Published: 443, Target: 443, Protocol: "tcp"}}
					s.Resources.Limits = api.Resources{NanoCPUs: 1_500_000_000, MemoryBytes: 128 << 20}
				}),
			},
		},
		{
			dir: "storage", files: []string{"docker-compose.yml"},
			want: []api.ServiceSpec{
				st("app", "example/app:1", func(s *api.ServiceSpec) {
					s.Secrets = []api.FileReference{{Source: "st_tls_key", Target: "server.key", Mode: 0o400, UID: 103, GID: 103},
						{Source: "prod_api_token", Target: "/run/secrets/api_token"}}
					s.Configs = []api.FileReference{{Source: "st_app_conf", Target: "/etc/app/app.conf", Mode: 0o440},
						{Source: "nginx_conf", Target: "/nginx_conf"}}
					s.Mounts = []api.Mount{
						{Type: api.MountVolume, Source: "st_data", Target: "/data"},
						{Type: api.MountBind, Source: "/etc/app", Target: "/etc/app", ReadOnly: true},
						{Type: api.MountTmpfs, Target: "/tmp", TmpfsSize: 100 << 20},
						{Type: api.MountVolume, Source: "shared-data", Target: "/mnt/ext"},
						{Type: api.MountTmpfs, Target: "/run"},
					}
					s.Networks = []string{"st_private", "st_public"}
					s.NetworkAliases = map[string][]string{"st_public": {"app-alias"}}
				}),
			},
			ignored: []string{"services.app.networks.private.ipv4_address"},
			networks: []StackNetwork{
				{Network: api.Network{Name: "st_private", Subnet: "172.30.0.0/24", Internal: true, Labels: stLabel}},
				{Network: api.Network{Name: "st_public", Attachable: true, Labels: stLabel}},
			},
			objects: []string{"st_app_conf", "nginx_conf(ext)", "prod_api_token(ext)", "st_tls_key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			dir := "testdata/real/" + tt.dir
			files := readCompose(t, dir, tt.files)
			in := Input{Files: files, WorkingDir: dir, Env: map[string]string{"FROM_ENV": "x"}, Profiles: tt.profiles, Name: "st"}
			p, ignored, err := Load(context.Background(), in)
			if err != nil {
				t.Fatal(LocateError(err, files))
			}
			got, err := StackSpecs("st", p)
			if err != nil {
				t.Fatal(LocateError(err, files))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d services, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range tt.want {
				if !reflect.DeepEqual(got[i], tt.want[i]) {
					t.Errorf("service %s:\n got %+v\nwant %+v", tt.want[i].Name, got[i], tt.want[i])
				}
			}
			if !reflect.DeepEqual(ignored, tt.ignored) && len(ignored)+len(tt.ignored) > 0 {
				t.Errorf("ignored %q, want %q", ignored, tt.ignored)
			}
			nets, err := StackNetworks("st", p)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(nets, tt.networks) {
				t.Errorf("networks %+v, want %+v", nets, tt.networks)
			}
			objs, errs := StackObjects("st", p)
			if len(errs) > 0 {
				t.Fatal(errors.Join(errs...))
			}
			var names []string
			for _, o := range objs {
				n := o.Name
				if o.External {
					n += "(ext)"
				}
				names = append(names, n)
			}
			if !reflect.DeepEqual(names, tt.objects) {
				t.Errorf("secrets and configs %q, want %q", names, tt.objects)
			}
		})
	}
}

// stLabel is the label of a network stack st created.
var stLabel = map[string]string{StackLabel: "st"}

// TestComposeRealRefused: files that would run something else than they
// say are refused, naming the file, the line and the key.
func TestComposeRealRefused(t *testing.T) {
	for file, want := range map[string]string{
		"loopback-port.yml":  `loopback-port.yml:6: services.pgadmin.ports[0]: host_ip 127.0.0.1`,
		"shell-command.yml":  `shell-command.yml:4: services.app.command: "python manage.py migrate && python manage.py runserver 0.0.0.0:8000": no shell runs this string`,
		"nfs-volume.yml":     `nfs-volume.yml:9: volumes.shared.driver_opts: not supported`,
		"build-only.yml":     `build-only.yml:3: services.app.build: building images is not supported`,
		"syslog-logging.yml": `syslog-logging.yml:4: services.app.logging: unsupported log driver "syslog": Shoal supports json-file, local, none`,
	} {
		t.Run(file, func(t *testing.T) {
			const dir = "testdata/real/refused"
			files := readCompose(t, dir, []string{file})
			p, _, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "st"})
			if err == nil {
				_, err = StackSpecs("st", p)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if err = LocateError(err, files); !errors.Is(err, ErrBadCompose) || !strings.Contains(err.Error(), want) {
				t.Fatalf("error\n%v\nwant %q", err, want)
			}
		})
	}
}
