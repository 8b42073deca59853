package runtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

// TestContainerOptions runs a container under runc with a service's
// container options: its rootfs refuses a write while its /etc files and
// /dev/shm take one, the dropped capability is gone from CapEff (the
// default a80425fb less CAP_NET_RAW, bit 13), the ulimit, the sysctl and
// the extra /etc/hosts line apply.
func TestContainerOptions(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c, logs := h.runToExit(t, Spec{
		Command: []string{"sh", "-c", `
			touch /rootfs-write 2>/dev/null && echo ROOT-WRITABLE || echo ROOT-READONLY
			echo "10.0.0.9 extra" >> /etc/hosts && echo HOSTS-WRITABLE
			touch /dev/shm/x && echo SHM-WRITABLE
			grep CapEff /proc/self/status
			echo "nofile=$(ulimit -n):$(ulimit -Hn)"
			echo "somaxconn=$(cat /proc/sys/net/core/somaxconn)"
			grep -w db /etc/hosts`},
		ReadOnly:   true,
		CapDrop:    []string{"NET_RAW"},
		Ulimits:    []api.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}},
		Sysctls:    map[string]string{"net.core.somaxconn": "1234"},
		ExtraHosts: []string{"db:10.0.0.5"},
	})
	if c.ExitCode != 0 {
		t.Errorf("exit %d", c.ExitCode)
	}
	for _, want := range []string{"ROOT-READONLY\n", "HOSTS-WRITABLE\n", "SHM-WRITABLE\n", "CapEff:\t00000000a80405fb\n",
		"nofile=1024:2048\n", "somaxconn=1234\n", "10.0.0.5\tdb\n"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

// TestStopSignal: a stop sends the container's stop signal, which
// shoal-init passes on to the command: its trap runs and sets the exit
// code (with SIGTERM, which sh does not trap here, it would die of it:
// 143).
func TestStopSignal(t *testing.T) {
	h := startHarness(t, testConfig(t))
	c := h.run(t, Spec{Image: "busybox", StopSignal: "SIGQUIT", Command: []string{"sh", "-c",
		`trap 'echo got-quit; exit 7' QUIT; echo ready; while true; do sleep 0.1; done`}})
	poll(t, "trap set", 10*time.Second, func() bool { return strings.Contains(h.logs(t, c.ID), "ready") })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := h.rt.Stop(ctx, c.ID, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c.ExitCode != 7 || !strings.Contains(h.logs(t, c.ID), "got-quit") {
		t.Errorf("exit %d, logs %q: want 7 from the QUIT trap", c.ExitCode, h.logs(t, c.ID))
	}
}
