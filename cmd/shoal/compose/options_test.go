package compose

import (
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestComposeContainerOptions: the container options of a compose
// service land in its spec, none reported as ignored, and bad values are
// refused naming the key.
func TestComposeContainerOptions(t *testing.T) {
	runKeyCases(t, []keyCase{
		{
			name: "read_only",
			yaml: `
services:
  app:
    image: busybox
    read_only: true
`,
			got:     func(s api.ServiceSpec) any { return s.ReadOnly },
			want:    true,
			ignored: []string{},
		},
	})
}
