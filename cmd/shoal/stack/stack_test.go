package stack

import (
	"errors"
	"reflect"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/cmd/shoal/compose"
	"github.com/shoal-org/shoal/cmd/shoal/specflags"
)

// stackSpec is what a compose service with only an image becomes.
func stackSpec(stack, name, image string) api.ServiceSpec {
	s := specflags.DefaultSpec()
	s.Name, s.Image = stack+"_"+name, image
	s.Labels = map[string]string{compose.StackLabel: stack}
	return s
}

// stored returns spec as a service of the cluster, as the leader stores it.
func stored(id string, spec api.ServiceSpec) api.Service {
	return api.Service{ID: id, Name: spec.Name, Version: 3, Spec: storedForm(spec)}
}

func TestPlanStack(t *testing.T) {
	web := stackSpec("shop", "web", "nginx:1")
	web.RollbackConfig.Parallelism = 0 // the leader stores 1: still unchanged
	api1 := stackSpec("shop", "api", "api:1")
	api2 := stackSpec("shop", "api", "api:2")
	db := stackSpec("shop", "db", "postgres:16")
	other := stackSpec("blog", "web", "nginx:1")
	loose := stackSpec("x", "y", "busybox")
	loose.Name, loose.Labels = "shop_cache", nil
	forced := web
	forced.ForceUpdate = 4
	sealedWeb := web
	sealedWeb.RegistryAuth = &api.RegistryAuth{Registry: "reg", Sealed: []byte("ciphertext")}
	credWeb := web
	credWeb.RegistryAuth = &api.RegistryAuth{Registry: "reg", Username: "u", Password: "p"}
	// cache publishes "6379" (the cluster picked 30000) and "8080:80".
	cacheFile := stackSpec("shop", "cache", "redis:7")
	cacheFile.Ports = []api.PortConfig{{Target: 6379, Protocol: "tcp"}, {Published: 8080, Target: 80, Protocol: "tcp"}}
	cacheStored := cacheFile
	cacheStored.Ports = []api.PortConfig{{Published: 30000, Target: 6379, Protocol: "tcp"}, {Published: 8080, Target: 80, Protocol: "tcp"}}
	cache2File := cacheFile
	cache2File.Image = "redis:8"
	cache2Sent := cacheStored
	cache2Sent.Image = "redis:8"
	cacheUDPFile := cacheFile
	cacheUDPFile.Ports = []api.PortConfig{{Target: 6379, Protocol: "udp"}, {Published: 8080, Target: 80, Protocol: "tcp"}}

	mig := stackSpec("shop", "mig", "migrate:1")
	mig.Mode = api.ModeReplicatedJob
	mig.Replicas = 1

	tests := []struct {
		name     string
		specs    []api.ServiceSpec
		existing []api.Service
		prune    bool
		want     stackPlan
		err      error
	}{
		{
			name:     "same file: an unchanged job runs again, an unchanged service stays",
			specs:    []api.ServiceSpec{mig, web},
			existing: []api.Service{stored("s1", mig), stored("s2", web)},
			want:     stackPlan{update: []stackUpdate{{cur: stored("s1", mig), spec: mig}}, unchanged: []string{"shop_web"}},
		},
		{
			name:  "new stack: all created",
			specs: []api.ServiceSpec{api1, web},
			want:  stackPlan{create: []api.ServiceSpec{api1, web}},
		},
		{
			name:     "same file again: nothing updated",
			specs:    []api.ServiceSpec{api1, web},
			existing: []api.Service{stored("s1", api1), stored("s2", web), stored("s3", other)},
			want:     stackPlan{unchanged: []string{"shop_api", "shop_web"}},
		},
		{
			name:     "one service changed: only it is updated",
			specs:    []api.ServiceSpec{api2, web},
			existing: []api.Service{stored("s1", api1), stored("s2", web)},
			want:     stackPlan{update: []stackUpdate{{cur: stored("s1", api1), spec: api2}}, unchanged: []string{"shop_web"}},
		},
		{
			name:     "a forced update is not undone by a deploy",
			specs:    []api.ServiceSpec{web},
			existing: []api.Service{stored("s2", forced)},
			want:     stackPlan{unchanged: []string{"shop_web"}},
		},
		{
			name:     "without --with-registry-auth a deploy keeps the sealed credentials",
			specs:    []api.ServiceSpec{web},
			existing: []api.Service{stored("s2", sealedWeb)},
			want:     stackPlan{unchanged: []string{"shop_web"}},
		},
		{
			name:     "with --with-registry-auth the credentials go to the leader (which keeps the ciphertext if they did not change)",
			specs:    []api.ServiceSpec{credWeb},
			existing: []api.Service{stored("s2", sealedWeb)},
			want:     stackPlan{update: []stackUpdate{{cur: stored("s2", sealedWeb), spec: credWeb}}},
		},
		{
			name:     "same file again: a port the cluster picked stays",
			specs:    []api.ServiceSpec{cacheFile},
			existing: []api.Service{stored("s4", cacheStored)},
			want:     stackPlan{unchanged: []string{"shop_cache"}},
		},
		{
			name:     "another image: the update sends the picked port",
			specs:    []api.ServiceSpec{cache2File},
			existing: []api.Service{stored("s4", cacheStored)},
			want:     stackPlan{update: []stackUpdate{{cur: stored("s4", cacheStored), spec: cache2Sent}}},
		},
		{
			name:     "another protocol: a new port for the cluster to pick",
			specs:    []api.ServiceSpec{cacheUDPFile},
			existing: []api.Service{stored("s4", cacheStored)},
			want:     stackPlan{update: []stackUpdate{{cur: stored("s4", cacheStored), spec: cacheUDPFile}}},
		},
		{
			name:     "a service left the file: kept without --prune",
			specs:    []api.ServiceSpec{web},
			existing: []api.Service{stored("s1", api1), stored("s2", web), stored("s3", db)},
			want:     stackPlan{unchanged: []string{"shop_web"}},
		},
		{
			name:     "a service left the file: removed with --prune, other stacks untouched",
			specs:    []api.ServiceSpec{web},
			existing: []api.Service{stored("s1", api1), stored("s2", web), stored("s3", other)},
			prune:    true,
			want:     stackPlan{remove: []api.Service{stored("s1", api1)}, unchanged: []string{"shop_web"}},
		},
		{
			name:     "a service of the same name outside the stack is not taken over",
			specs:    []api.ServiceSpec{api1, stackSpec("shop", "cache", "redis")},
			existing: []api.Service{stored("s9", loose)},
			err:      errNotInStack,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planStack("shop", tt.specs, tt.existing, tt.prune)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("plan\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestCheckStackName(t *testing.T) {
	for name, ok := range map[string]bool{"shop": true, "my-shop2": true, "": false, "a_b": false, "Shop": false, "-x": false, "a b": false, "a/b": false} {
		if err := checkStackName(name); (err == nil) != ok {
			t.Errorf("checkStackName(%q) = %v", name, err)
		}
	}
}
