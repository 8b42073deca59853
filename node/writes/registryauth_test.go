package writes

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/node/pki"
)

func TestSealRegistryAuth(t *testing.T) {
	kek := pki.NewKEK()
	const cluster, svc = "c1", "s1"
	plain := &api.RegistryAuth{Registry: "reg:5000", Username: "alice", Password: "hunter2-secret"}
	sealed, err := SealRegistryAuth(kek, cluster, svc, plain)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(sealed)
	if bytes.Contains(raw, []byte("hunter2-secret")) || bytes.Contains(raw, []byte("alice")) || sealed.Username != "" || sealed.Password != "" {
		t.Fatalf("sealed form holds the credentials: %s", raw)
	}
	if sealed.Registry != "reg:5000" || len(sealed.Sealed) == 0 || sealed.KEKID != pki.KEKID(kek) {
		t.Fatalf("sealed form: %+v", sealed)
	}
	got, err := OpenRegistryAuth(kek, cluster, svc, sealed)
	if err != nil || got.Username != "alice" || got.Password != "hunter2-secret" || got.Registry != "reg:5000" {
		t.Fatalf("open: %+v %v", got, err)
	}
	// Another service cannot open it, nor present it as its own.
	if _, err := OpenRegistryAuth(kek, cluster, "s2", sealed); err == nil {
		t.Fatal("another service opened the credentials")
	}

	for _, tc := range []struct {
		name    string
		in      *api.RegistryAuth
		prior   []*api.RegistryAuth
		svc     string
		wantErr bool
		same    bool // the ciphertext of prior[0] is kept
	}{
		{name: "nil stays nil", in: nil},
		{name: "same credentials keep the ciphertext", in: plain, prior: []*api.RegistryAuth{nil, sealed}, same: true},
		{name: "new password seals anew", in: &api.RegistryAuth{Registry: "reg:5000", Username: "alice", Password: "other"}, prior: []*api.RegistryAuth{sealed}},
		{name: "other registry seals anew", in: &api.RegistryAuth{Registry: "reg2", Username: "alice", Password: "hunter2-secret"}, prior: []*api.RegistryAuth{sealed}},
		{name: "sealed of this service passes", in: sealed, same: true, prior: []*api.RegistryAuth{sealed}},
		{name: "sealed of another service refused", in: sealed, svc: "s2", wantErr: true},
		{name: "garbage ciphertext refused", in: &api.RegistryAuth{Sealed: []byte("xx")}, wantErr: true},
		{name: "empty refused", in: &api.RegistryAuth{Registry: "reg"}, wantErr: true},
		{name: "username without password refused", in: &api.RegistryAuth{Username: "alice"}, wantErr: true},
		{name: "clear and sealed at once refused", in: &api.RegistryAuth{Username: "a", Password: "b", Sealed: sealed.Sealed}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := svc
			if tc.svc != "" {
				id = tc.svc
			}
			out, err := SealRegistryAuth(kek, cluster, id, tc.in, tc.prior...)
			if tc.wantErr {
				if !errors.Is(err, consensus.ErrInvalid) {
					t.Fatalf("want ErrInvalid, got %+v %v", out, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.in == nil {
				if out != nil {
					t.Fatalf("nil became %+v", out)
				}
				return
			}
			if hasPlaintext(out) {
				t.Fatalf("credentials in the clear: %+v", out)
			}
			if tc.same != bytes.Equal(out.Sealed, sealed.Sealed) {
				t.Fatalf("ciphertext kept = %v, want %v", !tc.same, tc.same)
			}
			back, err := OpenRegistryAuth(kek, cluster, id, out)
			if err != nil {
				t.Fatal(err)
			}
			if hasPlaintext(tc.in) && (back.Username != tc.in.Username || back.Password != tc.in.Password) {
				t.Fatalf("opened %+v, sealed %+v", back, tc.in)
			}
		})
	}
	// A KEK that is not the voters' cannot open it.
	if _, err := OpenRegistryAuth(pki.NewKEK(), cluster, svc, sealed); err == nil || !strings.Contains(err.Error(), "open registry credentials") {
		t.Fatalf("a foreign KEK: %v", err)
	}
}
