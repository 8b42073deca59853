package node

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/instance"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
	"github.com/shoal-org/shoal/node/writes"
)

// TestInitFromSnapshotRefusesBadFile: a damaged file changes nothing — the
// node stays out of any cluster and has written no cluster state.
func TestInitFromSnapshotRefusesBadFile(t *testing.T) {
	a := newTestAgent(t)
	for name, body := range map[string]string{
		"garbage":        "hello",
		"no body":        "",
		"header only":    "SHOAL-SNAPSHOT\n{\"format\":1,\"cluster_id\":\"c\",\"index\":3,\"size\":100,\"sha256\":\"00\"}\n",
		"future format":  "SHOAL-SNAPSHOT\n{\"format\":9,\"cluster_id\":\"c\",\"index\":3,\"size\":2,\"sha256\":\"00\"}\n{}",
		"wrong checksum": "SHOAL-SNAPSHOT\n{\"format\":1,\"cluster_id\":\"c\",\"index\":3,\"size\":2,\"sha256\":\"00\"}\n{}",
	} {
		t.Run(name, func(t *testing.T) {
			code, b := do(t, a.routes(), "POST", "/v1/init/snapshot", body)
			if code != http.StatusBadRequest || !strings.Contains(errorBody(t, b), "nothing changed") {
				t.Fatalf("status %d: %s", code, b)
			}
			if instance.HasState(a.cfg.DataDir) {
				t.Fatal("cluster state written for a refused file")
			}
			if _, err := a.clusterOrErr(); !errors.Is(err, ErrNoCluster) {
				t.Fatal("the node is in a cluster")
			}
		})
	}
}

func TestSnapshotRoutesWithoutCluster(t *testing.T) {
	a := newTestAgent(t)
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/snapshot"},
		{"POST", "/v1/snapshot/restore"},
	} {
		code, b := do(t, a.routes(), r.method, r.path, "x")
		if code != http.StatusPreconditionFailed {
			t.Fatalf("%s %s: status %d: %s", r.method, r.path, code, b)
		}
	}
}

// TestSnapshotRestoreRPC: the file travels after the request line; a peer
// needs a certificate, and a node in no cluster says so.
func TestSnapshotRestoreRPC(t *testing.T) {
	s := startRPCServer(t)
	var out api.SnapshotRestoreResponse
	req := wire.SnapshotRestoreRequest{Size: 5}
	err := writes.CallSnapshotRestore(rpcCtx(t), instance.RPCDialer(pki.JoinTLS(s.pki.ca.Fingerprint())), s.addr, req, []byte("hello"), &out)
	var re *wire.Error
	if !errors.As(err, &re) || !strings.Contains(re.Msg, "certificate is required") {
		t.Fatalf("without a certificate: %v", err)
	}
	err = writes.CallSnapshotRestore(rpcCtx(t), instance.RPCDialer(s.pki.client("node-b")), s.addr, req, []byte("hello"), &out)
	if !errors.As(err, &re) || !strings.Contains(re.Msg, ErrNoCluster.Error()) {
		t.Fatalf("no cluster: %v", err)
	}
}
