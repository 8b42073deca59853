package dns

import (
	"errors"
	"net"
	"sync"
	"time"
)

// The TCP accept loop of miekg/dns retries a temporary Accept error at
// once. Out of file descriptors (EMFILE, ENFILE: a container opened
// connections or files until the agent's limit), every retry fails the same
// way, and the loop spun a core until descriptors came free: on a node that
// is already short of something, the DNS server took a CPU as well. So the
// listener it is given waits before each retry, as net/http's Server does:
// 5 ms, doubling up to 1 s, reset by the next connection accepted.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// backoffListener retries temporary Accept errors itself, waiting longer
// each time; Close ends a wait at once.
type backoffListener struct {
	net.Listener
	// wait sleeps d or until done is closed, whichever comes first
	// (tests record the waits instead).
	wait func(d time.Duration, done <-chan struct{})

	closeOnce sync.Once
	done      chan struct{}
}

func newBackoffListener(ln net.Listener) *backoffListener {
	return &backoffListener{Listener: ln, wait: sleepOrDone, done: make(chan struct{})}
}

func sleepOrDone(d time.Duration, done <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
}

// Accept returns the next connection, or the first error that is not
// temporary (a closed listener's included).
func (l *backoffListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !temporary(err) {
			return c, err
		}
		select {
		case <-l.done:
			return nil, err
		default:
		}
		if delay == 0 {
			delay = acceptBackoffMin
		} else {
			delay = min(2*delay, acceptBackoffMax)
		}
		l.wait(delay, l.done)
	}
}

// Close ends a wait in Accept and closes the listener.
func (l *backoffListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// temporary reports an Accept error worth retrying: net.Error's
// Temporary, which EMFILE, ENFILE and ECONNABORTED are (the test
// net/http's Server makes).
func temporary(err error) bool {
	var ne interface{ Temporary() bool }
	return errors.As(err, &ne) && ne.Temporary()
}
