package compose

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// readCompose loads files of dir as `stack deploy` would, with env as the
// caller's environment.
func readCompose(t *testing.T, dir string, names []string) []types.ConfigFile {
	t.Helper()
	var files []types.ConfigFile
	for _, n := range names {
		path, err := filepath.Abs(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, types.ConfigFile{Filename: path, Content: data})
	}
	return files
}

// stackSpec is what a compose service with only an image becomes.
func stackSpec(stack, name, image string) api.ServiceSpec {
	s := specflags.DefaultSpec()
	s.Name, s.Image = stack+"_"+name, image
	s.Labels = map[string]string{StackLabel: stack}
	return s
}

// shopSpecs are the services of testdata/shop/compose.yml with its
// .env, TZ=UTC in the environment and no profile.
func shopSpecs() map[string]api.ServiceSpec {
	api_ := stackSpec("shop", "api", "shop/api:2.3.1")
	api_.Replicas = 3
	api_.Command = []string{"./api", "--port", "9000"}
	// env_file values, beaten by environment: (LOG_LEVEL), plus the
	// extended service's REGION.
	api_.Env = []string{"CACHE_URL=redis://cache:6379", "DB_HOST=db", "LOG_LEVEL=info", "REGION=eu"}
	api_.Workdir, api_.User = "/srv", "app"
	api_.StopGracePeriod = 20 * time.Second
	api_.Ports = []api.PortConfig{{Published: 9000, Target: 9000, Protocol: "tcp"}}
	api_.Resources.Limits = api.Resources{NanoCPUs: 500_000_000, MemoryBytes: 128 << 20}
	api_.Resources.Reservations = api.Resources{NanoCPUs: 100_000_000, MemoryBytes: 64 << 20}
	api_.Healthcheck = &api.HealthConfig{Test: []string{"CMD", "/srv/healthz"}, Interval: 15 * time.Second}

	cache := stackSpec("shop", "cache", "redis:7-alpine")
	cache.Mode, cache.Replicas = api.ModeGlobal, 0
	cache.Entrypoint = []string{"redis-server"}
	cache.Command = []string{"--save", "", "--appendonly", "no"}
	cache.User, cache.Workdir = "999:999", "/data"
	cache.Ports = []api.PortConfig{{Published: 6379, Target: 6379, Protocol: "tcp"}}
	cache.Resources.Limits.Pids = 100

	db := stackSpec("shop", "db", "postgres:16")
	db.Env = []string{"POSTGRES_DB=shop", "POSTGRES_PASSWORD_FILE=/run/secrets/db_password"}
	db.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "pg_isready -U postgres"}, Interval: 5 * time.Second}
	db.StopGracePeriod = time.Minute
	db.Constraints = []string{"node.role==manager"}
	db.Mounts = []api.Mount{{Type: api.MountVolume, Source: "shop_db_data", Target: "/var/lib/postgresql/data"}}
	db.Networks = []string{"shop_back"}

	web := stackSpec("shop", "web", "nginx:1.25")
	web.Replicas = 2
	web.Command = []string{"nginx", "-g", "daemon off;"}
	web.Env = []string{"API_URL=http://api:9000", "TZ=UTC"}
	web.Labels["com.example.tier"] = "front"
	web.Labels["com.example.team"] = "shop"
	web.Ports = []api.PortConfig{{Published: 8000, Target: 80, Protocol: "tcp"}, {Published: 8443, Target: 443, Protocol: "tcp"}}
	web.Healthcheck = &api.HealthConfig{Test: []string{"CMD-SHELL", "wget -q -O /dev/null http://localhost/"},
		Interval: 10 * time.Second, Timeout: 2 * time.Second, StartPeriod: 5 * time.Second, Retries: 3}
	web.UpdateConfig.Delay, web.UpdateConfig.Order, web.UpdateConfig.FailureAction = 5*time.Second, api.OrderStartFirst, api.FailureRollback
	web.RollbackConfig.Parallelism = 0
	web.RestartPolicy = api.RestartPolicy{Condition: api.RestartOnFailure, Delay: 2 * time.Second, MaxAttempts: 3, Window: time.Minute}
	web.Constraints = []string{"node.labels.zone==a"}
	web.LogDriver = "json-file"

	api_.Secrets = []api.FileReference{{Source: "shop_api_key", Target: "/run/secrets/api_key"}}
	return map[string]api.ServiceSpec{"api": api_, "cache": cache, "db": db, "web": web}
}

// shopIgnored are the keys of the shop files Shoal reports and ignores.
var shopIgnored = []string{"services.web.depends_on"}

func TestComposeCorpus(t *testing.T) {
	const shop = "testdata/shop"
	tests := []struct {
		name     string
		files    []string
		env      map[string]string
		profiles []string
		stack    string // command-line name; the file says shop
		want     func(map[string]api.ServiceSpec)
		ignored  []string
	}{
		{name: "interpolation from .env, env_file, extends, long and short ports", files: []string{"compose.yml"}},
		{
			name:  "a second file overrides the first",
			files: []string{"compose.yml", "compose.prod.yml"},
			want: func(m map[string]api.ServiceSpec) {
				web := m["web"]
				web.Replicas = 4
				web.Resources.Limits.MemoryBytes = 256 << 20
				m["web"] = web
				a := m["api"]
				a.Env = []string{"CACHE_URL=redis://cache:6379", "DB_HOST=db", "LOG_LEVEL=warn", "REGION=eu"}
				m["api"] = a
				c := m["cache"]
				c.Mode, c.Replicas = api.ModeReplicated, 1
				m["cache"] = c
			},
		},
		{
			name:  "the environment wins over .env and defaults",
			files: []string{"compose.yml"},
			env:   map[string]string{"TZ": "UTC", "WEB_PORT": "9090", "WEB_REPLICAS": "5", "NGINX_TAG": "1.27", "ZONE": "b", "LOG_LEVEL": "error"},
			want: func(m map[string]api.ServiceSpec) {
				web := m["web"]
				web.Image, web.Replicas = "nginx:1.27", 5
				web.Ports = []api.PortConfig{{Published: 9090, Target: 80, Protocol: "tcp"}, {Published: 8443, Target: 443, Protocol: "tcp"}}
				web.Constraints = []string{"node.labels.zone==b"}
				m["web"] = web
				a := m["api"]
				a.Env = []string{"CACHE_URL=redis://cache:6379", "DB_HOST=db", "LOG_LEVEL=error", "REGION=eu"}
				m["api"] = a
			},
		},
		{
			name:  "a variable listed without value and unset is left out",
			files: []string{"compose.yml"},
			env:   map[string]string{},
			want: func(m map[string]api.ServiceSpec) {
				web := m["web"]
				web.Env = []string{"API_URL=http://api:9000"}
				m["web"] = web
			},
		},
		{
			name:     "a profile adds its services",
			files:    []string{"compose.yml"},
			profiles: []string{"debug"},
			want:     addAdminer,
		},
		{
			name:  "COMPOSE_PROFILES enables profiles too",
			files: []string{"compose.yml"},
			env:   map[string]string{"TZ": "UTC", "COMPOSE_PROFILES": "debug"},
			want:  addAdminer,
		},
		{
			name:  "the command-line name beats name:",
			files: []string{"compose.yml"},
			stack: "store",
			want: func(m map[string]api.ServiceSpec) {
				for k, s := range m {
					s.Name = "store_" + k
					s.Labels[StackLabel] = "store"
					for i := range s.Secrets {
						s.Secrets[i].Source = "store_api_key"
					}
					for i, n := range s.Networks {
						s.Networks[i] = strings.Replace(n, "shop_", "store_", 1)
					}
					m[k] = s
				}
				db := m["db"]
				db.Mounts = []api.Mount{{Type: api.MountVolume, Source: "store_db_data", Target: "/var/lib/postgresql/data"}}
				m["db"] = db
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == nil {
				env = map[string]string{"TZ": "UTC"}
			}
			in := Input{Files: readCompose(t, shop, tt.files), WorkingDir: shop, Env: env, Profiles: tt.profiles, Name: tt.stack}
			p, ignored, err := Load(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			stack := tt.stack
			if stack == "" {
				if p.Name != "shop" {
					t.Fatalf("project name %q, want shop (name: of the file)", p.Name)
				}
				stack = p.Name
			}
			got, err := StackSpecs(stack, p)
			if err != nil {
				t.Fatal(err)
			}
			wantMap := shopSpecs()
			if tt.want != nil {
				tt.want(wantMap)
			}
			var want []api.ServiceSpec
			for _, k := range []string{"adminer", "api", "cache", "db", "web"} {
				if s, ok := wantMap[k]; ok {
					want = append(want, s)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("got %d services, want %d: %+v", len(got), len(want), got)
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("service %s:\n got %+v\nwant %+v", want[i].Name, got[i], want[i])
				}
			}
			wantIgnored := tt.ignored
			if wantIgnored == nil {
				wantIgnored = shopIgnored
			}
			if !reflect.DeepEqual(ignored, wantIgnored) {
				t.Errorf("ignored %q, want %q", ignored, wantIgnored)
			}
		})
	}
}

// addAdminer adds the service of the debug profile.
func addAdminer(m map[string]api.ServiceSpec) {
	a := stackSpec("shop", "adminer", "adminer:4")
	a.Ports = []api.PortConfig{{Published: 8081, Target: 8080, Protocol: "tcp"}}
	a.Healthcheck = &api.HealthConfig{Test: []string{"NONE"}}
	m["adminer"] = a
}

func TestComposeErrors(t *testing.T) {
	const dir = "testdata/errors"
	tests := []struct {
		file string
		env  map[string]string
		want []string // substrings of the message, each FILE:LINE: KEY: why
	}{
		{"missing-var.yml", nil, []string{"missing-var.yml:3: services.app.image: required variable APP_TAG is missing a value: must be set"}},
		{"typo.yml", nil, []string{"typo.yml:4: services.web.prots: unknown key"}},
		{"typo-deploy.yml", nil, []string{"typo-deploy.yml:5: services.web.deploy.replicaz: unknown key"}},
		{"bad-port.yml", nil, []string{"bad-port.yml:6: services.web.ports[1]: invalid hostPort: 99999"}},
		{"bad-long-port.yml", nil, []string{"bad-long-port.yml:6: services.web.ports[0].published: 70000: want a port 1-65535"}},
		{"global-replicas.yml", nil, []string{"global-replicas.yml:6: services.agent.deploy.replicas: cannot be used with mode global"}},
		{"no-image.yml", nil, []string{"no-image.yml:2: services.web: has neither an image nor a build context"}},
		{"bad-duration.yml", nil, []string{`bad-duration.yml:4: services.web.stop_grace_period: time: invalid duration "soon"`}},
		{"bad-condition.yml", nil, []string{`bad-condition.yml:6: services.web.deploy.restart_policy.condition: "sometimes": want any, on-failure or none`}},
		{"two-errors.yml", nil, []string{
			`two-errors.yml:6: services.web.deploy.restart_policy.condition: "sometimes"`,
			`two-errors.yml:11: services.api.deploy.placement.constraints[0]: invalid constraint "node.color == red"`,
		}},
		{"typo-top-level.yml", nil, []string{"typo-top-level.yml:4: servces: unknown key"}},
		{"negative-replicas.yml", nil, []string{"negative-replicas.yml:5: services.web.deploy.replicas: must be greater than or equal to 0"}},
		{"bad-memory.yml", nil, []string{"bad-memory.yml:7: services.web.deploy.resources.limits.memory: invalid size: 'lots'"}},
		{"missing-var-in-list.yml", nil, []string{"missing-var-in-list.yml:6: services.web.ports[1]: required variable P is missing a value: need P"}},
		{"not-yaml.yml", nil, []string{"not-yaml.yml", "line 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			files := readCompose(t, dir, []string{tt.file})
			p, _, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Env: tt.env, Name: "s"})
			if err == nil {
				_, err = StackSpecs("s", p)
			}
			if err == nil {
				t.Fatal("no error")
			}
			err = LocateError(err, files)
			if !errors.Is(err, ErrBadCompose) {
				t.Errorf("error %v does not wrap ErrBadCompose", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestComposeErrorInSecondFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yml"), []byte("services:\n  web:\n    image: nginx\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "b.yml"), []byte("services:\n  web:\n    deploy:\n      replicas: 2\n      mode: sometimes\n"), 0o600)
	files := readCompose(t, dir, []string{"a.yml", "b.yml"})
	p, _, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "s"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = StackSpecs("s", p)
	if err == nil {
		t.Fatal("no error")
	}
	want := filepath.Join(dir, "b.yml") + `:5: services.web.deploy.mode: "sometimes": want replicated, global, replicated-job or global-job`
	if got := LocateError(err, files).Error(); !strings.Contains(got, want) {
		t.Fatalf("error %q lacks %q", got, want)
	}
}

func TestSplitKeyPath(t *testing.T) {
	for in, want := range map[string][]string{
		"services.web.ports[1].published": {"services", "web", "ports", "[1]", "published"},
		"services.web.ports.[]":           {"services", "web", "ports", "[]"},
		"services.*.ports.[].mode":        {"services", "*", "ports", "[]", "mode"},
		"name":                            {"name"},
	} {
		if got := splitKeyPath(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitKeyPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestComposeVolumes maps service volumes: short and long syntax, named
// volumes (the stack's, external, or named), binds relative to the project
// directory, tmpfs; and refuses what cannot be mounted, naming the key.
func TestComposeVolumes(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		want  []api.Mount
		err   []string
		clean bool // nothing about volumes is reported as ignored
	}{
		{
			name: "short syntax",
			yaml: `
services:
  app:
    image: busybox
    volumes:
      - data:/data
      - logs:/var/log:ro
      - ./conf:/etc/app:ro
      - /srv/static:/static
volumes:
  data:
  logs:
`,
			want: []api.Mount{
				{Type: api.MountVolume, Source: "s_data", Target: "/data"},
				{Type: api.MountVolume, Source: "s_logs", Target: "/var/log", ReadOnly: true},
				{Type: api.MountBind, Source: "PROJECT/conf", Target: "/etc/app", ReadOnly: true},
				{Type: api.MountBind, Source: "/srv/static", Target: "/static"},
			},
			clean: true,
		},
		{
			name: "long syntax, external and named volumes, tmpfs",
			yaml: `
services:
  app:
    image: busybox
    volumes:
      - type: volume
        source: shared
        target: /shared
        read_only: true
        volume:
          nocopy: true
      - type: volume
        source: named
        target: /named
      - type: bind
        source: ../up/
        target: /up
      - type: tmpfs
        target: /scratch
        tmpfs:
          size: 64m
          mode: 0700
    tmpfs:
      - /run
      - /cache:size=1m,mode=755
volumes:
  shared:
    external: true
  named:
    name: precious
`,
			want: []api.Mount{
				{Type: api.MountVolume, Source: "shared", Target: "/shared", ReadOnly: true, NoCopy: true},
				{Type: api.MountVolume, Source: "precious", Target: "/named"},
				{Type: api.MountBind, Source: "PARENT/up", Target: "/up"},
				{Type: api.MountTmpfs, Target: "/scratch", TmpfsSize: 64 << 20, TmpfsMode: 0o700},
				{Type: api.MountTmpfs, Target: "/run"},
				{Type: api.MountTmpfs, Target: "/cache", TmpfsSize: 1 << 20, TmpfsMode: 0o755},
			},
			clean: true,
		},
		{
			name: "anonymous volume",
			yaml: "services:\n  app:\n    image: busybox\n    volumes:\n      - /data\n",
			err:  []string{"services.app.volumes[0]: anonymous volume at /data: not supported"},
		},
		{
			name: "reserved target and bad tmpfs option",
			yaml: "services:\n  app:\n    image: busybox\n    volumes:\n      - /srv:/proc/x\n    tmpfs:\n      - /t:uid=5\n",
			err: []string{
				`services.app.volumes[0]: target "/proc/x": /proc is reserved`,
				`services.app.tmpfs[0]: "/t:uid=5": option "uid" not supported`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "project")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "compose.yml"), []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			files := readCompose(t, dir, []string{"compose.yml"})
			p, ignored, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "s"})
			if err != nil {
				t.Fatal(err)
			}
			specs, err := StackSpecs("s", p)
			if tt.err != nil {
				if err == nil {
					t.Fatalf("no error, want %q", tt.err)
				}
				for _, w := range tt.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %v lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				tt.want[i].Source = strings.NewReplacer("PROJECT", dir, "PARENT", root).Replace(tt.want[i].Source)
			}
			if got := specs[0].Mounts; !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("mounts\n %v\nwant\n %v", got, tt.want)
			}
			if tt.clean && len(ignored) > 0 {
				t.Fatalf("reported as ignored: %q", ignored)
			}
		})
	}
}
