package agent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// READY=1 goes out once the API socket answers, not before; STOPPING=1 when
// the agent stops.
func TestNotifyWhenListening(t *testing.T) {
	dir := t.TempDir()
	notify := filepath.Join(dir, "notify")
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	t.Setenv("NOTIFY_SOCKET", notify)
	recv := func(d time.Duration) string {
		_ = pc.SetReadDeadline(time.Now().Add(d))
		buf := make([]byte, 512)
		n, err := pc.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}

	sock := filepath.Join(dir, "api.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); notifyWhenListening(ctx, sock, 5*time.Millisecond) }()

	if msg := recv(200 * time.Millisecond); msg != "" {
		t.Fatalf("notified %q before the API listened", msg)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if msg := recv(10 * time.Second); !strings.HasPrefix(msg, "READY=1\n") {
		t.Fatalf("got %q, want READY=1", msg)
	}
	cancel()
	<-done
	if msg := recv(10 * time.Second); msg != "STOPPING=1" {
		t.Fatalf("got %q, want STOPPING=1", msg)
	}
}

func TestSdNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	os.Unsetenv("NOTIFY_SOCKET")
	if err := sdNotify("READY=1"); err != nil {
		t.Fatal(err)
	}
	notifyWhenListening(context.Background(), "/nonexistent", time.Millisecond) // returns at once
}
