package image

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"
)

// TestPullRetries: errors of a registry that cannot be reached (its name
// does not resolve, its address refuses or drops the connection) are not
// retried; the transient ones go-containerregistry retries still are.
// A DNS timeout used to be retried three times (34 s for an offline pull).
func TestPullRetries(t *testing.T) {
	get := func(err error) error { return &url.Error{Op: "Get", URL: "https://index.docker.io/v2/", Err: err} }
	dial := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"dns timeout", get(dial(&net.DNSError{Err: "i/o timeout", Name: "index.docker.io", IsTimeout: true, IsTemporary: true})), false},
		{"no such host", get(dial(&net.DNSError{Err: "no such host", Name: "reg.invalid", IsNotFound: true})), false},
		{"connection refused", get(dial(syscall.ECONNREFUSED)), false},
		{"dial timeout", get(dial(&timeoutErr{})), false},
		{"deadline", get(context.DeadlineExceeded), false},
		{"reset mid-transfer", get(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true},
		{"unexpected EOF", fmt.Errorf("read layer: %w", io.ErrUnexpectedEOF), true},
		{"read timeout", get(&net.OpError{Op: "read", Net: "tcp", Err: &timeoutErr{}}), true},
		{"other", fmt.Errorf("manifest unknown"), false},
	} {
		if got := pullRetries(tc.err); got != tc.want {
			t.Errorf("%s: pullRetries(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (*timeoutErr) Error() string   { return "i/o timeout" }
func (*timeoutErr) Timeout() bool   { return true }
func (*timeoutErr) Temporary() bool { return true }
