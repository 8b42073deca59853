package main

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/shoal-org/shoal/api"
)

func TestParseFileRef(t *testing.T) {
	cases := []struct {
		in     string
		secret bool
		want   api.FileReference
		ok     bool
	}{
		{"db_pass", true, api.FileReference{Source: "db_pass"}, true},
		{"source=db_pass,target=pw,mode=0400,uid=999,gid=998", true, api.FileReference{Source: "db_pass", Target: "pw", Mode: 0o400, UID: 999, GID: 998}, true},
		{"src=app,dst=/etc/app.conf", false, api.FileReference{Source: "app", Target: "/etc/app.conf"}, true},
		{"source=app,target=etc/app.conf", false, api.FileReference{}, false},
		{"source=x,mode=999", true, api.FileReference{}, false},
		{"source=x,bogus=1", true, api.FileReference{}, false},
		{"source=x,target=../../etc/shadow", true, api.FileReference{}, false},
		{"target=y", true, api.FileReference{}, false},
	}
	for _, tc := range cases {
		got, err := parseFileRef(tc.in, tc.secret)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if tc.ok && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %+v, want %+v", tc.in, got, tc.want)
		}
	}
	refs, err := addFileRefs([]api.FileReference{{Source: "a"}, {Source: "b", Target: "b2"}}, []string{"source=c,target=a"}, true)
	if err != nil || len(refs) != 2 || refs[1].Source != "c" {
		t.Fatalf("add replaces by target: %+v %v", refs, err)
	}
	if refs = removeFileRefs(refs, []string{"b"}); len(refs) != 1 || refs[0].Source != "c" {
		t.Fatalf("remove by name: %+v", refs)
	}
}

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
	p, ignored, err := loadCompose(context.Background(), composeInput{Files: files, WorkingDir: dir, Name: "shop", Env: map[string]string{"PLAIN": "p=2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ignored) != 0 {
		t.Fatalf("ignored %v", ignored)
	}
	specs, err := stackSpecs("shop", p)
	if err != nil {
		t.Fatal(err)
	}
	wantS := []api.FileReference{{Source: "shop_db_password", Target: "/run/secrets/db_password"}, {Source: "api_key", Target: "key", UID: 999, Mode: 0o400}}
	wantC := []api.FileReference{{Source: "shop_app", Target: "/etc/app.conf"}, {Source: "shop_plain", Target: "/plain"}}
	if !reflect.DeepEqual(specs[0].Secrets, wantS) || !reflect.DeepEqual(specs[0].Configs, wantC) {
		t.Fatalf("secrets %+v\nconfigs %+v", specs[0].Secrets, specs[0].Configs)
	}
	objs, errs := stackObjects("shop", p)
	if len(errs) > 0 || len(objs) != 4 {
		t.Fatalf("objects %+v %v", objs, errs)
	}
	byName := map[string]stackObject{}
	for _, o := range objs {
		byName[o.name] = o
	}
	if o := byName["shop_db_password"]; !o.secret || o.file != filepath.Join(dir, "pw.txt") {
		t.Fatalf("file secret %+v", o)
	}
	if o := byName["api_key"]; !o.external {
		t.Fatalf("external secret %+v", o)
	}
	if string(byName["shop_app"].data) != "x=1" || string(byName["shop_plain"].data) != "p=2" {
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
	if p, _, err = loadCompose(context.Background(), composeInput{Files: files, WorkingDir: dir, Name: "shop"}); err != nil {
		if !strings.Contains(err.Error(), "nope") {
			t.Fatalf("undefined secret: %v", err)
		}
		return
	}
	if _, err := stackSpecs("shop", p); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("undefined secret: %v", err)
	}
}
