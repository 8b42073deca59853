package joining

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/clusterport"
	"github.com/shoal-org/shoal/node/keyring"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/node/wire"
)

func TestExplain(t *testing.T) {
	const addr = "192.0.2.1:2377"
	tests := []struct {
		name string
		err  error
		want []string
		is   error // must still match with errors.Is, when set
	}{
		{
			name: "refused by the leader",
			err:  &wire.Error{Code: wire.CodeRefused, Msg: "invalid join token: wrong or rotated secret"},
			want: []string{"join refused by " + addr, "wrong or rotated secret"},
		},
		{
			name: "refused, wrapped",
			err:  fmt.Errorf("call: %w", &wire.Error{Code: wire.CodeRefused, Msg: "node abc is already a live member"}),
			want: []string{"join refused by " + addr, "already a live member"},
		},
		{
			name: "leadership lost while committing",
			err:  &wire.Error{Code: wire.CodeNotLeader, Msg: "record node: apply command type 2: not the raft leader: leadership lost while committing log"},
			want: []string{"join " + addr, "changed leader", "run the same join again", "leadership lost"},
		},
		{
			name: "CA mismatch",
			err:  fmt.Errorf("connect to %s: %w", addr, fmt.Errorf("join: %w: server CA has fingerprint x", pki.ErrCAMismatch)),
			want: []string{"join " + addr, "different cluster"},
		},
		{
			name: "nothing listens",
			err:  fmt.Errorf("connect to %s: dial tcp %s: connect: connection refused", addr, addr),
			want: []string{"join " + addr, "no shoal agent"},
		},
		{
			name: "TLS handshake with something else",
			err:  &clusterport.DialError{Err: errors.New("connect to x: tls: first record does not look like a TLS handshake")},
			want: []string{"join " + addr, "not a Shoal cluster node"},
		},
		{
			name: "peer hung up during the handshake",
			err:  &clusterport.DialError{Err: fmt.Errorf("connect to x: %w", io.EOF)},
			want: []string{"not a Shoal cluster node"},
		},
		{
			name: "anything else keeps the cause",
			err:  fmt.Errorf("connect to x: %w", os.ErrDeadlineExceeded),
			want: []string{"join " + addr, "i/o timeout"},
			is:   os.ErrDeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Explain(addr, tt.err)
			for _, w := range tt.want {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
			if tt.is != nil && !errors.Is(got, tt.is) {
				t.Errorf("%q no longer wraps %v", got, tt.is)
			}
		})
	}
}

// A join whose raft admission is stuck in raft's one-change-at-a-time
// queue answers anyway (the leader loop admits the recorded node); a lost
// leadership or any other failure still refuses it.
func TestAdmitLater(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"queue timeout", fmt.Errorf("add raft nonvoter x: %w: timed out enqueuing operation", consensus.ErrTimeout), true},
		{"wait ran out", fmt.Errorf("add raft nonvoter x: %w", context.DeadlineExceeded), true},
		{"leadership lost", fmt.Errorf("add raft nonvoter x: %w: leadership lost while committing log", consensus.ErrNotLeader), false},
		{"shut down", consensus.ErrShutdown, false},
		{"canceled", context.Canceled, false},
	} {
		if got := AdmitLater(c.err); got != c.want {
			t.Errorf("%s: AdmitLater = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":       "10.0.0.1:2377",
		"10.0.0.1:7946":  "10.0.0.1:7946",
		"node-a":         "node-a:2377",
		"fd00::1":        "[fd00::1]:2377",
		"[fd00::1]:2400": "[fd00::1]:2400",
	} {
		if got := DialAddr(in); got != want {
			t.Errorf("DialAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// A request the record or the certificate could not be made from is
// refused as a refusal (the joiner shows it), before anything is signed.
func TestCheckRequest(t *testing.T) {
	ok := wire.JoinRequest{NodeID: "n1", Hostname: "h1", Addr: "10.0.0.2", ClusterPort: 2377, GossipPort: 7946}
	tests := []struct {
		name  string
		edit  func(*wire.JoinRequest)
		valid bool
	}{
		{"complete", func(*wire.JoinRequest) {}, true},
		{"no node ID", func(r *wire.JoinRequest) { r.NodeID = "" }, false},
		{"no hostname", func(r *wire.JoinRequest) { r.Hostname = "" }, false},
		{"address not an IP", func(r *wire.JoinRequest) { r.Addr = "node-b" }, false},
		{"no address", func(r *wire.JoinRequest) { r.Addr = "" }, false},
		{"no cluster port", func(r *wire.JoinRequest) { r.ClusterPort = 0 }, false},
		{"negative gossip port", func(r *wire.JoinRequest) { r.GossipPort = -1 }, false},
		{"dotted hostname", func(r *wire.JoinRequest) { r.Hostname = "db1.example.com" }, true},
	}
	for _, tt := range tests {
		req := ok
		tt.edit(&req)
		ip, err := CheckRequest(req)
		if tt.valid {
			if err != nil || ip.String() != req.Addr {
				t.Errorf("%s: CheckRequest = %v, %v; want %s", tt.name, ip, err, req.Addr)
			}
			continue
		}
		var re *wire.Error
		if !errors.As(err, &re) || re.Code != wire.CodeRefused || !strings.Contains(re.Msg, "missing node ID, hostname, address or ports") {
			t.Errorf("%s: CheckRequest err = %v, want a refusal", tt.name, err)
		}
	}
}

// TestCheckRequestRefusesBadFields: a joiner names itself; its hostname
// is printed on admins' terminals and matched by constraints, so it is held
// to a DNS name's characters, and ports to their range.
func TestCheckRequestRefusesBadFields(t *testing.T) {
	for _, tc := range []struct {
		edit func(*wire.JoinRequest)
		want string
	}{
		{func(r *wire.JoinRequest) { r.Hostname = "evil\x1b[2J" }, "not allowed"},
		{func(r *wire.JoinRequest) { r.Hostname = strings.Repeat("h", 300) }, "longer"},
		{func(r *wire.JoinRequest) { r.ClusterPort = 70000 }, "1-65535"},
		{func(r *wire.JoinRequest) { r.GossipPort = 65536 }, "1-65535"},
	} {
		req := wire.JoinRequest{NodeID: "n1", Hostname: "h1", Addr: "10.0.0.2", ClusterPort: 2377, GossipPort: 7946}
		tc.edit(&req)
		_, err := CheckRequest(req)
		var re *wire.Error
		if !errors.As(err, &re) || re.Code != wire.CodeRefused || !strings.Contains(re.Msg, tc.want) {
			t.Errorf("%+v: err = %v, want a refusal with %q", req, err, tc.want)
		}
	}
}

// A node joining again under its ID keeps what operators set on it; its
// certificate, address and resources are the new ones.
func TestAdmittedNode(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	created := now.Add(-48 * time.Hour)
	req := wire.JoinRequest{NodeID: "n1", Hostname: "h1", Addr: "10.0.0.2", ClusterPort: 2377, GossipPort: 7946,
		Resources: api.Resources{NanoCPUs: 2e9, MemoryBytes: 1 << 30}}
	fresh := api.Node{
		ID: "n1", Hostname: "h1", Addr: "10.0.0.2", ClusterPort: 2377, GossipPort: 7946,
		Status: api.NodeReady, Availability: api.AvailabilityActive, Labels: map[string]string{},
		Resources: req.Resources, CertSerial: "s2", CertKey: "k2", CreatedAt: now, UpdatedAt: now,
		StatusChangedAt: now, // ready since its admission, also when it was down before
	}
	old := &api.Node{
		ID: "n1", Hostname: "old", Addr: "10.0.0.9", Status: api.NodeDown, Availability: api.AvailabilityDrain,
		Labels: map[string]string{"zone": "a"}, Role: "db", CertSerial: "s1", CreatedAt: created, UpdatedAt: created,
	}
	kept := fresh
	kept.Labels = map[string]string{"zone": "a"}
	kept.Availability = api.AvailabilityDrain
	kept.Role = "db"
	kept.CreatedAt = created
	for _, tt := range []struct {
		name string
		old  *api.Node
		want api.Node
	}{
		{"first join", nil, fresh},
		{"join again", old, kept},
	} {
		if got := AdmittedNode(req, "s2", "k2", now, tt.old); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.name, got, tt.want)
		}
	}
}

func TestReplacement(t *testing.T) {
	alive := func(ids ...string) func(string) bool {
		return func(id string) bool {
			for _, a := range ids {
				if a == id {
					return true
				}
			}
			return false
		}
	}
	servers := []raftnode.Server{
		{ID: "v1", Addr: "a1", Voter: true},
		{ID: "v2", Addr: "a2", Voter: true},
		{ID: "n1", Addr: "b1"},
		{ID: "n2", Addr: "b2"},
	}
	for _, tt := range []struct {
		name    string
		leaving string
		alive   func(string) bool
		want    string // "" for none
	}{
		{"first live non-voter", "v2", alive("v1", "v2", "n1", "n2"), "n1"},
		{"dead non-voters skipped", "v2", alive("v1", "v2", "n2"), "n2"},
		{"none alive", "v2", alive("v1", "v2"), ""},
		{"the leaving node itself is never picked", "n1", alive("n1"), ""},
		{"voters are never picked", "v2", alive("v1"), ""},
	} {
		got, ok := Replacement(servers, tt.leaving, tt.alive)
		if (tt.want == "") == ok || (ok && got.ID != tt.want) {
			t.Errorf("%s: Replacement = %v, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
}

// The files a join or init leaves: the names other packages read, and
// cluster.json, which marks the state complete.
func TestWriteClusterFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	if err := WriteClusterFiles(dir, "c1", []byte("cert"), []byte("key"), []byte("ca"), [][]byte{{1, 2}}, []string{"10.0.0.1:7946"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"pki", "keyring.json", "peers.json", "cluster.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil || string(b) != "{\n  \"cluster_id\": \"c1\"\n}" {
		t.Errorf("cluster.json = %q, %v", b, err)
	}
	// No peers (init): no peers.json.
	dir2 := filepath.Join(t.TempDir(), "cluster")
	if err := WriteClusterFiles(dir2, "c1", []byte("cert"), []byte("key"), []byte("ca"), [][]byte{{1}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir2, "peers.json")); !os.IsNotExist(err) {
		t.Errorf("peers.json without peers: %v", err)
	}
}

// fakeLostLog is a raft whose log was lost, for RejoinAfterLostLog.
type fakeLostLog struct {
	mu      sync.Mutex
	pending bool
	leader  bool
	done    int
}

func (f *fakeLostLog) RejoinPending() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.pending }
func (f *fakeLostLog) IsLeader() bool      { f.mu.Lock(); defer f.mu.Unlock(); return f.leader }
func (f *fakeLostLog) RejoinDone() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done++
	f.pending = false
	return nil
}

func TestRejoinAfterLostLog(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()

	t.Run("nothing pending asks nobody", func(t *testing.T) {
		f := &fakeLostLog{}
		RejoinAfterLostLog(ctx, f, func(context.Context) error { t.Error("asked"); return nil }, log)
		if f.done != 0 {
			t.Error("marked done")
		}
	})
	t.Run("the leader's yes gives the vote back", func(t *testing.T) {
		f := &fakeLostLog{pending: true}
		asks := 0
		RejoinAfterLostLog(ctx, f, func(context.Context) error { asks++; return nil }, log)
		if asks != 1 || f.done != 1 {
			t.Errorf("asks %d, done %d; want 1, 1", asks, f.done)
		}
	})
	t.Run("a leader has nothing to ask", func(t *testing.T) {
		f := &fakeLostLog{pending: true, leader: true}
		RejoinAfterLostLog(ctx, f, func(context.Context) error { t.Error("asked"); return nil }, log)
		if f.done != 1 {
			t.Errorf("done %d, want 1", f.done)
		}
	})
	t.Run("no leader: the vote stays withheld until ctx ends", func(t *testing.T) {
		f := &fakeLostLog{pending: true}
		cctx, cancel := context.WithCancel(ctx)
		RejoinAfterLostLog(cctx, f, func(context.Context) error { cancel(); return errors.New("no leader") }, log)
		if f.done != 0 {
			t.Error("rejoin marked done without the leader's yes")
		}
	})
}

// A refused join leaves the data dir as it was (DESIGN.md, Security: "A
// wrong or rotated token gets a clear refusal and nothing is written"); a
// join whose outcome is unknown keeps the pending key for its retry, and a
// key an earlier attempt left is never dropped.
func TestRefusedJoinWritesNothing(t *testing.T) {
	tok := pki.FormatToken(strings.Repeat("a", pki.FingerprintLen), pki.NewSecret())
	tests := []struct {
		name     string
		err      error
		earlier  bool // a pending key from an earlier attempt exists
		wantFile bool
	}{
		{"refused by the leader", &wire.Error{Code: wire.CodeRefused, Msg: "invalid join token: wrong or rotated secret"}, false, false},
		{"CA pin failed", fmt.Errorf("connect: %w", pki.ErrCAMismatch), false, false},
		{"nothing listens", &clusterport.DialError{Err: errors.New("connection refused")}, false, false},
		{"reply lost", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), false, true},
		{"refused, key of an earlier attempt", &wire.Error{Code: wire.CodeRefused, Msg: "no"}, true, true},
		{"leadership lost while committing the record", &wire.Error{Code: wire.CodeNotLeader, Msg: "record node: apply command type 2: not the raft leader: leadership lost while committing log"}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.earlier {
				if _, _, err := keyring.JoinKey(dir, ClusterDir(dir), "n1"); err != nil {
					t.Fatal(err)
				}
			}
			j := &Joiner{
				Self:    Self{NodeID: "n1", Hostname: "h1", Addr: "192.0.2.2"},
				DataDir: dir,
				Key:     func() (*ecdsa.PrivateKey, []byte, error) { return keyring.JoinKey(dir, ClusterDir(dir), "n1") },
				Call: func(context.Context, string, *tls.Config, string, any, any) error {
					return tt.err
				},
				Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			}
			if err := j.Join(context.Background(), api.JoinRequest{Token: tok, Addr: "192.0.2.1"}); err == nil {
				t.Fatal("join succeeded")
			}
			_, err := os.Stat(filepath.Join(dir, keyring.PendingJoinKeyFile))
			if got := err == nil; got != tt.wantFile {
				t.Errorf("pending join key kept = %v, want %v", got, tt.wantFile)
			}
			if _, err := os.Stat(ClusterDir(dir)); err == nil {
				t.Errorf("a failed join left %s", ClusterDir(dir))
			}
		})
	}
}

// TestSelfNodeStatusChangedAt: the first node of a cluster is ready since
// the cluster began; `node inspect` showed status_changed_at year 1.
func TestSelfNodeStatusChangedAt(t *testing.T) {
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	n := SelfNode(Self{NodeID: "n1", Hostname: "h1"}, api.Resources{}, now, "s1")
	if !n.StatusChangedAt.Equal(now) || n.Status != api.NodeReady {
		t.Fatalf("status %s since %v, want ready since %v", n.Status, n.StatusChangedAt, now)
	}
}

// timeoutErr is a net.Error that timed out, as a connect or a handshake
// past its deadline returns.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "read tcp 192.0.2.2:40000->192.0.2.1:2377: i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestConnectTimedOut(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"handshake past its deadline", &clusterport.DialError{Err: fmt.Errorf("connect to x: %w", timeoutErr{})}, true},
		{"connect past its deadline", &clusterport.DialError{Err: fmt.Errorf("connect to x: %w", os.ErrDeadlineExceeded)}, true},
		{"nothing listens", &clusterport.DialError{Err: errors.New("connect to x: connection refused")}, false},
		{"CA pin failed", &clusterport.DialError{Err: fmt.Errorf("connect to x: %w", pki.ErrCAMismatch)}, false},
		// The request was sent: the leader may have admitted the node.
		{"answer late", fmt.Errorf("read join answer: %w", timeoutErr{}), false},
		{"refused", &wire.Error{Code: wire.CodeRefused, Msg: "no"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := connectTimedOut(tt.err); got != tt.want {
				t.Errorf("connectTimedOut(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// callingJoiner is a Joiner of node n1 with its data in dir whose every
// call to the leader answers call().
func callingJoiner(dir string, call func() error) *Joiner {
	return &Joiner{
		Self:    Self{NodeID: "n1", Hostname: "h1", Addr: "192.0.2.2"},
		DataDir: dir,
		Key:     func() (*ecdsa.PrivateKey, []byte, error) { return keyring.JoinKey(dir, ClusterDir(dir), "n1") },
		Call:    func(context.Context, string, *tls.Config, string, any, any) error { return call() },
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// TestJoinAsksAgainAfterConnectTimeouts: a leader too busy to complete the
// handshake in time is asked again within the join's time, and the call
// that reaches it is the one answered; any other failure ends the join at
// the first call.
func TestJoinAsksAgainAfterConnectTimeouts(t *testing.T) {
	tok := pki.FormatToken(strings.Repeat("a", pki.FingerprintLen), pki.NewSecret())
	late := &clusterport.DialError{Err: fmt.Errorf("connect to x: %w", timeoutErr{})}
	refused := &wire.Error{Code: wire.CodeRefused, Msg: "invalid join token: wrong or rotated secret"}
	tests := []struct {
		name      string
		errs      []error // what each call returns, in turn
		wantCalls int
		wantErr   string
	}{
		{"two late handshakes, then a refusal", []error{late, late, refused}, 3, "wrong or rotated secret"},
		{"refused at once", []error{refused, late}, 1, "wrong or rotated secret"},
		{"nothing listens", []error{&clusterport.DialError{Err: errors.New("connection refused")}, late}, 1, "no shoal agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			j := callingJoiner(t.TempDir(), func() error {
				calls++
				return tt.errs[min(calls, len(tt.errs))-1]
			})
			err := j.Join(context.Background(), api.JoinRequest{Token: tok, Addr: "192.0.2.1"})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("join: %v, want an error saying %q", err, tt.wantErr)
			}
			if calls != tt.wantCalls {
				t.Errorf("%d calls, want %d", calls, tt.wantCalls)
			}
		})
	}
}

// TestJoinGivesUpWithItsTime: a leader that never completes a handshake
// ends the join when the caller's time does, with the timeout as cause.
func TestJoinGivesUpWithItsTime(t *testing.T) {
	tok := pki.FormatToken(strings.Repeat("a", pki.FingerprintLen), pki.NewSecret())
	dir := t.TempDir()
	calls := 0
	j := callingJoiner(dir, func() error {
		calls++
		return &clusterport.DialError{Err: fmt.Errorf("connect to x: %w", timeoutErr{})}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	err := j.Join(ctx, api.JoinRequest{Token: tok, Addr: "192.0.2.1"})
	if err == nil || !strings.Contains(err.Error(), "i/o timeout") {
		t.Fatalf("join: %v, want the connect's timeout", err)
	}
	if calls < 2 {
		t.Errorf("%d calls within 600 ms, want the join to ask again", calls)
	}
	if _, err := os.Stat(filepath.Join(dir, keyring.PendingJoinKeyFile)); err == nil {
		t.Error("a join that never connected kept its pending key")
	}
}
