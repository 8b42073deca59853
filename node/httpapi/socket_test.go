package httpapi

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestListenUnix: the socket is 0600 at path and answers there, a live one
// is refused, a stale one replaced, and closing removes it, leaving nothing
// else in its directory.
func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "shoal.sock")
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a 0600 socket", st.Mode())
	}
	if got := ln.Addr().String(); got != path {
		t.Errorf("Addr %q, want %q", got, path)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}

	if ln2, err := ListenUnix(path); err == nil {
		ln2.Close()
		t.Error("a second listener on a socket that answers was not refused")
	}

	ln.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}

	// A stale socket: bound, closed, left behind (an agent that crashed).
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln, err = ListenUnix(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	defer ln.Close()
	if c, err := net.Dial("unix", path); err != nil {
		t.Errorf("replaced socket does not answer: %v", err)
	} else {
		c.Close()
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("socket dir holds %v, want the socket alone", names)
	}
}

// TestListenUnixKeepsUmask: making the socket never changes the process's
// umask. It once set 0177 around the bind while the agent's other
// goroutines ran, so whatever they created meanwhile came out 0600 or
// 0700. A goroutine watches the umask (/proc/self/status) while sockets are
// made.
func TestListenUnixKeepsUmask(t *testing.T) {
	want, err := readUmask()
	if err != nil {
		t.Skipf("cannot read the umask from /proc: %v", err)
	}
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		changed atomic.Value // the first other umask seen
	)
	wg.Go(func() {
		for !stop.Load() {
			if got, err := readUmask(); err == nil && got != want {
				changed.Store(got)
				return
			}
		}
	})
	dir := t.TempDir()
	for i := 0; i < 200 && changed.Load() == nil; i++ {
		ln, err := ListenUnix(filepath.Join(dir, "shoal.sock"))
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		ln.Close()
	}
	stop.Store(true)
	wg.Wait()
	if got := changed.Load(); got != nil {
		t.Errorf("umask went from %s to %s while the socket was made", want, got)
	}
}

// readUmask reads the process's umask without setting it.
func readUmask() (string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Umask:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", os.ErrNotExist
}
