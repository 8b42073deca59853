package dns

import (
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeListener fails Accept with each of errs in turn, then hands out a
// connection; once errs is empty and no connection is left it fails with
// EMFILE for good (forever true) or net.ErrClosed.
type fakeListener struct {
	mu      sync.Mutex
	errs    []error
	conns   int
	forever bool
	closed  bool
	calls   int
}

func emfile() error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

func (f *fakeListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	switch {
	case f.closed:
		return nil, net.ErrClosed
	case len(f.errs) > 0:
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	case f.conns > 0:
		f.conns--
		a, b := net.Pipe()
		_ = b.Close()
		return a, nil
	case f.forever:
		return nil, emfile()
	}
	return nil, net.ErrClosed
}

func (f *fakeListener) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }

// backoffOf is the backoffListener inside the TCP server's listener chain.
func backoffOf(t *testing.T, l net.Listener) *backoffListener {
	t.Helper()
	ll, ok := l.(*limitListener)
	if !ok {
		t.Fatalf("TCP listener is %T, want *limitListener", l)
	}
	b, ok := ll.Listener.(*backoffListener)
	if !ok {
		t.Fatalf("limitListener wraps %T, want *backoffListener: Accept would retry EMFILE at once", ll.Listener)
	}
	return b
}

// TestAcceptBackoffEMFILE: out of descriptors, the listener the TCP
// server accepts from waits 5 ms, doubling up to 1 s, before each retry,
// and starts again from 5 ms after a connection is accepted. Before,
// miekg/dns's loop called Accept again at once and spun a core.
func TestAcceptBackoffEMFILE(t *testing.T) {
	var errs []error
	for range 10 {
		errs = append(errs, emfile())
	}
	fake := &fakeListener{errs: errs, conns: 2}
	d := New(Config{Addr: "127.0.0.1:0"})
	l := d.tcpListener(fake)
	var waits []time.Duration
	backoffOf(t, l).wait = func(d time.Duration, _ <-chan struct{}) { waits = append(waits, d) }

	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	_ = c.Close()
	ms := time.Millisecond
	want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second}
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}

	waits = nil
	fake.mu.Lock()
	fake.errs = []error{emfile(), emfile()}
	fake.mu.Unlock()
	c, err = l.Accept()
	if err != nil {
		t.Fatalf("second Accept: %v", err)
	}
	_ = c.Close()
	if want := []time.Duration{5 * ms, 10 * ms}; !slices.Equal(waits, want) {
		t.Fatalf("after a connection, waits %v, want %v (the backoff starts again)", waits, want)
	}
}

// TestAcceptBackoffPassesOtherErrors: an error that is not temporary (a
// closed listener) comes back at once, with no wait, so the server stops.
func TestAcceptBackoffPassesOtherErrors(t *testing.T) {
	fake := &fakeListener{}
	l := newBackoffListener(fake)
	l.wait = func(time.Duration, <-chan struct{}) { t.Error("waited on a permanent error") }
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept: %v, want net.ErrClosed", err)
	}
}

// TestAcceptBackoffClose: Close ends a wait at once, and Accept returns
// instead of retrying: the server's shutdown is not held up by a backoff.
func TestAcceptBackoffClose(t *testing.T) {
	fake := &fakeListener{forever: true}
	l := newBackoffListener(fake)
	waiting := make(chan struct{}, 1)
	l.wait = func(d time.Duration, done <-chan struct{}) {
		select {
		case waiting <- struct{}{}:
		default:
		}
		<-done // a wait that only Close ends
	}
	res := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		res <- err
	}()
	<-waiting
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("Accept returned a connection after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
}
