package compose

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-org/shoal/api"
)

func loadString(t *testing.T, yml string) *types.Project {
	t.Helper()
	in := Input{Files: []types.ConfigFile{{Filename: "/x/compose.yml", Content: []byte(yml)}}, WorkingDir: t.TempDir(), Name: "st"}
	p, _, err := Load(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestComposeNetworks(t *testing.T) {
	p := loadString(t, `
services:
  plain: {image: bb}
  front: {image: bb, networks: [web]}
  both:
    image: bb
    networks:
      db: {}
      web: {priority: 10}
      default: {}
networks:
  web: {internal: true, ipam: {config: [{subnet: 10.70.0.0/16}]}}
  db: {external: true, name: shared_db}
`)
	specs, err := StackSpecs("st", p)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, s := range specs {
		got[s.Name] = s.Networks
	}
	if got["st_plain"] != nil || !slices.Equal(got["st_front"], []string{"st_web"}) ||
		!slices.Equal(got["st_both"], []string{"st_web", "shared_db", api.DefaultNetwork}) {
		t.Fatalf("service networks %v", got)
	}
	nets, err := StackNetworks("st", p)
	if err != nil {
		t.Fatal(err)
	}
	want := []StackNetwork{
		{Network: api.Network{Name: "shared_db"}, External: true},
		{Network: api.Network{Name: "st_web", Subnet: "10.70.0.0/16", Internal: true}},
	}
	slices.SortFunc(nets, func(a, b StackNetwork) int { return strings.Compare(a.Name, b.Name) })
	if len(nets) != 2 || nets[0].Name != want[0].Name || !nets[0].External || nets[1].Name != want[1].Name || nets[1].Subnet != want[1].Subnet || !nets[1].Internal || nets[1].External {
		t.Fatalf("stack networks %+v", nets)
	}

	bad := loadString(t, `
services:
  a: {image: bb, networks: [n]}
networks:
  n: {driver: bridge}
`)
	if _, err := StackSpecs("st", bad); err == nil || !strings.Contains(err.Error(), `networks.n.driver: "bridge": only overlay networks exist`) {
		t.Fatalf("bridge driver: %v", err)
	}
}
