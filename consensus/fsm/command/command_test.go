package command

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func testCluster() consensus.ClusterState {
	return consensus.ClusterState{
		ClusterID:       "c1",
		CACertPEM:       []byte("cert"),
		CAKeyPEM:        []byte("key"),
		TokenSecretHash: "abc",
		GossipKeys:      [][]byte{bytes.Repeat([]byte{1}, 32)},
		ClusterCIDR:     "10.42.0.0/16",
		VIPCIDR:         "10.43.0.0/16",
		CreatedAt:       t0,
	}
}

func testNode(id, host string) api.Node {
	return api.Node{ID: id, Hostname: host, Addr: "127.0.0.1", Status: api.NodeReady,
		Availability: api.AvailabilityActive, CreatedAt: t0, CertSerial: "serial-" + id}
}

// sampleCommands has one value of every command type, used by the codec
// tests; TestEncodeDecodeRoundTrip fails while a type has none.
func sampleCommands() []Command {
	return []Command{
		BootstrapCluster{Cluster: testCluster(), Node: testNode("n1", "h1")},
		UpsertNode{Node: testNode("n2", "h2")},
		UpdateOwnNode{Node: testNode("n2", "h2")},
		UpdateNode{ID: "n2", Update: api.NodeUpdate{Availability: "drain", LabelAdd: map[string]string{"a": "b"}, LabelRm: []string{"c"}}, Now: t0},
		SetNodeStatus{Statuses: []NodeStatus{{ID: "n2", Status: api.NodeDown, At: t0}}},
		SetNodeVoter{ID: "n2", Voter: true},
		RemoveNode{ID: "n2", Now: t0},
		RotateToken{SecretHash: "abc"},
		SetGossipKeys{Keys: [][]byte{bytes.Repeat([]byte{7}, 32)}},
		RevokeCert{Serial: "123"},
		SetVoterTarget{Target: 5},
		SetClusterEpoch{Epoch: 2},
		CreateService{Service: api.Service{ID: "s1", Name: "web", Spec: api.ServiceSpec{Name: "web", Replicas: 3, Healthcheck: &api.HealthConfig{Test: []string{"CMD", "true"}}}}},
		UpdateService{Service: api.Service{ID: "s1", Name: "web"}, ExpectVersion: 7},
		DeleteService{ID: "s1", Now: t0},
		UpsertTasks{Tasks: []api.Task{{ID: "t1", ServiceID: "s1", Slot: 1, CreatedAt: t0}}},
		TaskStatus{NodeID: "n1", Statuses: []api.TaskStatus{{TaskID: "t1", State: api.TaskRunning, Timestamp: t0}}},
		DeleteTasks{IDs: []string{"t1"}},
		TrimTasks{},
		UpsertImage{Image: api.Image{ID: "sha256:aa", Tags: []string{"x:1"}, Size: 10}},
		SetImageNode{ImageID: "sha256:aa", NodeID: "n1", Present: true},
		DeleteImage{ID: "sha256:aa"},
		Batch{Commands: []Command{RotateToken{SecretHash: "x"}, DeleteTasks{IDs: []string{"a"}}}},
		SealClusterKeys{KEKID: "k1", CAKeySealed: []byte("sealed"), TokenSecretSealed: []byte("s"), CAFingerprint: "fp"},
		RotateCA{CACertPEM: []byte("ca2"), CAFingerprint: "fp2", CAKeySealed: []byte("sealed2"), CACrossPEM: []byte("x"), ExpectFingerprint: "fp"},
		FinishCARotation{CAFingerprint: "fp2"},
		SetNodeCert{ID: "n1", Serial: "s2", CAFingerprint: "fp2", Revoke: []string{"s1"}},
		RecordCertExpiry{Serial: "s2", NotAfter: t0},
		TrimRevoked{ExpiredBefore: t0},
		StageNodeCert{ID: "n1", Serial: "s3", CAFingerprint: "fp2", Revoke: []string{"s2"}},
		ConfirmNodeCert{ID: "n1", Serial: "s3"},
		CreateSecret{Secret: consensus.Secret{ID: "sec1", Name: "db_pass", CreatedAt: t0, Size: 3, KEKID: "k1", Sealed: []byte("sealed")}},
		DeleteSecret{ID: "sec1"},
		CreateConfig{Config: consensus.ConfigObject{ID: "cfg1", Name: "app.conf", CreatedAt: t0, Data: []byte("x=1")}},
		DeleteConfig{ID: "cfg1"},
		CreateNetwork{Network: api.Network{ID: "nw1", Name: "front", Subnet: "10.50.0.0/16", VNI: 4300, Internal: true, CreatedAt: t0}},
		DeleteNetwork{ID: "nw1"},
		ClaimNetworkShare{Network: "nw1", NodeID: "n1"},
		SetRunAttachments{NodeID: "n1", Networks: map[string][]string{"nw1": {"onback"}}},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	seen := map[Type]bool{}
	for _, cmd := range sampleCommands() {
		data, err := Encode(cmd)
		if err != nil {
			t.Fatalf("encode %T: %v", cmd, err)
		}
		if data[0] != byte(cmd.Type()) || data[1] != Version {
			t.Fatalf("%T header %v", cmd, data[:2])
		}
		got, err := Decode(data)
		if err != nil {
			t.Fatalf("decode %T: %v", cmd, err)
		}
		if !reflect.DeepEqual(got, cmd) {
			t.Fatalf("round trip %T:\n got %#v\nwant %#v", cmd, got, cmd)
		}
		seen[cmd.Type()] = true
	}
	for typ := range decoders {
		if !seen[typ] {
			t.Errorf("command type %d has no sample", typ)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := map[string][]byte{
		"empty":         nil,
		"one byte":      {1},
		"unknown type":  {200, 1, '{', '}'},
		"bad version":   {byte(TypeRotateToken), 9, '{', '}'},
		"bad json":      {byte(TypeRotateToken), 1, '{'},
		"nested batch":  append([]byte{byte(TypeBatch), 1}, `{"commands":[{"type":18,"version":1,"body":{}}]}`...),
		"batch unknown": append([]byte{byte(TypeBatch), 1}, `{"commands":[{"type":99,"version":1,"body":{}}]}`...),
	}
	for name, data := range cases {
		if _, err := Decode(data); !errors.Is(err, consensus.ErrMalformed) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := Encode(nil); err == nil {
		t.Error("nil encoded")
	}
	if _, err := Encode((*UpsertNode)(nil)); err == nil {
		t.Error("typed nil encoded")
	}
	if _, err := Encode(Batch{Commands: []Command{Batch{}}}); err == nil {
		t.Error("nested batch encoded")
	}
	// Pointers encode like values.
	a, errA := Encode(&RotateToken{SecretHash: "x"})
	b, errB := Encode(RotateToken{SecretHash: "x"})
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Errorf("pointer encoding differs: %q %q %v %v", a, b, errA, errB)
	}
}

func FuzzDecode(f *testing.F) {
	for _, cmd := range sampleCommands() {
		data, err := Encode(cmd)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{byte(TypeBatch), 1, 'n', 'u', 'l', 'l'})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode; applying it is FuzzFSMLog's
		// (consensus/fsm).
		if _, err := Encode(cmd); err != nil {
			t.Fatalf("re-encode %T: %v", cmd, err)
		}
	})
}

// TestTrimRevokedUnknownUntil: the field added to TrimRevoked round-trips,
// is left out of an entry without it (whose bytes stay those of the
// golden file) and decodes as zero from such an entry.
func TestTrimRevokedUnknownUntil(t *testing.T) {
	c := TrimRevoked{ExpiredBefore: t0, UnknownUntil: t0.Add(time.Hour)}
	enc, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(enc), `"unknown_until":"2025-01-02T04:04:05Z"`) {
		t.Fatalf("entry %s", enc[2:])
	}
	if dec, err := Decode(enc); err != nil || dec != c {
		t.Fatalf("decoded %#v (%v)", dec, err)
	}
	old := append([]byte{byte(TypeTrimRevoked), 1}, `{"expired_before":"2025-01-02T03:04:05Z"}`...)
	if dec, err := Decode(old); err != nil || dec != (TrimRevoked{ExpiredBefore: t0}) {
		t.Fatalf("an entry without the field: %#v (%v)", dec, err)
	}
	if enc, _ := Encode(TrimRevoked{ExpiredBefore: t0}); !bytes.Equal(enc, old) {
		t.Fatalf("an entry without the field encodes as %s", enc[2:])
	}
}
