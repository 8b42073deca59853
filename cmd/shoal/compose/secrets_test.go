package compose

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-org/shoal/api"
)

func TestComposeSecretsAndConfigs(t *testing.T) {
	dir := t.TempDir()
	yml := `
services:
  db:
    image: postgres:16
    secrets:
      - db_password
      - source: api_key
        target: key
        uid: "999"
        mode: 0400
    configs:
      - source: app
        target: /etc/app.conf
      - plain
secrets:
  db_password:
    file: ./pw.txt
  api_key:
    external: true
configs:
  app:
    content: "x=1"
  plain:
    environment: PLAIN
`
	files := []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yml"), Content: []byte(yml)}}
	p, ignored, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "shop", Env: map[string]string{"PLAIN": "p=2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ignored) != 0 {
		t.Fatalf("ignored %v", ignored)
	}
	specs, err := StackSpecs("shop", p)
	if err != nil {
		t.Fatal(err)
	}
	wantS := []api.FileReference{{Source: "shop_db_password", Target: "/run/secrets/db_password"}, {Source: "api_key", Target: "key", UID: 999, Mode: 0o400}}
	wantC := []api.FileReference{{Source: "shop_app", Target: "/etc/app.conf"}, {Source: "shop_plain", Target: "/plain"}}
	if !reflect.DeepEqual(specs[0].Secrets, wantS) || !reflect.DeepEqual(specs[0].Configs, wantC) {
		t.Fatalf("secrets %+v\nconfigs %+v", specs[0].Secrets, specs[0].Configs)
	}
	objs, errs := StackObjects("shop", p)
	if len(errs) > 0 || len(objs) != 4 {
		t.Fatalf("objects %+v %v", objs, errs)
	}
	byName := map[string]StackObject{}
	for _, o := range objs {
		byName[o.Name] = o
	}
	if o := byName["shop_db_password"]; !o.Secret || o.File != filepath.Join(dir, "pw.txt") {
		t.Fatalf("file secret %+v", o)
	}
	if o := byName["api_key"]; !o.External {
		t.Fatalf("external secret %+v", o)
	}
	if string(byName["shop_app"].Data) != "x=1" || string(byName["shop_plain"].Data) != "p=2" {
		t.Fatalf("config data %+v", byName)
	}

	// A service naming an undefined secret is refused with its key path.
	bad := `
services:
  db:
    image: postgres:16
    secrets: [nope]
`
	files = []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yml"), Content: []byte(bad)}}
	if p, _, err = Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "shop"}); err != nil {
		if !strings.Contains(err.Error(), "nope") {
			t.Fatalf("undefined secret: %v", err)
		}
		return
	}
	if _, err := StackSpecs("shop", p); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("undefined secret: %v", err)
	}
}

// TestComposeFileModeOutOfRange: a mode past uint32 is refused, not
// wrapped onto a mode that looks valid (2^32 + 0444 became 0444).
func TestComposeFileModeOutOfRange(t *testing.T) {
	dir := t.TempDir()
	for _, mode := range []string{"4294967588", "-1", "01000"} {
		yml := "services:\n  db:\n    image: x\n    configs:\n      - source: app\n        mode: " + mode + "\nconfigs:\n  app:\n    content: x\n"
		files := []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yml"), Content: []byte(yml)}}
		p, _, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "shop"})
		if err != nil {
			continue // refused while loading: fine too
		}
		specs, err := StackSpecs("shop", p)
		if err == nil {
			t.Errorf("mode %s accepted as %#o", mode, specs[0].Configs[0].Mode)
		}
	}
}
