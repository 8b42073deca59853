package handlers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func TestCheckObject(t *testing.T) {
	cases := []struct {
		req api.SecretCreateRequest
		ok  bool
	}{
		{api.SecretCreateRequest{Name: "db_pass", Data: []byte("x")}, true},
		{api.SecretCreateRequest{Name: "max", Data: make([]byte, api.MaxSecretSize)}, true},
		{api.SecretCreateRequest{Name: "big", Data: make([]byte, api.MaxSecretSize+1)}, false},
		{api.SecretCreateRequest{Name: "empty"}, false},
		{api.SecretCreateRequest{Name: "../x", Data: []byte("x")}, false},
		{api.SecretCreateRequest{Name: "", Data: []byte("x")}, false},
	}
	for _, tc := range cases {
		err := CheckObject(tc.req, true)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, consensus.ErrInvalid)) {
			t.Errorf("%s (%d bytes): %v", tc.req.Name, len(tc.req.Data), err)
		}
	}
}

func TestCheckFileRefs(t *testing.T) {
	store := consensus.NewStore()
	machine := fsm.New(store)
	machine.ApplyCommand(1, command.CreateSecret{Secret: consensus.Secret{ID: "s1", Name: "pw", Size: 1, KEKID: "k", Sealed: make([]byte, 30)}})
	machine.ApplyCommand(2, command.CreateConfig{Config: consensus.ConfigObject{ID: "c1", Name: "conf", Data: []byte("x")}})
	machine.ApplyCommand(3, command.CreateSecret{Secret: consensus.Secret{ID: "s2", Name: "pw2", Size: 1, KEKID: "k", Sealed: make([]byte, 30)}})
	cases := []struct {
		name string
		spec api.ServiceSpec
		ok   bool
	}{
		{"both", api.ServiceSpec{Secrets: []api.FileReference{{Source: "pw"}}, Configs: []api.FileReference{{Source: "conf", Target: "/etc/c"}}}, true},
		{"unknown secret", api.ServiceSpec{Secrets: []api.FileReference{{Source: "nope"}}}, false},
		{"unknown config", api.ServiceSpec{Configs: []api.FileReference{{Source: "nope"}}}, false},
		{"relative config target", api.ServiceSpec{Configs: []api.FileReference{{Source: "conf", Target: "etc/c"}}}, false},
		{"dot-dot target", api.ServiceSpec{Secrets: []api.FileReference{{Source: "pw", Target: "../etc/passwd"}}}, false},
		{"same target twice", api.ServiceSpec{Secrets: []api.FileReference{{Source: "pw"}, {Source: "pw"}}}, false},
		{"one secret at two targets", api.ServiceSpec{Secrets: []api.FileReference{{Source: "pw"}, {Source: "pw", Target: "pw2"}}}, true},
		{"two secrets at one target", api.ServiceSpec{Secrets: []api.FileReference{{Source: "pw", Target: "dbpw"}, {Source: "pw2", Target: "/run/secrets/dbpw"}}}, false},
		// Secrets and configs share the container's filesystem.
		{"secret and config at one path", api.ServiceSpec{Secrets: []api.FileReference{{Source: "pw", Target: "/etc/c"}}, Configs: []api.FileReference{{Source: "conf", Target: "/etc/c"}}}, false},
		{"bad mode", api.ServiceSpec{Secrets: []api.FileReference{{Source: "pw", Mode: 0o4755}}}, false},
	}
	for _, tc := range cases {
		if err := CheckFileRefs(store, tc.spec); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// fsmAgent is an Agent whose writes go straight to an FSM over its store,
// recorded, with secrets "sealed" as they come (the leader's part is
// node/writes').
type fsmAgent struct {
	store  *consensus.Store
	fsm    *fsm.FSM
	writes []command.Command
	n      int
}

func (a *fsmAgent) Store() (*consensus.Store, error)  { return a.store, nil }
func (a *fsmAgent) SyncReplica(context.Context) error { return nil }
func (a *fsmAgent) HasImage(string) bool              { return false }
func (a *fsmAgent) NewID() string                     { a.n++; return fmt.Sprintf("id%d", a.n) }

// Preflight is not used by these tests (the deploy check has its own).
func (a *fsmAgent) Preflight(*consensus.Store, command.Command) error {
	return errors.New("fsmAgent: no preflight")
}
func (a *fsmAgent) Write(_ context.Context, cmd command.Command) error {
	a.writes = append(a.writes, cmd)
	switch c := cmd.(type) {
	case *command.CreateSecret:
		x := *c
		x.Secret.Sealed, x.Secret.KEKID, x.Plaintext, x.KeepIfSame = append([]byte("sealed:"), c.Plaintext...), "k", nil, false
		cmd = x
	case *command.CreateConfig:
		cmd = *c
	}
	return a.fsm.ApplyCommand(uint64(len(a.writes)+1), cmd).Err
}

// TestCreateObjectKeepSame: a create with KeepSame of a config that
// exists with the same data answers it and writes nothing, with other
// data it is refused saying so; without KeepSame an existing name is
// refused as before. A secret with KeepSame goes to the leader, flagged,
// which alone can compare.
func TestCreateObjectKeepSame(t *testing.T) {
	store := consensus.NewStore()
	a := &fsmAgent{store: store, fsm: fsm.New(store)}
	a.fsm.ApplyCommand(1, command.BootstrapCluster{Cluster: consensus.ClusterState{ClusterID: "c1"}, Node: api.Node{ID: "n1", Hostname: "h1"}})
	x := New(a)
	ctx := context.Background()
	if _, err := x.CreateObject(ctx, api.SecretCreateRequest{Name: "conf", Data: []byte("v1")}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := x.CreateObject(ctx, api.SecretCreateRequest{Name: "pw", Data: []byte("s1")}, true); err != nil {
		t.Fatal(err)
	}
	a.writes = nil
	if got, err := x.CreateObject(ctx, api.SecretCreateRequest{Name: "conf", Data: []byte("v1"), KeepSame: true}, false); err != nil || got.(api.Config).Name != "conf" || len(a.writes) != 0 {
		t.Errorf("same config: %v %v, writes %v", got, err, a.writes)
	}
	if _, err := x.CreateObject(ctx, api.SecretCreateRequest{Name: "conf", Data: []byte("v2"), KeepSame: true}, false); err == nil ||
		!strings.Contains(err.Error(), "config conf exists with other data, and configs are immutable") || len(a.writes) != 0 {
		t.Errorf("changed config: %v, writes %v", err, a.writes)
	}
	if _, err := x.CreateObject(ctx, api.SecretCreateRequest{Name: "conf", Data: []byte("v1")}, false); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("config without KeepSame: %v", err)
	}
	if _, err := x.CreateObject(ctx, api.SecretCreateRequest{Name: "pw", Data: []byte("s1")}, true); err == nil || !strings.Contains(err.Error(), "already exists") || len(a.writes) != 0 {
		t.Errorf("secret without KeepSame: %v, writes %v", err, a.writes)
	}
	// The fake leader does not compare: the FSM refuses the name. What
	// matters here is that the write carries the flag.
	_, _ = x.CreateObject(ctx, api.SecretCreateRequest{Name: "pw", Data: []byte("s1"), KeepSame: true}, true)
	if len(a.writes) != 1 || !a.writes[0].(*command.CreateSecret).KeepIfSame {
		t.Errorf("secret with KeepSame: writes %+v, want one CreateSecret with KeepIfSame", a.writes)
	}
}
