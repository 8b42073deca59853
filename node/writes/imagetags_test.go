package writes

import (
	"slices"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestWorkerImageRecord(t *testing.T) {
	held := []*api.Image{
		{ID: "sha256:a", Tags: []string{"web:latest", "web:1"}, Layers: []string{"l1"}, Source: "import", Nodes: []string{"m"}},
		{ID: "sha256:b", Tags: []string{"db:1"}, Nodes: []string{"m"}},
	}
	cases := []struct {
		name        string
		img         api.Image
		wantTags    []string
		wantDropped []string
		wantLayers  []string
		wantSource  string
	}{
		{name: "new image, free tags", img: api.Image{ID: "sha256:c", Tags: []string{"app:1"}, Layers: []string{"x"}, Nodes: []string{"w"}},
			wantTags: []string{"app:1"}, wantLayers: []string{"x"}},
		{name: "new image taking a held tag", img: api.Image{ID: "sha256:c", Tags: []string{"web:latest", "app:1"}, Nodes: []string{"w"}},
			wantTags: []string{"app:1"}, wantDropped: []string{"web:latest"}},
		{name: "held image, its own tags", img: api.Image{ID: "sha256:a", Tags: []string{"web:1"}, Layers: []string{"forged"}, Source: "pull x", Nodes: []string{"w"}},
			wantTags: []string{"web:1"}, wantLayers: []string{"l1"}, wantSource: "import"},
		{name: "held image taking another's tag", img: api.Image{ID: "sha256:a", Tags: []string{"db:1"}, Nodes: []string{"w"}},
			wantDropped: []string{"db:1"}, wantLayers: []string{"l1"}, wantSource: "import"},
	}
	for _, c := range cases {
		got, dropped := WorkerImageRecord(c.img, held)
		if !slices.Equal(got.Tags, c.wantTags) || !slices.Equal(dropped, c.wantDropped) || !slices.Equal(got.Layers, c.wantLayers) ||
			got.Source != c.wantSource || !slices.Equal(got.Nodes, c.img.Nodes) || got.ID != c.img.ID {
			t.Errorf("%s: got %+v dropped %v", c.name, got, dropped)
		}
	}
}
