package compose

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestComposeLogging: logging.driver and logging.options land in the
// spec (as --log-driver, --log-opt) with nothing reported as ignored;
// drivers and options Shoal does not implement refuse the file, naming
// the key and what is supported.
func TestComposeLogging(t *testing.T) {
	logging := func(s api.ServiceSpec) any { return []any{s.LogDriver, s.LogOptions} }
	runKeyCases(t, []keyCase{
		{
			name: "json-file with options",
			yaml: `
services:
  web:
    image: busybox
    logging:
      driver: json-file
      options: {max-size: 10m, max-file: "3"}
`,
			got:     logging,
			want:    []any{"json-file", map[string]string{"max-size": "10m", "max-file": "3"}},
			ignored: []string{},
		},
		{
			name: "options without a driver, max-file a number",
			yaml: `
services:
  web:
    image: busybox
    logging:
      options:
        max-file: 2
`,
			got:     logging,
			want:    []any{"", map[string]string{"max-file": "2"}},
			ignored: []string{},
		},
		{
			name: "none",
			yaml: `
services:
  web:
    image: busybox
    logging:
      driver: none
`,
			got:     logging,
			want:    []any{"none", map[string]string(nil)},
			ignored: []string{},
		},
		{
			name: "no logging",
			yaml: `
services:
  web:
    image: busybox
`,
			got:     logging,
			want:    []any{"", map[string]string(nil)},
			ignored: []string{},
		},
		{
			name: "syslog refused",
			yaml: `
services:
  web:
    image: busybox
    logging:
      driver: syslog
      options: {syslog-address: "udp://1.2.3.4:514"}
`,
			err: []string{"services.web.logging", `unsupported log driver "syslog": Shoal supports json-file, local, none`},
		},
		{
			name: "compress refused",
			yaml: `
services:
  web:
    image: busybox
    logging:
      driver: local
      options: {compress: "false"}
`,
			err: []string{"services.web.logging", `unsupported log option "compress": Shoal supports max-size and max-file`},
		},
		{
			name: "bad size",
			yaml: `
services:
  web:
    image: busybox
    logging:
      options: {max-size: 2g}
`,
			err: []string{"services.web.logging", "max-size 2g: must be between 4k and 1g"},
		},
	})
}
