package test

// End-to-end test of a node whose disk is full (node/diskhealth): a 4th
// node whose data dir is a small tmpfs reports itself unfit, takes no
// task, is not made a voter, and says why in node ls / node inspect; once
// its file system grows it takes tasks again.

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/test/harness"
)

func TestDiskFullNode(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1 := c.Host(1)
	h4 := c.AddHost()
	// 40 MiB, below the image store's 256 MiB reserve: the node cannot
	// fetch an image, and its raft log soon has no room either.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40m", "shoal-e2e-disk", h4.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		_ = h4.Kill()
		_ = exec.Command("umount", "-l", h4.DataDir).Run()
	})
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
