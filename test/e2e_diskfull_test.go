package test

// End-to-end test of a node whose disk is full (node/diskhealth): a 4th
// node whose data dir is a small tmpfs reports itself unfit, takes no
// task, is not made a voter, and says why in node ls / node inspect; once
// its file system grows it takes tasks again. TestDiskFullLeader: the
// same for the leader, which hands leadership over.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

func TestDiskFullNode(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	h4 := c.AddHost()
	// 40 MiB, below the image store's 256 MiB reserve: the node cannot
	// fetch an image, and its raft log soon has no room either.
	smallDataDir(t, h4, "40m")
	h4.MustStart(t)
	if err := h4.Join(h1.Token(t), h1); err != nil {
		t.Fatal(err)
	}
	id4 := h4.NodeID(t)
	var n4 api.Node
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		n, err := h1.Node(id4)
		n4 = n
		return err == nil && n.Status == api.NodeReady && strings.HasPrefix(n.StatusMessage, "disk full"),
			fmt.Sprintf("status %q, message %q, err %v", n.Status, n.StatusMessage, err)
	}, "h4 ready with a disk-full status message")
	if n4.Voter {
		t.Fatal("a node with a full disk was made a voter")
	}
	if out := h1.MustCLI(t, "node", "ls"); !strings.Contains(out, "ready (disk full)") {
		t.Fatalf("node ls does not say why:\n%s", out)
	}

	// 6 replicas on 4 nodes: none on h4.
	h1.MustCLI(t, "service", "create", "-d", "--name", "web", "--replicas", "6", "bb:1", "sleep", "1000")
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		running, on4 := 0, 0
		for _, tk := range tasksOf(t, h1, "web") {
			if tk.DesiredState != api.TaskRunning {
				continue
			}
			if tk.NodeID == id4 {
				on4++
			}
			if tk.State == api.TaskRunning {
				running++
			}
		}
		if on4 > 0 {
			t.Fatalf("a task was placed on h4, whose disk is full")
		}
		return running == 6, fmt.Sprintf("%d of 6 running", running)
	}, "6 running, none on h4")

	// Room again: the message goes and h4 takes its share.
	if out, err := exec.Command("mount", "-o", "remount,size=600m", h4.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v: %s", err, out)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		n, err := h1.Node(id4)
		return err == nil && n.StatusMessage == "", fmt.Sprintf("message %q, err %v", n.StatusMessage, err)
	}, "h4's status message cleared")
	h1.MustCLI(t, "service", "scale", "-d", "web=8")
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		on4 := 0
		for _, tk := range tasksOf(t, h1, "web") {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning && tk.NodeID == id4 {
				on4++
			}
		}
		return on4 > 0, fmt.Sprintf("%d running on h4", on4)
	}, "a task running on h4 once it has room")
}

// TestDiskFullLeader: the leader's own data dir fills up (a tmpfs under
// the reserve, then to ENOSPC). It hands leadership to a fit voter
// (autopilot.PlanHandover), writes work again through the new leader, and
// once its disk has room again it does not take leadership back.
func TestDiskFullLeader(t *testing.T) {
	c := harness.New(t, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	smallDataDir(t, h1, "600m")
	c.Form(t)
	if l := c.Leader(t, 30*time.Second); l != h1 {
		t.Fatalf("leader is %s, want h1 (it ran init)", l.Name)
	}
	id1 := h1.NodeID(t)
	h2.MustCLI(t, "image", "import", busyboxTar(t), "bb:1")

	// Shrink h1's file system to 64 MiB free (under the 256 MiB reserve),
	// then fill it: its raft log writes fail.
	var st unix.Statfs_t
	if err := unix.Statfs(h1.DataDir, &st); err != nil {
		t.Fatal(err)
	}
	used := int64(st.Blocks-st.Bfree) * st.Bsize
	size := fmt.Sprintf("size=%dk", (used+(64<<20))>>10)
	if out, err := exec.Command("mount", "-o", "remount,"+size, h1.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("shrink tmpfs to %s: %v: %s", size, err, out)
	}
	_ = exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(h1.DataDir, "fill"), "bs=1M").Run() // ENOSPC expected

	var newLeader string
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		st2, err2 := h2.Status()
		st3, err3 := h3.Status()
		newLeader = st2.Leader
		return err2 == nil && err3 == nil && st2.Leader != "" && st2.Leader != id1 && st3.Leader == st2.Leader,
			fmt.Sprintf("h2 sees %q (%v), h3 sees %q (%v)", st2.Leader, err2, st3.Leader, err3)
	}, "leadership handed from h1, whose disk is full, to h2 or h3")

	// Writes work through the new leader.
	h2.MustCLI(t, "service", "create", "-d", "--name", "web", "--replicas", "2", "bb:1", "sleep", "1000")
	harness.Eventually(t, 90*time.Second, func() (bool, string) {
		running := 0
		for _, tk := range tasksOf(t, h2, "web") {
			if tk.DesiredState == api.TaskRunning && tk.State == api.TaskRunning {
				running++
			}
		}
		return running == 2, fmt.Sprintf("%d of 2 running", running)
	}, "2 web tasks running after the handover")

	// Room again: h1 says so and does not take leadership back.
	_ = os.Remove(filepath.Join(h1.DataDir, "fill"))
	if out, err := exec.Command("mount", "-o", "remount,size=600m", h1.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v: %s", err, out)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		n, err := h2.Node(id1)
		return err == nil && n.StatusMessage == "", fmt.Sprintf("message %q, err %v", n.StatusMessage, err)
	}, "h1's status message cleared")
	h2.MustCLI(t, "service", "scale", "-d", "web=3")
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		for _, h := range []*harness.Host{h1, h2, h3} {
			if st, err := h.Status(); err == nil && st.Leader != "" && st.Leader != newLeader {
				t.Fatalf("leadership moved again after h1 recovered: %s sees %q, not %q", h.Name, st.Leader, newLeader)
			}
		}
	}
}

// smallDataDir puts h's data dir on a tmpfs of size (mount's size=, e.g.
// "40m"), before h starts, and unmounts it when the test ends, after
// killing h's agent.
func smallDataDir(t *testing.T, h *harness.Host, size string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "shoal-e2e-disk", h.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		_ = h.Kill()
		_ = exec.Command("umount", "-l", h.DataDir).Run()
	})
}
