package compose

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// loadYAML loads one compose file written to a temporary project
// directory as stack s and maps it; err is located (FILE:LINE: KEY: why).
func loadYAML(t *testing.T, yml string) ([]api.ServiceSpec, []string, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yml"), []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	files := readCompose(t, dir, []string{"compose.yml"})
	p, ignored, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "s"})
	if err != nil {
		return nil, ignored, LocateError(err, files)
	}
	specs, err := StackSpecs("s", p)
	if err != nil {
		return nil, ignored, LocateError(err, files)
	}
	return specs, ignored, nil
}

// keyCase is one compose file and what it must become: the field got
// extracts from the first spec, or the error substrings; ignored, when
// not nil, is the exact list of keys reported as ignored.
type keyCase struct {
	name    string
	yaml    string
	got     func(api.ServiceSpec) any
	want    any
	err     []string
	ignored []string
}

func runKeyCases(t *testing.T, tests []keyCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			specs, ignored, err := loadYAML(t, tt.yaml)
			if tt.err != nil {
				if err == nil {
					t.Fatalf("no error, want %q", tt.err)
				}
				for _, w := range tt.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error\n%v\nlacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.got(specs[0]); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			if tt.ignored != nil && !reflect.DeepEqual(ignored, tt.ignored) && !(len(ignored) == 0 && len(tt.ignored) == 0) {
				t.Errorf("ignored %q, want %q", ignored, tt.ignored)
			}
		})
	}
}

func ports(s api.ServiceSpec) any { return s.Ports }

func TestComposePortModes(t *testing.T) {
	runKeyCases(t, []keyCase{
		{
			name: "long syntax mode host publishes on the task's nodes only",
			yaml: `
services:
  edge:
    image: traefik
    ports:
      - target: 80
        published: 80
        mode: host
      - target: 443
        published: "443"
        protocol: tcp
        mode: ingress
      - "53:53/udp"
`,
			got: ports,
			want: []api.PortConfig{
				{Published: 80, Target: 80, Protocol: "tcp", Mode: api.PublishHost},
				{Published: 443, Target: 443, Protocol: "tcp"},
				{Published: 53, Target: 53, Protocol: "udp"},
			},
			ignored: []string{},
		},
		{
			name: "without a published port the cluster picks one",
			yaml: `
services:
  cache:
    image: redis
    ports:
      - "6379"
      - "53/udp"
      - target: 8080
      - target: 9090
        protocol: udp
        mode: host
`,
			got: ports,
			want: []api.PortConfig{
				{Target: 6379, Protocol: "tcp"},
				{Target: 53, Protocol: "udp"},
				{Target: 8080, Protocol: "tcp"},
				{Target: 9090, Protocol: "udp", Mode: api.PublishHost},
			},
			ignored: []string{},
		},
		{
			name: "published 0 is refused: leave it out for the cluster to pick",
			yaml: "services:\n  web:\n    image: nginx\n    ports:\n      - {target: 80, published: 0}\n",
			err:  []string{"compose.yml:5: services.web.ports[0].published: 0: want a port 1-65535"},
		},
		{
			name: "an unknown mode is refused",
			yaml: "services:\n  edge:\n    image: traefik\n    ports:\n      - {target: 80, published: 80, mode: bridge}\n",
			err:  []string{`compose.yml:5: services.edge.ports[0].mode: "bridge": want ingress or host`},
		},
		{
			// The short form has no published key: the line is the item's.
			name: "a range of published ports in the short form is refused at its line",
			yaml: "services:\n  web:\n    image: nginx\n    ports:\n      - \"6379-6380:80\"\n",
			err:  []string{`compose.yml:5: services.web.ports[0].published: "6379-6380": want a port 1-65535 (ranges are not supported)`},
		},
	})
}

func TestComposePortHostIP(t *testing.T) {
	runKeyCases(t, []keyCase{
		{
			name:    "every address is what Shoal does",
			yaml:    "services:\n  web:\n    image: nginx\n    ports:\n      - \"0.0.0.0:8080:80\"\n      - {target: 81, published: 81, host_ip: \"::\"}\n",
			got:     ports,
			want:    []api.PortConfig{{Published: 8080, Target: 80, Protocol: "tcp"}, {Published: 81, Target: 81, Protocol: "tcp"}},
			ignored: []string{},
		},
		{
			name: "a loopback port is refused, not published to the world",
			yaml: "services:\n  admin:\n    image: adminer\n    ports:\n      - \"8081:8080\"\n      - \"127.0.0.1:8090:80\"\n",
			err:  []string{"compose.yml:6: services.admin.ports[1]: host_ip 127.0.0.1: Shoal publishes a port on every address"},
		},
		{
			name: "long syntax",
			yaml: "services:\n  admin:\n    image: adminer\n    ports:\n      - target: 80\n        published: 8090\n        host_ip: 10.0.0.5\n",
			err:  []string{"compose.yml:5: services.admin.ports[0]: host_ip 10.0.0.5"},
		},
	})
}

func TestShellOperator(t *testing.T) {
	for in, want := range map[string]string{
		`./api --port 9000`:                "",
		`sh -c "a && b"`:                   "",
		`sh -c 'a; b | c'`:                 "",
		`echo a\;b`:                        "",
		"echo `date | wc`":                 "",
		`echo $(date | wc)`:                "",
		`echo "hello world" && sleep 1`:    "&&",
		`migrate; serve`:                   ";",
		`cat /etc/hosts | grep x`:          "|",
		`run >/tmp/log 2>&1`:               ">",
		`nginx -g "daemon off;" || exit 1`: "||",
	} {
		if got := shellOperator(in); got != want {
			t.Errorf("shellOperator(%s) = %q, want %q", in, got, want)
		}
	}
}

func TestComposeShellStringCommand(t *testing.T) {
	runKeyCases(t, []keyCase{
		{
			name: "words and quotes split as compose does",
			yaml: "services:\n  api:\n    image: x\n    entrypoint: /entrypoint.sh\n    command: gunicorn -b 0.0.0.0:5000 --log-level \"${LEVEL:-info}\" app:app\n",
			got:  func(s api.ServiceSpec) any { return [][]string{s.Entrypoint, s.Command} },
			want: [][]string{{"/entrypoint.sh"}, {"gunicorn", "-b", "0.0.0.0:5000", "--log-level", "info", "app:app"}},
		},
		{
			name: "a list keeps its operators as words",
			yaml: "services:\n  api:\n    image: x\n    command: [sh, -c, \"migrate && serve\"]\n",
			got:  func(s api.ServiceSpec) any { return s.Command },
			want: []string{"sh", "-c", "migrate && serve"},
		},
		{
			name: "an operator in a string command is refused, not cut",
			yaml: "services:\n  api:\n    image: x\n    command: ./migrate && ./serve\n",
			err:  []string{`compose.yml:4: services.api.command: "./migrate && ./serve": no shell runs this string, and it is cut at "&&"`},
		},
		{
			name: "in an entrypoint too, and from a variable",
			yaml: "services:\n  api:\n    image: x\n    entrypoint: ${EP:-run; true}\n",
			err:  []string{`compose.yml:4: services.api.entrypoint: "run; true"`},
		},
	})
}

func TestComposeVolumeDrivers(t *testing.T) {
	runKeyCases(t, []keyCase{
		{
			name: "the local driver is what a Shoal volume is",
			yaml: "services:\n  db:\n    image: postgres\n    volumes: [data:/var/lib/postgresql/data]\nvolumes:\n  data:\n    driver: local\n  nfs:\n    driver_opts: {type: nfs}\n",
			got:  func(s api.ServiceSpec) any { return s.Mounts },
			want: []api.Mount{{Type: api.MountVolume, Source: "s_data", Target: "/var/lib/postgresql/data"}},
			// nfs is not mounted: nothing to refuse
			ignored: []string{},
		},
		{
			name: "an NFS volume is refused, not made local",
			yaml: `
services:
  app:
    image: x
    volumes: [nfs:/mnt]
volumes:
  nfs:
    driver: local
    driver_opts:
      type: nfs
      o: addr=10.0.0.10,nfsvers=4
      device: ":/exports/data"
`,
			err: []string{"compose.yml:9: volumes.nfs.driver_opts: not supported: a volume is a directory of the node"},
		},
		{
			name: "a plugin driver is refused",
			yaml: "services:\n  app:\n    image: x\n    volumes: [{type: volume, source: d, target: /d}]\nvolumes:\n  d:\n    driver: rexray/ebs\n",
			err:  []string{`compose.yml:7: volumes.d.driver: "rexray/ebs": only local volumes`},
		},
	})
}

func TestComposeServiceLevelResources(t *testing.T) {
	res := func(s api.ServiceSpec) any { return []any{s.Replicas, s.Resources} }
	runKeyCases(t, []keyCase{
		{
			name: "compose specification spellings",
			yaml: "services:\n  app:\n    image: x\n    scale: 3\n    cpus: 0.5\n    mem_limit: 512m\n    mem_reservation: 128M\n    pids_limit: 100\n",
			got:  res,
			want: []any{uint64(3), api.ResourceRequirements{
				Limits:       api.Resources{NanoCPUs: 500_000_000, MemoryBytes: 512 << 20, Pids: 100},
				Reservations: api.Resources{MemoryBytes: 128 << 20},
			}},
			ignored: []string{},
		},
		{
			name: "the same values under deploy too",
			yaml: "services:\n  app:\n    image: x\n    cpus: \"1.5\"\n    mem_limit: 1g\n    deploy:\n      replicas: 2\n      resources: {limits: {cpus: \"1.5\", memory: 1G}}\n",
			got:  res,
			want: []any{uint64(2), api.ResourceRequirements{Limits: api.Resources{NanoCPUs: 1_500_000_000, MemoryBytes: 1 << 30}}},
		},
		{
			name: "pids_limit -1 is unlimited",
			yaml: "services:\n  app:\n    image: x\n    pids_limit: -1\n",
			got:  res,
			want: []any{uint64(1), api.ResourceRequirements{}},
		},
		{
			name: "distinct values are compose-go's error",
			yaml: "services:\n  app:\n    image: x\n    mem_limit: 1g\n    deploy: {resources: {limits: {memory: 2g}}}\n",
			err:  []string{"services.app: can't set distinct values on 'mem_limit' and 'deploy.resources.limits.memory'"},
		},
		{
			name: "scale with mode global",
			yaml: "services:\n  app:\n    image: x\n    scale: 2\n    deploy: {mode: global}\n",
			err:  []string{"services.app.deploy.replicas: cannot be used with mode global"},
		},
	})
}

func TestComposeEndpointMode(t *testing.T) {
	mode := func(s api.ServiceSpec) any { return s.EndpointMode }
	runKeyCases(t, []keyCase{
		{
			name:    "vip is the default, stored empty",
			yaml:    "services:\n  app:\n    image: x\n    deploy:\n      endpoint_mode: vip\n",
			got:     mode,
			want:    "",
			ignored: []string{},
		},
		{
			name:    "dnsrr",
			yaml:    "services:\n  app:\n    image: x\n    deploy:\n      endpoint_mode: dnsrr\n",
			got:     mode,
			want:    api.EndpointDNSRR,
			ignored: []string{},
		},
		{
			name:    "in any case, as docker reads it",
			yaml:    "services:\n  app:\n    image: x\n    deploy:\n      endpoint_mode: DNSRR\n",
			got:     mode,
			want:    api.EndpointDNSRR,
			ignored: []string{},
		},
		{
			name: "dnsrr with a host-mode port",
			yaml: "services:\n  app:\n    image: x\n    ports: [{target: 80, published: 8080, mode: host}]\n    deploy:\n      endpoint_mode: dnsrr\n",
			got:  mode,
			want: api.EndpointDNSRR,
		},
		{
			name: "dnsrr with a mesh port is refused",
			yaml: "services:\n  app:\n    image: x\n    ports: [\"8080:80\"]\n    deploy:\n      endpoint_mode: dnsrr\n",
			err:  []string{"services.app.ports[0]: port published with ingress mode can't be used with dnsrr mode"},
		},
	})
}

func TestComposeNetworkAliases(t *testing.T) {
	aliases := func(s api.ServiceSpec) any { return s.NetworkAliases }
	runKeyCases(t, []keyCase{
		{
			name:    "aliases per network, by the network's Shoal name",
			yaml:    "services:\n  app:\n    image: x\n    networks:\n      back: {aliases: [www, api]}\n      front: {}\n      default: {aliases: [site]}\nnetworks:\n  back: {}\n  front: {}\n",
			got:     aliases,
			want:    map[string][]string{"s_back": {"www", "api"}, api.DefaultNetwork: {"site"}},
			ignored: []string{},
		},
		{
			name: "an external network keeps its name",
			yaml: "services:\n  app:\n    image: x\n    networks:\n      shared: {aliases: [www]}\nnetworks:\n  shared: {external: true}\n",
			got:  aliases,
			want: map[string][]string{"shared": {"www"}},
		},
		{
			name: "no aliases",
			yaml: "services:\n  app:\n    image: x\n    networks: [back]\nnetworks:\n  back: {}\n",
			got:  aliases,
			want: map[string][]string(nil),
		},
		{
			name: "an alias that is no DNS label",
			yaml: "services:\n  app:\n    image: x\n    networks:\n      back: {aliases: [www.example.com]}\nnetworks:\n  back: {}\n",
			err:  []string{`services.app.networks.back.aliases[0]: "www.example.com": character '.' not allowed`},
		},
		{
			name: "an alias twice",
			yaml: "services:\n  app:\n    image: x\n    networks:\n      back: {aliases: [www, WWW]}\nnetworks:\n  back: {}\n",
			err:  []string{`services.app.networks.back.aliases[1]: "WWW": listed twice`},
		},
		{
			name: "two services with one alias on a network",
			yaml: "services:\n  a:\n    image: x\n    networks:\n      back: {aliases: [redis]}\n  b:\n    image: x\n    networks:\n      back: {aliases: [REDIS, ok]}\nnetworks:\n  back: {}\n",
			err:  []string{`services.b.networks.back.aliases[0]: "REDIS": on network s_back it is already alias redis of service s_a`},
		},
		{
			name: "an alias that is another service's name on the network",
			yaml: "services:\n  a:\n    image: x\n    networks: [back]\n  b:\n    image: x\n    networks:\n      back: {aliases: [s_a]}\nnetworks:\n  back: {}\n",
			err:  []string{`services.b.networks.back.aliases[0]: "s_a": on network s_back it is already service s_a`},
		},
		{
			name:    "one alias on two networks, or a service's own name, clashes with nothing",
			yaml:    "services:\n  a:\n    image: x\n    networks:\n      back: {aliases: [www, s_a]}\n  b:\n    image: x\n    networks:\n      front: {aliases: [www]}\nnetworks:\n  back: {}\n  front: {}\n",
			got:     aliases,
			want:    map[string][]string{"s_back": {"www", "s_a"}},
			ignored: []string{},
		},
	})
}

func TestComposeNetworkOptions(t *testing.T) {
	for _, tt := range []struct {
		name      string
		yaml      string
		want      map[string]string
		ignored   []string
		encrypted bool
		err       string
	}{
		{
			name: "labels are the network's",
			yaml: "services:\n  a: {image: x, networks: [n]}\nnetworks:\n  n:\n    driver: overlay\n    labels: [com.example.tier=back]\n",
			want: map[string]string{"com.example.tier": "back", StackLabel: "s"},
		},
		{
			name:    "other driver options are reported",
			yaml:    "services:\n  a: {image: x, networks: [n]}\nnetworks:\n  n:\n    driver_opts:\n      com.docker.network.driver.mtu: \"1400\"\n",
			ignored: []string{"networks.n.driver_opts.com.docker.network.driver.mtu"},
		},
		{
			name:      "encrypted is --encrypted, whatever its value",
			yaml:      "services:\n  a: {image: x, networks: [n]}\nnetworks:\n  n:\n    driver: overlay\n    driver_opts:\n      encrypted: \"\"\n",
			encrypted: true,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "compose.yml"), []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			files := readCompose(t, dir, []string{"compose.yml"})
			p, ignored, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "s"})
			if tt.err != "" {
				if err == nil || !strings.Contains(LocateError(err, files).Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			nets, err := StackNetworks("s", p)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == nil {
				want = map[string]string{StackLabel: "s"} // every network a stack makes
			}
			if len(nets) != 1 || !reflect.DeepEqual(nets[0].Labels, want) || nets[0].Encrypted != tt.encrypted {
				t.Errorf("networks %+v, want labels %v, encrypted %v", nets, tt.want, tt.encrypted)
			}
			if !reflect.DeepEqual(ignored, tt.ignored) && len(ignored)+len(tt.ignored) > 0 {
				t.Errorf("ignored %q, want %q", ignored, tt.ignored)
			}
		})
	}
}

// TestContainerNameWithReplicas: container_name is ignored (reported) as
// docker stack deploy does, also beside several replicas; compose-go's
// consistency check refused such a file ("can't set container_name and
// deploy.replicas as container name must be unique"), so a file written
// for docker compose could not be deployed with replicas. The name: key
// still names the stack, and the other checks still hold.
func TestContainerNameWithReplicas(t *testing.T) {
	runKeyCases(t, []keyCase{
		{name: "deploy.replicas", yaml: "services:\n  web:\n    image: x\n    container_name: web\n    deploy:\n      replicas: 3\n",
			got: func(s api.ServiceSpec) any { return s.Replicas }, want: uint64(3), ignored: []string{"services.web.container_name"}},
		{name: "scale", yaml: "services:\n  web:\n    image: x\n    container_name: web\n    scale: 2\n",
			got: func(s api.ServiceSpec) any { return s.Replicas }, want: uint64(2), ignored: []string{"services.web.container_name"}},
		{name: "other consistency checks stay", yaml: "services:\n  web:\n    image: x\n    container_name: web\n    networks: [nope]\n",
			err: []string{"nope"}},
	})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "compose.yml"), []byte("name: shop\nservices:\n  web:\n    image: x\n    container_name: web1\n    scale: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _, err := Load(context.Background(), Input{Files: readCompose(t, dir, []string{"compose.yml"}), WorkingDir: dir})
	if err != nil || p.Name != "shop" {
		t.Fatalf("name: key: %v, project %v", err, p)
	}
}
