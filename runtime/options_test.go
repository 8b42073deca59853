package runtime

import (
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
)

// TestContainerOptions runs a container under runc with a service's
// container options: its rootfs refuses a write while its /etc files and
// /dev/shm take one, the dropped capability is gone from CapEff (the
// default a80425fb less CAP_NET_RAW, bit 13), the ulimit and the sysctl
// apply.
func TestContainerOptions(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c, logs := h.runToExit(t, Spec{
		Command: []string{"sh", "-c", `
			touch /rootfs-write 2>/dev/null && echo ROOT-WRITABLE || echo ROOT-READONLY
			echo "10.0.0.9 extra" >> /etc/hosts && echo HOSTS-WRITABLE
			touch /dev/shm/x && echo SHM-WRITABLE
			grep CapEff /proc/self/status
			echo "nofile=$(ulimit -n):$(ulimit -Hn)"
			echo "somaxconn=$(cat /proc/sys/net/core/somaxconn)"`},
		ReadOnly: true,
		CapDrop:  []string{"NET_RAW"},
		Ulimits:  []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}},
		Sysctls:  map[string]string{"net.core.somaxconn": "1234"},
	})
	if c.ExitCode != 0 {
		t.Errorf("exit %d", c.ExitCode)
	}
	for _, want := range []string{"ROOT-READONLY\n", "HOSTS-WRITABLE\n", "SHM-WRITABLE\n", "CapEff:\t00000000a80405fb\n",
		"nofile=1024:2048\n", "somaxconn=1234\n"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}
