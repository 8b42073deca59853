package specflags

import (
	"reflect"
	"slices"
	"strings"
	"testing"

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
		// Keys are case-blind: UID is the uid, not the gid.
		{"source=db_pass,UID=1000", true, api.FileReference{Source: "db_pass", UID: 1000}, true},
		{"source=db_pass,GID=7,Mode=0400", true, api.FileReference{Source: "db_pass", GID: 7, Mode: 0o400}, true},
		{"source=db_pass, uid=5", true, api.FileReference{Source: "db_pass", UID: 5}, true},
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
	refs, err := addFileRefs([]api.FileReference{{Source: "c", Target: "a"}, {Source: "b", Target: "b2"}}, nil, []string{"source=c,target=a"}, true)
	if err != nil || len(refs) != 2 || refs[0].Source != "c" {
		t.Fatalf("re-adding the same source at the same target: %+v %v", refs, err)
	}
	if refs, err = removeFileRefs(refs, []string{"b"}, "secret"); err != nil || len(refs) != 1 || refs[0].Source != "c" {
		t.Fatalf("remove by name: %+v %v", refs, err)
	}
	// A name the service does not use is refused (a typo), naming what it has.
	if got, err := removeFileRefs(refs, []string{"c", "typo"}, "secret"); err == nil || len(got) != 1 ||
		err.Error() != `invalid --secret-rm "typo": the service has no such secret (it has: c)` {
		t.Fatalf("remove of an unused name: %+v %v", got, err)
	}
}

// TestAddFileRefsTargets: two different files at one path in the container
// are refused, as Docker does, and nothing is merged away; the same source
// at the same target again changes nothing but its options.
func TestAddFileRefsTargets(t *testing.T) {
	pw := api.FileReference{Source: "shop_db_password", Target: "dbpw"}
	conf := api.FileReference{Source: "app", Target: "/etc/app.conf"}
	cases := []struct {
		name   string
		refs   []api.FileReference
		other  []api.FileReference
		values []string
		secret bool
		want   []api.FileReference // nil: refused
	}{
		{"other source at a used target", []api.FileReference{pw}, nil, []string{"source=api-key_1,target=dbpw"}, true, nil},
		{"same path spelled absolute", []api.FileReference{pw}, nil, []string{"source=api-key_1,target=/run/secrets/dbpw"}, true, nil},
		{"default target of another name", []api.FileReference{{Source: "x", Target: "api-key_1"}}, nil, []string{"api-key_1"}, true, nil},
		{"two new sources at one target", nil, nil, []string{"source=a,target=t", "source=b,target=t"}, true, nil},
		{"secret over a config", nil, []api.FileReference{conf}, []string{"source=a,target=/etc/app.conf"}, true, nil},
		{"config over a secret", nil, []api.FileReference{pw}, []string{"source=c,target=/run/secrets/dbpw"}, false, nil},
		{"configs at one target", []api.FileReference{conf}, nil, []string{"source=other,target=/etc/app.conf"}, false, nil},
		{"same source and target again", []api.FileReference{pw}, nil, []string{"source=shop_db_password,target=dbpw"}, true, []api.FileReference{pw}},
		{"same again, new mode", []api.FileReference{pw}, nil, []string{"source=shop_db_password,target=dbpw,mode=0400"}, true,
			[]api.FileReference{{Source: "shop_db_password", Target: "dbpw", Mode: 0o400}}},
		{"same source, other target", []api.FileReference{pw}, nil, []string{"source=shop_db_password,target=pw2"}, true,
			[]api.FileReference{pw, {Source: "shop_db_password", Target: "pw2"}}},
		{"other target", []api.FileReference{pw}, []api.FileReference{conf}, []string{"source=api-key_1,target=key"}, true,
			[]api.FileReference{pw, {Source: "api-key_1", Target: "key"}}},
	}
	for _, tc := range cases {
		before := slices.Clone(tc.refs)
		got, err := addFileRefs(tc.refs, tc.other, tc.values, tc.secret)
		if tc.want == nil {
			if err == nil || !strings.Contains(err.Error(), "is already used by") {
				t.Errorf("%s: got %+v, %v; want a refusal", tc.name, got, err)
			}
		} else if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
		if !reflect.DeepEqual(tc.refs, before) {
			t.Errorf("%s: the caller's slice changed: %+v", tc.name, tc.refs)
		}
	}
}
