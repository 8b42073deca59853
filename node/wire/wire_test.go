package wire

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/authz"
)

// TestErrorCodesRoundTrip: every refusal that crosses the wire by code is
// the same sentinel on the other side, so callers test forwarded and
// local errors alike.
func TestErrorCodesRoundTrip(t *testing.T) {
	codes := map[string]bool{}
	for _, s := range sentinels {
		if codes[s.code] {
			t.Errorf("code %q used twice", s.code)
		}
		codes[s.code] = true
		err := fmt.Errorf("update service web: %w", s.err)
		code := ErrorCode(err)
		if code != s.code {
			t.Errorf("%v travels as %q, want %q", s.err, code, s.code)
		}
		if back := (&Error{Code: code, Msg: err.Error()}); !errors.Is(back, s.err) {
			t.Errorf("code %q does not come back as %v", code, s.err)
		}
	}
	for _, want := range []error{authz.ErrForbidden, authz.ErrWorker, consensus.ErrInUse, consensus.ErrVersionMismatch} {
		if ErrorCode(want) == "" {
			t.Errorf("%v travels without a code", want)
		}
	}
	// Retryable failures travel as not_leader and come back as ErrNotLeader.
	for _, err := range []error{consensus.ErrNotLeader, consensus.ErrTimeout, consensus.ErrShutdown} {
		if c := ErrorCode(fmt.Errorf("apply: %w", err)); c != CodeNotLeader {
			t.Errorf("%v travels as %q", err, c)
		}
	}
	if !errors.Is(&Error{Code: CodeNotLeader}, consensus.ErrNotLeader) {
		t.Error("not_leader does not come back as ErrNotLeader")
	}
	// A peer's error keeps its code when passed on; others have none.
	if c := ErrorCode(fmt.Errorf("forward: %w", &Error{Code: CodeRefused, Msg: "no"})); c != CodeRefused {
		t.Errorf("a forwarded refusal travels as %q", c)
	}
	if c := ErrorCode(errors.New("disk on fire")); c != "" {
		t.Errorf("a plain error travels as %q", c)
	}
	if errors.Is(&Error{Code: CodeRefused}, consensus.ErrInvalid) {
		t.Error("refused is not a consensus sentinel")
	}
}

func TestDecodeRequest(t *testing.T) {
	for line, ok := range map[string]bool{
		`{"method":"ping"}`: true,
		`{"method":"blob","body":{"digest":"sha256:00"}}` + "\n": true,
		`{"method":""}`:    false,
		`{}`:               false,
		`{"method":1}`:     false,
		`{"method":"ping"`: false,
	} {
		req, err := DecodeRequest([]byte(line))
		if (err == nil) != ok {
			t.Errorf("%q: %+v, %v", line, req, err)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "malformed rpc request") {
			t.Errorf("%q: error %q", line, err)
		}
	}
}

func TestReadLineLimit(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("0123456789\nrest"), 16)
	if line, err := ReadLine(r, 11); err != nil || string(line) != "0123456789\n" {
		t.Fatalf("%q, %v", line, err)
	}
	long := strings.Repeat("x", 100) + "\n"
	if _, err := ReadLine(bufio.NewReaderSize(strings.NewReader(long), 16), 50); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("a line past the limit: %v", err)
	}
}
