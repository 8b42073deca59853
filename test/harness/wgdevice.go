package harness

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// WireGuardDeviceArg0 is the name the node's WireGuard device process runs
// under (overlay/wgdevice); it outlives the agent, as containers do.
const WireGuardDeviceArg0 = "shoal-wg"

// DevicePIDs returns the pids of the processes in the host's namespace
// started as arg0 (e.g. WireGuardDeviceArg0).
func (h *Host) DevicePIDs(arg0 string) []int {
	out, err := run("ip", "netns", "pids", h.NS)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		name, _, _ := bytes.Cut(cmdline, []byte{0})
		if string(name) == arg0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillWireGuardDevice SIGKILLs the host's WireGuard device process (what
// KillProcess leaves running) and waits until it is gone, its TUN device
// with it. No device is no error.
func (h *Host) KillWireGuardDevice() error {
	pids := h.DevicePIDs(WireGuardDeviceArg0)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(StopTimeout)
	for len(h.DevicePIDs(WireGuardDeviceArg0)) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("kill %s: WireGuard device %v did not exit", h.Name, pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
