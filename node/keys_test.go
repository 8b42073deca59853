package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

// TestJoinReplyForeignCARefused: a node reached through a pinned TLS
// handshake answers the join with another CA; the joiner refuses and writes
// nothing.
func TestJoinReplyForeignCARefused(t *testing.T) {
	pinned := newTestPKI(t, "cluster-a")
	foreign := newTestPKI(t, "cluster-b")
	cert, _ := pinned.node("leader")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	answer := func(c *tls.Conn) {
		defer c.Close()
		line, err := bufio.NewReader(c).ReadBytes('\n')
		if err != nil {
			return
		}
		var req wire.Request
		_ = json.Unmarshal(line, &req)
		var jr wire.JoinRequest
		_ = json.Unmarshal(req.Body, &jr)
		// A certificate for the joiner's own key and ID, from the foreign CA.
		certPEM, _, err := foreign.ca.SignCSR(jr.CSR, jr.NodeID, nil, time.Now(), time.Hour)
		if err != nil {
			t.Errorf("sign: %v", err)
			return
		}
		body, _ := json.Marshal(wire.JoinResponse{ClusterID: "cluster-b", CertPEM: certPEM, CAPEM: foreign.ca.CertPEM(),
			GossipKeys: [][]byte{make([]byte, 32)}})
		b, _ := json.Marshal(wire.Response{Body: body})
		_, _ = c.Write(append(b, '\n'))
	}
	m := instance.NewMux(ln, pki.ServerTLS(cert, pinned.ca.Pool(), nil), slog.New(slog.NewTextHandler(io.Discard, nil)), answer, nil)
	mctx, mcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(mctx) }()
	defer func() { mcancel(); <-done }()

	a := newTestAgent(t)
	tok := pki.FormatToken(pinned.ca.Fingerprint(), pki.NewSecret())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = a.joinCluster(ctx, api.JoinRequest{Token: tok, Addr: ln.Addr().String()})
	if !errors.Is(err, pki.ErrCAMismatch) {
		t.Fatalf("join err = %v, want ErrCAMismatch", err)
	}
	if _, statErr := os.Stat(instance.Dir(a.cfg.DataDir)); !errors.Is(statErr, os.ErrNotExist) {
		t.Fatalf("join refused but %s exists (%v)", instance.Dir(a.cfg.DataDir), statErr)
	}
	if _, err := a.clusterOrErr(); err == nil {
		t.Fatal("a cluster was started")
	}
}
