package agent

// systemd readiness (Type=notify in the packaged shoal.service). systemd
// passes a unix datagram socket in $NOTIFY_SOCKET and waits for "READY=1"
// before it calls the unit started, so `systemctl start shoal` returns when
// the CLI can talk to the agent and units ordered After=shoal.service find
// it answering. This is sd_notify(3) in a few lines, not a dependency.

import (
	"context"
	"net"
	"os"
	"strings"
	"time"
)

// sdNotify sends state to systemd's notify socket; without $NOTIFY_SOCKET
// (not under systemd, or Type=simple) it does nothing.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// notifyWhenListening sends READY=1 once the agent's API socket accepts a
// connection, and STOPPING=1 when ctx ends. It returns at once when
// $NOTIFY_SOCKET is unset; otherwise it runs until ctx ends.
func notifyWhenListening(ctx context.Context, socket string, every time.Duration) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
			c.Close()
			_ = sdNotify("READY=1\nSTATUS=agent listening on " + socket)
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	<-ctx.Done()
	_ = sdNotify("STOPPING=1")
}
