package specflags

import (
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

func TestParseMount(t *testing.T) {
	tests := []struct {
		in   string
		want api.Mount
		err  string
	}{
		{in: "type=volume,source=data,target=/data", want: api.Mount{Type: "volume", Source: "data", Target: "/data"}},
		{in: "source=data,target=/data", want: api.Mount{Type: "volume", Source: "data", Target: "/data"}},
		{in: "type=Volume,source=data,target=/data", want: api.Mount{Type: "volume", Source: "data", Target: "/data"}},
		{in: "type=BIND,source=/a,target=/b", want: api.Mount{Type: "bind", Source: "/a", Target: "/b"}},
		{in: "type=bind,src=/srv/www/,dst=/www,readonly", want: api.Mount{Type: "bind", Source: "/srv/www", Target: "/www", ReadOnly: true}},
		{in: "type=bind,source=/a,destination=/b,ro=true", want: api.Mount{Type: "bind", Source: "/a", Target: "/b", ReadOnly: true}},
		{in: "type=bind,source=/a,target=/b,readonly=false", want: api.Mount{Type: "bind", Source: "/a", Target: "/b"}},
		{in: "source=data,target=/var/lib/db,volume-nocopy", want: api.Mount{Type: "volume", Source: "data", Target: "/var/lib/db", NoCopy: true}},
		{in: "type=volume,source=data,target=/d,volume-nocopy=false", want: api.Mount{Type: "volume", Source: "data", Target: "/d"}},
		{in: "type=bind,source=/a,target=/b,volume-nocopy", err: "volume mounts only"},
		{in: "type=volume,source=data,target=/d,volume-nocopy=perhaps", err: "want true or false"},
		{in: "type=tmpfs,target=/run,tmpfs-size=64M,tmpfs-mode=700", want: api.Mount{Type: "tmpfs", Target: "/run", TmpfsSize: 64 << 20, TmpfsMode: 0o700}},
		{in: "", err: "empty mount"},
		{in: "type=bind,source=srv,target=/srv", err: "must be an absolute path"},
		{in: "type=volume,source=v,target=rel", err: "must be an absolute path"},
		{in: "type=volume,source=v,target=/dev/x", err: "/dev is reserved"},
		{in: "type=tmpfs,target=/.shoal", err: "/.shoal is reserved"},
		{in: "type=volume,target=/data", err: "anonymous volumes are not supported"},
		{in: "type=nfs,source=x,target=/x", err: `type "nfs"`},
		{in: "type=tmpfs,target=/t,tmpfs-size=lots", err: "tmpfs-size"},
		{in: "type=tmpfs,target=/t,tmpfs-mode=999", err: "octal"},
		{in: "type=bind,source=/a,target=/b,tmpfs-size=1M", err: "tmpfs mounts only"},
		{in: "type=bind,source=/a,target=/b,bind-propagation=shared", err: `unknown key "bind-propagation"`},
		{in: "type=bind,source=/a,target=/b,target=/c", err: "target given twice"},
		{in: "type=bind,source,target=/b", err: "needs a value"},
		{in: "type=bind,source=/a,target=/b,readonly=maybe", err: "want true or false"},
	}
	for _, tt := range tests {
		got, err := parseMount(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseMount(%q) = %+v, %v; want error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseMount(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestAddMountsReplacesTarget(t *testing.T) {
	ms, err := AddMounts([]api.Mount{{Type: "volume", Source: "a", Target: "/d"}, {Type: "tmpfs", Target: "/t"}},
		[]string{"type=volume,source=b,target=/d"})
	want := []api.Mount{{Type: "tmpfs", Target: "/t"}, {Type: "volume", Source: "b", Target: "/d"}}
	if err != nil || !reflect.DeepEqual(ms, want) {
		t.Fatalf("AddMounts = %+v, %v; want %+v", ms, err, want)
	}
}
