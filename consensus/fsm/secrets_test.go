package fsm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func sealedSecret(id, name string, size int) consensus.Secret {
	return consensus.Secret{ID: id, Name: name, CreatedAt: t0, Size: size, KEKID: "k1", Sealed: bytes.Repeat([]byte{0xAB}, size+29)}
}

func TestSecretCommands(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.CreateSecret{Secret: sealedSecret("sec1", "db_pass", 8)})

	cases := []struct {
		name string
		cmd  command.Command
		want error
	}{
		{"name used twice", command.CreateSecret{Secret: sealedSecret("sec2", "db_pass", 8)}, consensus.ErrNameTaken},
		{"ID used twice", command.CreateSecret{Secret: sealedSecret("sec1", "other", 8)}, consensus.ErrExists},
		{"over 500 KiB", command.CreateSecret{Secret: sealedSecret("sec3", "big", api.MaxSecretSize+1)}, consensus.ErrInvalid},
		{"plaintext in the command", command.CreateSecret{Secret: sealedSecret("sec4", "p", 3), Plaintext: []byte("pw!")}, consensus.ErrInvalid},
		{"not sealed", command.CreateSecret{Secret: consensus.Secret{ID: "sec5", Name: "n", Size: 3}}, consensus.ErrInvalid},
		{"bad name", command.CreateSecret{Secret: sealedSecret("sec6", "a/b", 3)}, consensus.ErrInvalid},
		{"unknown secret", command.DeleteSecret{ID: "nope"}, consensus.ErrNotFound},
		{"config name used twice", command.CreateConfig{Config: consensus.ConfigObject{ID: "c9", Name: "app.conf"}}, nil},
		{"config over 500 KiB", command.CreateConfig{Config: consensus.ConfigObject{ID: "c10", Name: "big", Data: make([]byte, api.MaxSecretSize+1)}}, consensus.ErrInvalid},
		{"service with an unknown secret", command.CreateService{Service: api.Service{ID: "s9", Name: "x",
			Spec: api.ServiceSpec{Name: "x", Secrets: []api.FileReference{{Source: "nope"}}}}}, consensus.ErrNotFound},
		{"service with an unknown config", command.CreateService{Service: api.Service{ID: "s9", Name: "x",
			Spec: api.ServiceSpec{Name: "x", Configs: []api.FileReference{{Source: "nope"}}}}}, consensus.ErrNotFound},
	}
	h.must(command.CreateConfig{Config: consensus.ConfigObject{ID: "cfg1", Name: "app.conf", Data: []byte("x=1")}})
	cases[7].want = consensus.ErrNameTaken
	for _, tc := range cases {
		before := len(h.store.Secrets()) + len(h.store.Configs()) + len(h.store.Services())
		r := h.apply(tc.cmd)
		if !errors.Is(r.Err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, r.Err, tc.want)
		}
		if after := len(h.store.Secrets()) + len(h.store.Configs()) + len(h.store.Services()); after != before {
			t.Errorf("%s: a refused command changed the store (%d → %d objects)", tc.name, before, after)
		}
	}

	// In use: removal refused until the service lets go.
	svc := api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web",
		Secrets: []api.FileReference{{Source: "db_pass"}}, Configs: []api.FileReference{{Source: "app.conf", Target: "/etc/app.conf"}}}}
	h.must(command.CreateService{Service: svc})
	if r := h.apply(command.DeleteSecret{ID: "sec1"}); !errors.Is(r.Err, consensus.ErrInUse) || !strings.Contains(r.Err.Error(), "web") {
		t.Fatalf("remove in-use secret: %v", r.Err)
	}
	if r := h.apply(command.DeleteConfig{ID: "cfg1"}); !errors.Is(r.Err, consensus.ErrInUse) {
		t.Fatalf("remove in-use config: %v", r.Err)
	}
	if _, err := h.store.SecretByName("db_pass"); err != nil {
		t.Fatal("refused removal deleted the secret")
	}
	svc.Spec.Secrets, svc.Spec.Configs = nil, nil
	h.must(command.UpdateService{Service: svc})
	h.must(command.DeleteSecret{ID: "sec1"})
	h.must(command.DeleteConfig{ID: "cfg1"})
	if len(h.store.Secrets())+len(h.store.Configs()) != 0 {
		t.Fatal("secret or config left after removal")
	}
	// A rollback to a spec whose secret is gone is refused.
	svc.Spec.Secrets = []api.FileReference{{Source: "db_pass"}}
	if r := h.apply(command.UpdateService{Service: svc}); !errors.Is(r.Err, consensus.ErrNotFound) {
		t.Fatalf("update to a removed secret: %v", r.Err)
	}
}

func TestSecretsSurviveSnapshotSealed(t *testing.T) {
	h := newHarness(t)
	h.bootstrap()
	h.must(command.CreateSecret{Secret: sealedSecret("sec1", "db_pass", 8)})
	h.must(command.CreateConfig{Config: consensus.ConfigObject{ID: "cfg1", Name: "app.conf", Data: []byte("x=1")}})
	var buf bytes.Buffer
	if err := consensus.WriteSnapshot(h.store, &buf); err != nil {
		t.Fatal(err)
	}
	other := newHarness(t)
	if err := other.fsm.Restore(readCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	s, err := other.store.ResolveSecret("db_pass")
	if err != nil || !bytes.Equal(s.Sealed, sealedSecret("", "", 8).Sealed) {
		t.Fatalf("secret after restore: %+v %v", s, err)
	}
	if c, err := other.store.ResolveConfig("cfg"); err != nil || string(c.Data) != "x=1" {
		t.Fatalf("config after restore (by ID prefix): %+v %v", c, err)
	}
	// Name uniqueness holds after a restore too (the index is rebuilt).
	if r := other.apply(command.CreateSecret{Secret: sealedSecret("sec2", "db_pass", 8)}); !errors.Is(r.Err, consensus.ErrNameTaken) {
		t.Fatalf("duplicate after restore: %v", r.Err)
	}
}
