package handlers

import (
	"errors"
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
		{"bad mode", api.ServiceSpec{Secrets: []api.FileReference{{Source: "pw", Mode: 0o4755}}}, false},
	}
	for _, tc := range cases {
		if err := CheckFileRefs(store, tc.spec); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
