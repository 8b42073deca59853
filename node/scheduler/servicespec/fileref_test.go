package servicespec

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// Changing a service's secrets, configs or mounts makes its tasks outdated.
func TestMaterialEqualFileRefs(t *testing.T) {
	base := api.ServiceSpec{Image: "bb:1", Secrets: []api.FileReference{{Source: "pw"}}, Configs: []api.FileReference{{Source: "c", Target: "/etc/c"}}}
	same := base
	same.Replicas = 9
	if !MaterialEqual(&base, &same) {
		t.Fatal("replicas alone made a spec material")
	}
	for name, change := range map[string]func(*api.ServiceSpec){
		"secret removed": func(s *api.ServiceSpec) { s.Secrets = nil },
		"secret mode":    func(s *api.ServiceSpec) { s.Secrets = []api.FileReference{{Source: "pw", Mode: 0o400}} },
		"config target":  func(s *api.ServiceSpec) { s.Configs = []api.FileReference{{Source: "c", Target: "/etc/d"}} },
		"config added":   func(s *api.ServiceSpec) { s.Configs = append(s.Configs[:1:1], api.FileReference{Source: "e"}) },
		"mount added":    func(s *api.ServiceSpec) { s.Mounts = []api.Mount{{Type: api.MountTmpfs, Target: "/t"}} },
	} {
		next := base
		change(&next)
		if MaterialEqual(&base, &next) {
			t.Errorf("%s: tasks would not roll", name)
		}
	}
}
