package writes

import (
	"bytes"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/authz"
	"github.com/shoal-org/shoal/node/pki"
)

func TestSecretsAllowed(t *testing.T) {
	spec := api.ServiceSpec{Name: "web", Secrets: []api.FileReference{{Source: "db_pass"}, {Source: "api_key", Target: "key"}, {Source: "db_pass", Target: "again"}}}
	task := func(node, desired, state string) *api.Task {
		return &api.Task{ID: "t1", Name: "web.1", NodeID: node, DesiredState: desired, State: state, Spec: spec}
	}
	cases := []struct {
		name  string
		peer  string
		task  *api.Task
		want  []string
		allow bool
	}{
		{"its own running task", "n1", task("n1", api.TaskRunning, api.TaskAssigned), []string{"db_pass", "api_key"}, true},
		{"a task of another node", "n2", task("n1", api.TaskRunning, api.TaskRunning), nil, false},
		{"an unassigned task", "n1", task("", api.TaskRunning, api.TaskNew), nil, false},
		{"a task being shut down", "n1", task("n1", api.TaskShutdown, api.TaskRunning), nil, false},
		{"a finished task", "n1", task("n1", api.TaskRunning, api.TaskFailed), nil, false},
		{"an unknown task", "n1", nil, nil, false},
		{"no certificate", "", task("", api.TaskRunning, api.TaskAssigned), nil, false},
		{"a task without secrets", "n1", &api.Task{NodeID: "n1", DesiredState: api.TaskRunning}, nil, true},
	}
	for _, tc := range cases {
		got, err := SecretsAllowed(tc.peer, tc.task)
		if tc.allow != (err == nil) {
			t.Errorf("%s: allowed=%v, err %v", tc.name, err == nil, err)
			continue
		}
		if !tc.allow && !errors.Is(err, authz.ErrForbidden) {
			t.Errorf("%s: refusal %v is not authz.ErrForbidden", tc.name, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: names %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The sealed form opens only with the KEK and the secret's own ID.
func TestUserSecretSealBinding(t *testing.T) {
	kek := pki.NewKEK()
	sealed, err := pki.Seal(kek, []byte("hunter2"), aadUserSecret("c1", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pki.Open(kek, sealed, aadUserSecret("c1", "s1")); err != nil || string(got) != "hunter2" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := pki.Open(kek, sealed, aadUserSecret("c1", "s2")); err == nil {
		t.Fatal("a sealed secret opened under another secret's ID")
	}
	if _, err := pki.Open(pki.NewKEK(), sealed, aadUserSecret("c1", "s1")); err == nil {
		t.Fatal("a sealed secret opened with another KEK")
	}
}

// What the leader proposes for a secret, and the snapshot after it, hold
// only the sealed form; the KEK opens it.
func TestSealSecretOnLeaderLeavesNoPlaintext(t *testing.T) {
	kek := pki.NewKEK()
	store := consensus.NewStore()
	machine := fsm.New(store)
	machine.ApplyCommand(1, command.BootstrapCluster{Cluster: consensus.ClusterState{ClusterID: "c1", KEKID: pki.KEKID(kek)},
		Node: api.Node{ID: "n1", Hostname: "h1"}})
	w := New(Config{Store: store, KEK: func(st *consensus.ClusterState) ([]byte, error) {
		if st.KEKID != pki.KEKID(kek) {
			return nil, errors.New("not this cluster's KEK")
		}
		return kek, nil
	}})
	plain := []byte("correct horse battery staple")
	in := command.CreateSecret{Secret: consensus.Secret{ID: "s1", Name: "pw"}, Plaintext: plain}

	// The FSM refuses the command as it travels to the leader.
	if r := machine.ApplyCommand(2, in); !errors.Is(r.Err, consensus.ErrInvalid) {
		t.Fatalf("unsealed secret applied: %v", r.Err)
	}
	out, err := w.sealSecretOnLeader(in)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := command.Encode(out)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(plain)
	if bytes.Contains(enc, plain) || bytes.Contains(enc, []byte(b64)) || len(out.Plaintext) != 0 {
		t.Fatalf("the proposed command holds the plaintext: %s", enc)
	}
	if r := machine.ApplyCommand(3, out); r.Err != nil {
		t.Fatal(r.Err)
	}
	var snap bytes.Buffer
	if err := consensus.WriteSnapshot(store, &snap); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(snap.Bytes(), plain) || bytes.Contains(snap.Bytes(), []byte(b64)) {
		t.Fatal("the snapshot holds the plaintext")
	}
	s, _ := store.SecretByName("pw")
	if got, err := pki.Open(kek, s.Sealed, aadUserSecret("c1", "s1")); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open the stored secret: %q %v", got, err)
	}
	// A forwarded command that is already "sealed" is refused.
	if _, err := w.sealSecretOnLeader(command.CreateSecret{Secret: consensus.Secret{ID: "s2", Name: "x", Sealed: []byte("junk")}, Plaintext: plain}); err == nil {
		t.Fatal("a pre-sealed secret was accepted")
	}
}

// A create with KeepIfSame (stack deploy of an unchanged file) is answered
// by the leader from the stored secret it opens: the same plaintext is
// "same" (nothing to propose), other plaintext is refused saying so, and
// an unknown name is created as usual.
func TestSameSecretOnLeader(t *testing.T) {
	kek := pki.NewKEK()
	store := consensus.NewStore()
	machine := fsm.New(store)
	machine.ApplyCommand(1, command.BootstrapCluster{Cluster: consensus.ClusterState{ClusterID: "c1", KEKID: pki.KEKID(kek)},
		Node: api.Node{ID: "n1", Hostname: "h1"}})
	w := New(Config{Store: store, KEK: func(*consensus.ClusterState) ([]byte, error) { return kek, nil }})
	sealed, err := w.sealSecretOnLeader(command.CreateSecret{Secret: consensus.Secret{ID: "s1", Name: "pw"}, Plaintext: []byte("hunter2")})
	if err != nil {
		t.Fatal(err)
	}
	if r := machine.ApplyCommand(2, sealed); r.Err != nil {
		t.Fatal(r.Err)
	}
	for _, tc := range []struct {
		name, data string
		same       bool
		err        string
	}{
		{"pw", "hunter2", true, ""},
		{"pw", "hunter3", false, "secret pw exists with other data, and secrets are immutable"},
		{"pw", "", false, "exists with other data"},
		{"other", "x", false, ""},
	} {
		same, err := w.sameSecretOnLeader(command.CreateSecret{Secret: consensus.Secret{ID: "s2", Name: tc.name}, Plaintext: []byte(tc.data), KeepIfSame: true})
		if same != tc.same || (tc.err == "") != (err == nil) || err != nil && (!strings.Contains(err.Error(), tc.err) || !errors.Is(err, consensus.ErrInvalid)) {
			t.Errorf("%s %q: same %v, err %v; want %v, %q", tc.name, tc.data, same, err, tc.same, tc.err)
		}
	}
}
