package test

// End-to-end tests of issue 7's keys: where the CA key and the join secret
// live, who may take a node ID, certificate renewal and CA rotation.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/test/harness"
)

// sealedKeyRe finds the sealed CA key in raft files (JSON, []byte as base64).
var sealedKeyRe = regexp.MustCompile(`"ca_key_sealed":"([A-Za-z0-9+/=]+)"`)

// grepDir lists "needle in file" for every file under dir holding a needle.
func grepDir(t testing.TB, dir string, needles map[string][]byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for name, n := range needles {
			if len(n) > 0 && bytes.Contains(b, n) {
				hits = append(hits, name+" in "+strings.TrimPrefix(p, dir))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(hits)
	return hits
}

// caKeyOf opens the cluster CA key the way only a voter can: the sealed
// blob from its raft files, opened with its KEK.
func caKeyOf(t testing.TB, voter *harness.Host, clusterID string) []byte {
	t.Helper()
	kek, err := os.ReadFile(filepath.Join(voter.DataDir, "cluster", "kek"))
	if err != nil {
		t.Fatalf("%s holds no KEK: %v", voter.Name, err)
	}
	var key []byte
	_ = filepath.WalkDir(filepath.Join(voter.DataDir, "cluster", "raft"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || key != nil {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, m := range sealedKeyRe.FindAllSubmatch(b, -1) {
			sealed, err := base64.StdEncoding.DecodeString(string(m[1]))
			if err != nil {
				continue
			}
			if k, err := pki.Open(kek, sealed, []byte("shoal ca key\x00"+clusterID)); err == nil {
				key = k
				return nil
			}
		}
		return nil
	})
	if key == nil {
		t.Fatalf("no sealed CA key that %s's KEK opens in its raft files", voter.Name)
	}
	return key
}

// TestKeysNonVoterHoldsNoSecrets: four nodes, three voters. The non-voter's
// data directory holds neither the CA private key (PEM, DER, base64 of
// either) nor the join secret, yet `shoal token` works there; the voters
// hold the KEK and open the sealed CA key with it.
func TestKeysNonVoterHoldsNoSecrets(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 4)
	c.Form(t)
	waitVoters(t, c, 4, 3)
	var nonVoter *harness.Host
	var voters []*harness.Host
	for _, h := range c.Hosts() {
		st, err := h.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.Voter {
			voters = append(voters, h)
		} else {
			nonVoter = h
		}
	}
	if nonVoter == nil || len(voters) != 3 {
		t.Fatalf("want 3 voters and a non-voter, got %d voters", len(voters))
	}
	st, _ := voters[0].Status()
	token := voters[0].Token(t)
	tok, err := pki.ParseToken(token)
	if err != nil {
		t.Fatal(err)
	}
	// Rotate the secret too, so that two generations are checked.
	voters[1].MustCLI(t, "token", "--rotate")
	token2 := voters[1].Token(t)
	tok2, _ := pki.ParseToken(token2)
	if got := nonVoter.Token(t); got != token2 {
		t.Fatalf("token on the non-voter %q, want %q", got, token2)
	}

	// Every voter ends up with the KEK (promoted ones pull it).
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		for _, v := range voters {
			fi, err := os.Stat(filepath.Join(v.DataDir, "cluster", "kek"))
			if err != nil {
				return false, fmt.Sprintf("%s: %v", v.Name, err)
			}
			if fi.Mode().Perm() != 0o600 {
				return false, fmt.Sprintf("%s: kek mode %v", v.Name, fi.Mode())
			}
		}
		return true, ""
	}, "every voter holds the KEK, mode 0600")
	keyPEM := caKeyOf(t, voters[2], st.ClusterID)
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		t.Fatal("the opened CA key is not PEM")
	}
	needles := map[string][]byte{
		"CA key PEM":           keyPEM,
		"CA key PEM in base64": []byte(base64.StdEncoding.EncodeToString(keyPEM)),
		"CA key DER":           block.Bytes,
		"CA key DER in base64": []byte(base64.StdEncoding.EncodeToString(block.Bytes)),
		"join secret":          []byte(tok.Secret),
		"rotated join secret":  []byte(tok2.Secret),
		"KEK file":             nil,
	}
	// Control: the same grep finds the sealed key, so it reads the raft files.
	if hits := grepDir(t, nonVoter.DataDir, map[string][]byte{"sealed CA key": []byte(`"ca_key_sealed":"`)}); len(hits) == 0 {
		t.Fatalf("control failed: no sealed CA key in %s's data dir", nonVoter.Name)
	}
	if hits := grepDir(t, nonVoter.DataDir, needles); len(hits) > 0 {
		t.Fatalf("the non-voter %s holds secrets: %v", nonVoter.Name, hits)
	}
	if _, err := os.Stat(filepath.Join(nonVoter.DataDir, "cluster", "kek")); !os.IsNotExist(err) {
		t.Fatalf("the non-voter holds a KEK (%v)", err)
	}
}

// TestKeysStolenNodeIDRefused: a new machine that claims the node ID of a
// down voter (to inherit its vote, labels and tasks) is refused and writes
// nothing; the victim's record is untouched.
func TestKeysStolenNodeIDRefused(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 3)
	token := c.Form(t)
	h1, h3 := c.Host(1), c.Host(3)
	victim := h3.NodeID(t)
	h1.MustCLI(t, "node", "update", "--label-add", "zone=a", victim)
	if err := h3.KillProcess(); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, nodeStatusSeen(victim, api.NodeDown, h1), "h3 down")

	thief := c.AddHost()
	id, _ := json.Marshal(map[string]string{"node_id": victim, "hostname": thief.NS})
	if err := os.MkdirAll(thief.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(thief.DataDir, "node.json"), id, 0o600); err != nil {
		t.Fatal(err)
	}
	thief.MustStart(t)
	mustFail(t, thief.Join(token, h1), "join with a down voter's node ID", "belongs to a member")
	if _, err := os.Stat(filepath.Join(thief.DataDir, "cluster")); !os.IsNotExist(err) {
		t.Fatalf("the refused joiner wrote cluster state (%v)", err)
	}
	n, err := h1.Node(victim)
	if err != nil {
		t.Fatal(err)
	}
	if n.Hostname != h3.NS || n.Addr != h3.IP || n.Labels["zone"] != "a" || n.Status != api.NodeDown {
		t.Fatalf("the victim's record changed: %+v", n)
	}
}

// TestKeysCertRenewal: with a two-minute certificate lifetime every node
// renews its certificate on its own (the serial changes) and stays ready,
// and the renewed node's writes still reach the leader (its old serial is
// revoked, so they must travel on the new certificate).
func TestKeysCertRenewal(t *testing.T) {
	harness.Context(t, testTimeout+5*time.Minute)
	c := harness.New(t, 2, harness.WithAgentArgs("--cert-lifetime", "2m"))
	c.Form(t)
	h1, h2 := c.Host(1), c.Host(2)
	ids := nodeIDs(t, h1, h2)
	before := map[string]string{}
	for _, id := range ids {
		n, err := h1.Node(id)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = n.CertSerial
	}
	harness.Eventually(t, 4*time.Minute, func() (bool, string) {
		for _, id := range ids {
			n, err := h1.Node(id)
			if err != nil {
				return false, err.Error()
			}
			if n.CertSerial == before[id] {
				return false, fmt.Sprintf("node %s still has serial %s", id, n.CertSerial)
			}
		}
		return true, ""
	}, "every node renewed its certificate")
	c.WaitReady(t, 60*time.Second, 2)
	harness.Eventually(t, 30*time.Second, writeSucceeds(h2, ids[1], "renewed", "yes"), "a write through the renewed non-leader")
	harness.Eventually(t, 30*time.Second, labelSeen(ids[1], "renewed", "yes", h1, h2), "the write replicated")
	if !strings.Contains(h2.LogTail(400), "certificate renewed") {
		t.Errorf("h2's log does not mention the renewal")
	}
}

// containerPIDs maps task ID → container PID over every host.
func containerPIDs(t *testing.T, hosts []*harness.Host) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, h := range hosts {
		for _, ct := range containersOn(t, h, false) {
			if ct.TaskID != "" && ct.State == "running" {
				out[ct.TaskID] = ct.Pid
			}
		}
	}
	return out
}

// TestKeysCARotate: `ca rotate` while a service runs replaces the CA and
// every node's certificate: the same tasks keep running in the same
// containers, every node stays ready, the new token joins a node and the
// old one no longer does.
func TestKeysCARotate(t *testing.T) {
	harness.Context(t, testTimeout)
	c, _ := svcCluster(t, 3)
	h1, h2 := c.Host(1), c.Host(2)
	oldToken := h1.Token(t)
	h1.MustCLI(t, "service", "create", "--name", "web", "--replicas", "3", "bb:1", "httpd", "-f", "-p", "80")
	waitSlots(t, h1, "web", 3, "bb:1", 90*time.Second)
	pids := containerPIDs(t, c.Hosts())
	if len(pids) != 3 {
		t.Fatalf("%d running task containers, want 3", len(pids))
	}
	serials := map[string]string{}
	nodes, _ := h1.Nodes()
	for _, n := range nodes {
		serials[n.ID] = n.CertSerial
	}

	r, err := caRotate(h2)
	if err != nil {
		t.Fatalf("ca rotate: %v", err)
	}
	if !r.Complete || r.Token == "" || r.Token == oldToken {
		t.Fatalf("ca rotate = %+v (old token %s)", r, oldToken)
	}
	newTok, err := pki.ParseToken(r.Token)
	if err != nil {
		t.Fatal(err)
	}
	if newTok.CAFingerprint != r.CAFingerprint {
		t.Fatalf("new token %q does not pin %s", r.Token, r.CAFingerprint)
	}
	c.WaitReady(t, 60*time.Second, 3)
	nodes, _ = h1.Nodes()
	for _, n := range nodes {
		if n.CertSerial == serials[n.ID] {
			t.Errorf("node %s kept certificate %s", n.Hostname, n.CertSerial)
		}
	}
	if got := containerPIDs(t, c.Hosts()); !equalPIDs(got, pids) {
		t.Fatalf("task containers changed across the rotation: before %v, after %v", pids, got)
	}
	for _, tk := range tasksOf(t, h1, "web") {
		if _, ok := pids[tk.ID]; !ok && tk.DesiredState == api.TaskRunning {
			t.Fatalf("a new task %s appeared: %+v", tk.Name, tk)
		}
	}
	// Writes from every node still travel (new certificates, new trust).
	for i, h := range c.Hosts() {
		harness.Eventually(t, 30*time.Second, writeSucceeds(h, nodes[0].ID, "after-rotate", fmt.Sprint(i)), "write through "+h.Name)
	}
	for _, h := range c.Hosts() {
		if got := h.Token(t); got != r.Token {
			t.Fatalf("token on %s = %q, want %q", h.Name, got, r.Token)
		}
	}

	h4 := c.AddHost()
	h4.MustStart(t)
	mustFail(t, h4.Join(oldToken, h1), "join with the token of the old CA", "different cluster", "CA")
	if err := h4.Join(r.Token, h2); err != nil {
		t.Fatalf("join with the new token: %v", err)
	}
	c.WaitReady(t, 90*time.Second, 4)
}

func equalPIDs(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// caRotate runs `ca rotate --format json` on h.
func caRotate(h *harness.Host) (api.CARotateResponse, error) {
	var r api.CARotateResponse
	out, _, err := h.CLI("ca", "rotate", "--format", "json")
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal([]byte(out), &r)
}
