package compose

import (
	"context"
	"errors"
	"fmt"
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

// TestComposeFileTargetClash: two different secrets or configs at one path
// of a service's container are refused while loading (compose-go kept the
// last one and dropped the other in silence); an override file replacing
// the entry at a target, and the same entry twice, still load.
func TestComposeFileTargetClash(t *testing.T) {
	dir := t.TempDir()
	const top = "secrets:\n  a:\n    environment: A\n  b:\n    environment: B\nconfigs:\n  c:\n    content: C\n"
	svc := func(refs string) string { return "services:\n  app:\n    image: x\n" + refs }
	cases := []struct {
		name  string
		files []string
		clash string // "" when the stack loads
	}{
		{"two secrets at one target", []string{svc("    secrets:\n      - source: a\n        target: pw\n      - source: b\n        target: pw\n") + top}, "secret a and secret b have the same target /run/secrets/pw"},
		{"a default target taken by another", []string{svc("    secrets:\n      - b\n      - source: a\n        target: b\n") + top}, "same target /run/secrets/b"},
		{"interpolated target", []string{svc("    secrets:\n      - source: a\n        target: ${T}\n      - source: b\n        target: pw\n") + top}, "same target /run/secrets/pw"},
		{"secret and config at one path", []string{svc("    secrets:\n      - source: a\n        target: /etc/app.conf\n    configs:\n      - source: c\n        target: /etc/app.conf\n") + top}, "secret a and config c have the same target /etc/app.conf"},
		{"the same entry twice", []string{svc("    secrets:\n      - source: a\n        target: pw\n      - source: a\n        target: pw\n") + top}, ""},
		{"one secret at two targets", []string{svc("    secrets:\n      - source: a\n        target: pw\n      - source: a\n        target: pw2\n") + top}, ""},
		{"an override replaces the entry", []string{
			svc("    secrets:\n      - source: a\n        target: pw\n") + top,
			svc("    secrets:\n      - source: b\n        target: pw\n"),
		}, ""},
	}
	for _, tc := range cases {
		var files []types.ConfigFile
		for i, f := range tc.files {
			files = append(files, types.ConfigFile{Filename: filepath.Join(dir, fmt.Sprintf("compose%d.yml", i)), Content: []byte(f)})
		}
		p, _, err := Load(context.Background(), Input{Files: files, WorkingDir: dir, Name: "shop", Env: map[string]string{"T": "pw", "A": "a", "B": "b"}})
		if tc.clash != "" {
			if err == nil || !errors.Is(err, ErrBadCompose) || !strings.Contains(err.Error(), tc.clash) || !strings.Contains(err.Error(), "services.app") {
				t.Errorf("%s: %v; want a refusal naming %q", tc.name, err, tc.clash)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if _, err := StackSpecs("shop", p); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
