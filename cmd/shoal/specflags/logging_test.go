package specflags

import (
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestLogFlags: --log-driver and --log-opt of `service create` and
// `service update`, the spec fields they set, and what they refuse
// (naming the flag and what Shoal supports) without changing the spec.
func TestLogFlags(t *testing.T) {
	sized := func(s *api.ServiceSpec) {
		s.LogDriver, s.LogOptions = "json-file", map[string]string{"max-size": "10m", "max-file": "3"}
	}
	tests := []struct {
		name       string
		update     bool
		from       func(*api.ServiceSpec)
		args       []string
		wantDriver string
		wantOpts   map[string]string
		err        string
	}{
		{name: "driver and options", args: []string{"--log-driver", "json-file", "--log-opt", "max-size=10m", "--log-opt", "max-file=3"},
			wantDriver: "json-file", wantOpts: map[string]string{"max-size": "10m", "max-file": "3"}},
		{name: "options alone", args: []string{"--log-opt", "max-size=8k"}, wantOpts: map[string]string{"max-size": "8k"}},
		{name: "local", args: []string{"--log-driver", "local"}, wantDriver: "local"},
		{name: "none", args: []string{"--log-driver", "none"}, wantDriver: "none"},
		{name: "no flags", args: []string{"--replicas", "2"}},
		{name: "syslog", args: []string{"--log-driver", "syslog"},
			err: `--log-driver: unsupported log driver "syslog": Shoal supports json-file, local, none`},
		{name: "compress", args: []string{"--log-opt", "compress=true"}, err: `--log-opt: unsupported log option "compress": Shoal supports max-size and max-file`},
		{name: "not key=value", args: []string{"--log-opt", "max-size"}, err: `--log-opt: "max-size": want KEY=VALUE`},
		{name: "empty value on create", args: []string{"--log-opt", "max-size="}, err: "want KEY=VALUE"},
		{name: "bad size", args: []string{"--log-opt", "max-size=10x"}, err: `--log-opt: log option max-size: bad size "10x"`},
		{name: "too small", args: []string{"--log-opt", "max-size=1k"}, err: "must be between 4k and 1g"},
		{name: "zero files", args: []string{"--log-opt", "max-file=0"}, err: "must be an integer from 1 to 100"},
		{name: "none with options", args: []string{"--log-driver", "none", "--log-opt", "max-size=1m"}, err: "log driver none takes no options"},
		{name: "update option keeps the others", update: true, from: sized, args: []string{"--log-opt", "max-file=5"},
			wantDriver: "json-file", wantOpts: map[string]string{"max-size": "10m", "max-file": "5"}},
		{name: "update removes an option", update: true, from: sized, args: []string{"--log-opt", "max-size="},
			wantDriver: "json-file", wantOpts: map[string]string{"max-file": "3"}},
		{name: "update to none clears the options", update: true, from: sized, args: []string{"--log-driver", "none"}, wantDriver: "none"},
		{name: "update leaves logging alone", update: true, from: sized, args: []string{"--replicas", "1"},
			wantDriver: "json-file", wantOpts: map[string]string{"max-size": "10m", "max-file": "3"}},
		{name: "update bad option changes nothing", update: true, from: sized, args: []string{"--log-opt", "tag=x"}, err: `unsupported log option "tag"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := api.ServiceSpec{Name: "web", Image: "nginx", Mode: api.ModeReplicated, Replicas: 1}
			if tt.from != nil {
				tt.from(&from)
			}
			got, err := applyArgs(t, tt.update, from, tt.args...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.LogDriver != tt.wantDriver || !reflect.DeepEqual(got.LogOptions, tt.wantOpts) {
				t.Errorf("driver %q options %v, want %q %v", got.LogDriver, got.LogOptions, tt.wantDriver, tt.wantOpts)
			}
		})
	}
}
