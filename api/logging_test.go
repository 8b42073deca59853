package api

import (
	"strings"
	"testing"
)

// TestParseLogging: docker's drivers and options that Shoal implements,
// their units and bounds, and a clear refusal of the rest.
func TestParseLogging(t *testing.T) {
	tests := []struct {
		name    string
		driver  string
		opts    map[string]string
		want    LogSettings
		wantErr string
	}{
		{"default", "", nil, LogSettings{}, ""},
		{"json-file", "json-file", map[string]string{"max-size": "10m", "max-file": "3"}, LogSettings{MaxSize: 10 << 20, MaxFiles: 3}, ""},
		{"local", "local", map[string]string{"max-size": "8k"}, LogSettings{MaxSize: 8 << 10}, ""},
		{"units", "", map[string]string{"max-size": "1G"}, LogSettings{MaxSize: 1 << 30}, ""},
		{"kb form", "", map[string]string{"max-size": "64KiB"}, LogSettings{MaxSize: 64 << 10}, ""},
		{"bytes", "", map[string]string{"max-size": "4096"}, LogSettings{MaxSize: 4096}, ""},
		{"none", "none", nil, LogSettings{Disabled: true}, ""},
		{"none with options", "none", map[string]string{"max-size": "1m"}, LogSettings{}, "log driver none takes no options (got max-size)"},
		{"syslog", "syslog", nil, LogSettings{}, `unsupported log driver "syslog": Shoal supports json-file, local, none`},
		{"fluentd", "fluentd", nil, LogSettings{}, "unsupported log driver"},
		{"compress", "local", map[string]string{"compress": "false"}, LogSettings{}, `unsupported log option "compress": Shoal supports max-size and max-file`},
		{"tag", "", map[string]string{"tag": "x"}, LogSettings{}, `unsupported log option "tag"`},
		{"bad unit", "", map[string]string{"max-size": "10t"}, LogSettings{}, `bad size "10t"`},
		{"no number", "", map[string]string{"max-size": "m"}, LogSettings{}, `bad size "m"`},
		{"negative", "", map[string]string{"max-size": "-1m"}, LogSettings{}, `bad size "-1m"`},
		{"overflow", "", map[string]string{"max-size": "99999999999999999999g"}, LogSettings{}, "bad size"},
		{"too small", "", map[string]string{"max-size": "4095"}, LogSettings{}, "must be between 4k and 1g"},
		{"too large", "", map[string]string{"max-size": "2g"}, LogSettings{}, "must be between 4k and 1g"},
		{"zero files", "", map[string]string{"max-file": "0"}, LogSettings{}, `max-file "0": must be an integer from 1 to 100`},
		{"too many files", "", map[string]string{"max-file": "101"}, LogSettings{}, "from 1 to 100"},
		{"files not a number", "", map[string]string{"max-file": "3x"}, LogSettings{}, "from 1 to 100"},
		{"total cap", "", map[string]string{"max-size": "1g", "max-file": "11"}, LogSettings{}, "exceed the 10 GiB"},
		{"total at cap", "", map[string]string{"max-size": "1g", "max-file": "10"}, LogSettings{MaxSize: 1 << 30, MaxFiles: 10}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLogging(tt.driver, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
