package test

// The WireGuard device outlives the agent (overlay/wgdevice): killing a
// node's agent leaves its encrypted networks crossing hosts, and the next
// agent adopts the running device instead of rebuilding it.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api/timerslack"
	"github.com/shoal-org/shoal/test/harness"
)

// wgSocket is the UAPI socket of host h's WireGuard device.
func wgSocket(h *harness.Host) string {
	return filepath.Join(h.DataDir, "cluster", "wireguard", "device", "shoal.wg.sock")
}

// wgGet asks a device for its state (UAPI "get") and returns the pid of
// the process answering and, by peer public key (base64), the time of the
// last handshake.
func wgGet(sock string) (pid int, handshakes map[string]time.Time, err error) {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || cerr != nil {
		return 0, nil, fmt.Errorf("peer credentials: %v %v", err, cerr)
	}
	if _, err := c.Write([]byte("get=1\n\n")); err != nil {
		return 0, nil, err
	}
	handshakes = map[string]time.Time{}
	var key string
	var sec int64
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("read UAPI answer: %w", err)
		}
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "public_key":
			b, _ := hex.DecodeString(v)
			key = base64.StdEncoding.EncodeToString(b)
			handshakes[key] = time.Time{}
		case "last_handshake_time_sec":
			sec, _ = strconv.ParseInt(v, 10, 64)
			if sec != 0 {
				handshakes[key] = time.Unix(sec, 0)
			}
		case "errno":
			if v != "0" {
				return 0, nil, fmt.Errorf("UAPI errno %s", v)
			}
			return int(cred.Pid), handshakes, nil
		}
	}
}

// TestWireGuardDeviceSurvivesAgent: two hosts, an encrypted network, a
// web server on each. Host 2's agent is killed with SIGKILL and stays down
// for 3 s; ping and HTTP across the encrypted network, probed every
// 100 ms from host 1's container to host 2's, never fail — not during the
// kill, not while the agent is down, not while the next one starts. The
// new agent adopts the running device (the same process), and host 1 sees
// no new handshake with host 2: the session was never dropped. The device
// stops when its node leaves the cluster and when no encrypted network is
// left.
func TestWireGuardDeviceSurvivesAgent(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "network", "create", "--encrypted", "sec")
	h1.MustCLI(t, "service", "create", "--name", "sweb", "--mode", "global", "--network", "sec", "bb:1", "sh", "-c", canaryWebCmd)
	src, dst := crossPair(t, h1, "sweb", "sec")
	if hostOf(t, c, src) != h1 {
		src, dst = dst, src
	}
	nsSrc, dstIP := netnsOf(t, c, src), dst.IPs["sec"]
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := wgetFrom(nsSrc, "http://"+dstIP+"/")
		return err == nil && strings.Contains(out, canary), fmt.Sprintf("%v %q", err, out)
	}, "the encrypted network carries HTTP from h1 to h2")

	key2 := nodeKey(t, h1, dst.NodeID)
	// (Errors, not fatal: the probe below is the heart of the test.)
	pidBefore, _, err := wgGet(wgSocket(h2))
	if err != nil {
		t.Errorf("h2's device: %v", err)
	}
	// The agent's threads run with a coarse timer slack; the device it
	// forked keeps the default (api/timerslack).
	checkTimerSlack(t, h2.PID(), pidBefore)
	// The session settled: two devices that met at the same moment may
	// have crossed their first initiations, and one is retried 5 s later;
	// the session to watch is the one that then stays.
	var session, changed time.Time
	settle, cancelSettle := context.WithTimeout(t.Context(), 60*time.Second)
	_, hsErr := harness.Poll(settle, func() (bool, string) {
		_, hs, err := wgGet(wgSocket(h1))
		if err != nil {
			return false, err.Error()
		}
		if got := hs[key2]; !got.Equal(session) || changed.IsZero() {
			session, changed = got, time.Now()
		}
		return !session.IsZero() && time.Since(changed) >= 7*time.Second, fmt.Sprintf("h1's handshakes %v", hs)
	})
	cancelSettle()
	if hsErr != nil {
		t.Errorf("h1's session with h2 (%s) settles: %v", key2, hsErr)
	}

	// The probe: a ping every 100 ms, every fifth an HTTP fetch too.
	var mu sync.Mutex
	var failures []string
	probes := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var ferr string
			if out, err := inNS(nsSrc, "ping", "-c1", "-W1", dstIP); err != nil {
				ferr = fmt.Sprintf("ping: %v %q", err, out)
			} else if i%5 == 0 {
				if out, err := wgetFrom(nsSrc, "http://"+dstIP+"/"); err != nil || !strings.Contains(out, canary) {
					ferr = fmt.Sprintf("http: %v %q", err, out)
				}
			}
			mu.Lock()
			probes++
			if ferr != "" {
				failures = append(failures, time.Now().Format("15:04:05.000")+" "+ferr)
			}
			mu.Unlock()
		}
	}()
	stopProbe := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}
	t.Cleanup(stopProbe)
	probed := func() int { mu.Lock(); defer mu.Unlock(); return probes }
	// waitProbes lets n more probes run (the probe paces itself).
	waitProbes := func(n int, what string) {
		t.Helper()
		want := probed() + n
		harness.Eventually(t, 120*time.Second, func() (bool, string) {
			return probed() >= want, fmt.Sprintf("%d probes of %d", probed(), want)
		}, what)
	}

	waitProbes(5, "probes before the kill")
	if err := h2.KillProcess(); err != nil {
		t.Fatal(err)
	}
	// 3 s of agent downtime: 30 probes.
	waitProbes(30, "probes while h2's agent is down")
	if pids := h2.DevicePIDs(harness.WireGuardDeviceArg0); len(pids) != 1 || pids[0] != pidBefore {
		t.Errorf("h2's device processes with the agent down: %v, want [%d]", pids, pidBefore)
	}
	if err := h2.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	_, err = harness.Poll(ctx, func() (bool, string) {
		return countLines(t, h2, "wireguard: adopted the running device") == 1, h2.LogTail(5)
	})
	cancel()
	if err != nil {
		t.Errorf("h2's new agent adopts the running device: %v", err)
	}
	waitProbes(20, "probes after the adoption")
	stopProbe()
	mu.Lock()
	if len(failures) > 0 {
		t.Errorf("%d of %d probes across the encrypted network failed around h2's agent restart:\n%s",
			len(failures), probes, strings.Join(failures, "\n"))
	}
	t.Logf("%d probes, %d failed", probes, len(failures))
	mu.Unlock()
	if n := countLines(t, h2, "replacing the running device"); n != 0 {
		t.Errorf("h2 replaced its device %d times:\n%s", n, h2.LogTail(40))
	}

	pidAfter, _, err := wgGet(wgSocket(h2))
	if err != nil {
		t.Fatal(err)
	}
	if pidAfter != pidBefore {
		t.Fatalf("h2's device process changed across the agent restart: %d -> %d", pidBefore, pidAfter)
	}
	// No new handshake: the session h1 had before the kill is the one in
	// use. (wireguard-go re-keys a session on its own after 120 s; a newer
	// handshake from then on says nothing.)
	_, hs, err := wgGet(wgSocket(h1))
	if err != nil {
		t.Fatal(err)
	}
	if got := hs[key2]; !got.Equal(session) && got.Sub(session) < 119*time.Second {
		t.Fatalf("h1 handshook with h2 again at %s (session from %s): the restart dropped the session", got, session)
	}
	// And the adopted device is fully managed: a peer change (a new
	// network) goes through the new agent.
	h1.MustCLI(t, "network", "create", "--encrypted", "sec2")
	h1.MustCLI(t, "service", "create", "--name", "sweb2", "--mode", "global", "--network", "sec2", "bb:1", "sh", "-c", canaryWebCmd)
	a2, b2 := crossPair(t, h1, "sweb2", "sec2")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		out, err := wgetFrom(netnsOf(t, c, a2), "http://"+b2.IPs["sec2"]+"/")
		return err == nil && strings.Contains(out, canary), fmt.Sprintf("%v %q", err, out)
	}, "a network made after the adoption crosses hosts")

	// The device goes when the node leaves the cluster (its socket goes
	// with the cluster directory)...
	if _, stderr, err := h2.CLI("leave"); err != nil {
		t.Fatalf("leave h2: %v %s", err, stderr)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		pids := h2.DevicePIDs(harness.WireGuardDeviceArg0)
		return len(pids) == 0, fmt.Sprintf("h2's device processes %v", pids)
	}, "h2's device stops when h2 leaves the cluster")
	// ...and when no encrypted network is left.
	for _, svc := range []string{"sweb", "sweb2"} {
		h1.MustCLI(t, "service", "rm", svc)
	}
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		for _, n := range []string{"sec", "sec2"} {
			if _, stderr, err := h1.CLI("network", "rm", n); err != nil && !strings.Contains(stderr, "no such network") {
				return false, fmt.Sprintf("network rm %s: %v %s", n, err, stderr)
			}
		}
		return true, ""
	}, "the encrypted networks are removed")
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		pids := h1.DevicePIDs(harness.WireGuardDeviceArg0)
		return len(pids) == 0, fmt.Sprintf("h1's device processes %v", pids)
	}, "h1's device stops when no encrypted network is left")
}

// TestWireGuardDeviceLeftoverStopped: the last encrypted network is removed
// while host 2's agent is down. The device that agent left running has no
// handle to close it; the next agent stops it once its replica has caught
// up and shows no encrypted network (until then "none" may only mean "not
// replayed yet").
func TestWireGuardDeviceLeftoverStopped(t *testing.T) {
	c, _ := svcCluster(t, 2)
	h1, h2 := c.Host(1), c.Host(2)
	h1.MustCLI(t, "network", "create", "--encrypted", "sec")
	h1.MustCLI(t, "service", "create", "--name", "sweb", "--mode", "global", "--network", "sec", "bb:1", "sh", "-c", canaryWebCmd)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		pids := h2.DevicePIDs(harness.WireGuardDeviceArg0)
		return len(pids) == 1, fmt.Sprintf("h2's device processes %v", pids)
	}, "h2 runs its WireGuard device")
	if err := h2.Stop(); err != nil {
		t.Fatal(err)
	}
	if pids := h2.DevicePIDs(harness.WireGuardDeviceArg0); len(pids) != 1 {
		t.Fatalf("h2's device processes with the agent stopped: %v, want one (released, not closed)", pids)
	}
	h1.MustCLI(t, "service", "rm", "sweb")
	harness.Eventually(t, 120*time.Second, func() (bool, string) {
		_, stderr, err := h1.CLI("network", "rm", "sec")
		return err == nil || strings.Contains(stderr, "no such network"), fmt.Sprintf("network rm sec: %v %s", err, stderr)
	}, "the encrypted network is removed while h2 is down")
	if err := h2.Start(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		pids := h2.DevicePIDs(harness.WireGuardDeviceArg0)
		return len(pids) == 0, fmt.Sprintf("h2's device processes %v", pids)
	}, "h2's new agent stops the device left running")
	if pids := h1.DevicePIDs(harness.WireGuardDeviceArg0); len(pids) != 0 {
		t.Errorf("h1's device processes with no encrypted network: %v", pids)
	}
}

// checkTimerSlack: every thread of the process agent has timerslack.Agent of slack
// (api/timerslack, the agent's start) and the process child, which the
// agent started, has the kernel's default of 50 µs (the harness starts
// agents with the default).
func checkTimerSlack(t *testing.T, agent, child int) {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", agent))
	if err != nil {
		t.Errorf("agent's threads: %v", err)
		return
	}
	for _, e := range tasks {
		b, err := os.ReadFile("/proc/" + e.Name() + "/timerslack_ns")
		if want := strconv.FormatInt(timerslack.Agent.Nanoseconds(), 10); err == nil && strings.TrimSpace(string(b)) != want {
			t.Errorf("agent %d thread %s: timer slack %s ns, want %s", agent, e.Name(), strings.TrimSpace(string(b)), want)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", child))
	if err != nil {
		t.Errorf("child %d: %v", child, err)
	} else if got := strings.TrimSpace(string(b)); got != "50000" {
		t.Errorf("child %d of agent %d: timer slack %s ns, want the default 50000", child, agent, got)
	}
}
