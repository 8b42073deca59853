package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/api/atomicfile"
	"github.com/shoal-org/shoal/node/joining"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

func TestDedupe(t *testing.T) {
	tests := []struct {
		in   []string
		drop string
		want []string
	}{
		{nil, "", nil},
		{[]string{"a"}, "", []string{"a"}},
		{[]string{"a", "b", "a", "c", "b"}, "", []string{"a", "b", "c"}},
		{[]string{"self", "a", "self", "b"}, "self", []string{"a", "b"}},
		{[]string{"self"}, "self", nil},
		{[]string{"", "a"}, "", []string{"a"}},
	}
	for _, tt := range tests {
		if got := membership.Dedupe(tt.in, tt.drop); !slices.Equal(got, tt.want) {
			t.Errorf("dedupe(%q, %q) = %q, want %q", tt.in, tt.drop, got, tt.want)
		}
	}
}

func TestShortID(t *testing.T) {
	for in, want := range map[string]string{"": "", "abc": "abc", "abcdefghijkl": "abcdefghijkl", "abcdefghijklmnop": "abcdefghijkl"} {
		if got := api.ShortID(in); got != want {
			t.Errorf("api.ShortID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteJSONFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "x.json")
	if err := atomicfile.WriteJSON(p, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.WriteJSON(p, map[string]int{"a": 2}); err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if b, err := os.ReadFile(p); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["a"] != 2 {
		t.Fatalf("read back %v", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("temp files left behind: %q", names)
	}
	raw, _ := os.ReadFile(p)
	if !json.Valid(raw) {
		t.Errorf("not JSON: %s", raw)
	}
}

// TestExplainJoinErrorAfterHandshake: when a real cluster node (the CA pinned
// by the token verified) hangs up before answering — a leader that dies
// while the join is forwarded, say — the user must not be told the address
// is "not a Shoal cluster node": only errors of the connect step say that.
func TestExplainJoinErrorAfterHandshake(t *testing.T) {
	p := newTestPKI(t, "cluster-a")
	cert, _ := p.node("leader")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A node that completes TLS and the protocol byte, then hangs up.
	m := newMux(ln, pki.ServerTLS(cert, p.ca.Pool(), nil), slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(c *tls.Conn) { c.Close() }, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	err = callRPC(cctx, ln.Addr().String(), pki.JoinTLS(p.ca.Fingerprint()), wire.MethodJoin, wire.JoinRequest{}, nil, nil)
	if err == nil {
		t.Fatal("a node that hangs up answered")
	}
	msg := joining.Explain(ln.Addr().String(), err).Error()
	if strings.Contains(msg, "not a Shoal cluster node") {
		t.Errorf("the handshake with the pinned CA succeeded, yet the error says %q", msg)
	}
}
