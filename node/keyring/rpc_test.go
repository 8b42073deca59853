package keyring

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/wire"
)

// TestAnswerTokenRefusesWorkers: the join token goes to an admin's node
// only, as a rotation does. A worker's root that read it could join a
// second identity of its own, recorded as a manager, and change the
// cluster through it.
func TestAnswerTokenRefusesWorkers(t *testing.T) {
	tc := newTestCluster(t)
	k := tc.keeper("leader", tc.dir)
	for _, tt := range []struct {
		name   string
		peer   string
		rotate bool
		want   error  // nil: answered
		msg    string // in the refusal
	}{
		{name: "manager reads", peer: "m"},
		{name: "leader's own node reads", peer: "leader"},
		{name: "worker reads", peer: "w", want: authz.ErrWorker, msg: "workers cannot read the join token"},
		{name: "worker rotates", peer: "w", rotate: true, want: authz.ErrWorker, msg: "workers cannot change the cluster"},
		{name: "not a member", peer: "stranger", msg: "not a member"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := k.AnswerToken(context.Background(), tt.peer, wire.TokenRequest{Rotate: tt.rotate})
			if tt.want == nil && tt.msg == "" {
				if err != nil || resp == nil || resp.Secret != tc.secret {
					t.Fatalf("AnswerToken(%s) = %+v, %v; want the secret", tt.peer, resp, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("AnswerToken(%s) answered %+v; want a refusal", tt.peer, resp)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("refusal %v does not wrap %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("refusal %q does not say %q", err, tt.msg)
			}
			// A refusal crosses the cluster port with a code the caller
			// does not retry.
			if wire.ErrorCode(err) == wire.CodeNotLeader {
				t.Errorf("refusal %v travels as not_leader", err)
			}
		})
	}
	// A refused rotation changed nothing.
	if c := tc.store.Cluster(); !VerifyJoinSecret(c, tc.secret) {
		t.Error("the join secret changed")
	}
}

// TestCurrentSecretOnWorker: a worker's own API does not print the token,
// not even when the worker still holds the KEK (a voter the autopilot has
// not demoted yet), and asks nothing of the leader.
func TestCurrentSecretOnWorker(t *testing.T) {
	tc := newTestCluster(t)
	forwarded := false
	w := tc.keeper("w", tc.dir) // tc.dir holds the KEK
	w.Forward = func(context.Context, func(context.Context, string) error) error {
		forwarded = true
		return errors.New("unexpected")
	}
	s, err := w.CurrentSecret(context.Background(), tc.store.Cluster())
	if err == nil {
		t.Fatalf("a worker read the join secret %q", s)
	}
	if !errors.Is(err, authz.ErrForbidden) || !strings.Contains(err.Error(), "workers cannot read the join token") {
		t.Errorf("refusal %v: want ErrForbidden saying workers cannot read the join token", err)
	}
	if forwarded {
		t.Error("the worker asked the leader")
	}
	m := tc.keeper("m", tc.dir)
	if s, err := m.CurrentSecret(context.Background(), tc.store.Cluster()); err != nil || s != tc.secret {
		t.Fatalf("manager: CurrentSecret = %q, %v", s, err)
	}
}
