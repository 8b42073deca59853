package specflags

import (
	"reflect"
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
	refs, err := addFileRefs([]api.FileReference{{Source: "a"}, {Source: "b", Target: "b2"}}, []string{"source=c,target=a"}, true)
	if err != nil || len(refs) != 2 || refs[1].Source != "c" {
		t.Fatalf("add replaces by target: %+v %v", refs, err)
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
