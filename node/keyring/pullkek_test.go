package keyring

import (
	"context"
	"errors"
	"testing"

	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/wire"
)

// votersRaft is FakeRaft with a configuration of its own.
type votersRaft struct {
	*FakeRaft
	servers []raftnode.Server
}

func (r votersRaft) Servers() ([]raftnode.Server, error) { return r.servers, nil }

// TestPullKEK: a voter without the key (promoted a moment ago, maybe the
// new leader) fetches it from another voter at once, as a join needs it
// to open the CA; a non-voter gets nothing.
func TestPullKEK(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mVoter  bool
		answers bool // the other voter hands the key
		wantErr error
	}{
		{"voter pulls the key", true, true, nil},
		{"no voter hands it", true, false, ErrNoKEK},
		{"not a voter", false, true, ErrNoKEK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t)
			servers := []raftnode.Server{{ID: "leader", Addr: "leader:2377", Voter: true}, {ID: "m", Addr: "m:2377", Voter: tc.mVoter}}
			raft := votersRaft{FakeRaft: c.raft, servers: servers}
			holder := c.keeper("leader", c.dir)
			holder.Raft = raft
			m := c.keeper("m", t.TempDir())
			m.Raft = raft
			m.Call = func(_ context.Context, addr, method string, _, out any) error {
				if method != wire.MethodKEK || addr != "leader:2377" || !tc.answers {
					return errors.New("unreachable")
				}
				resp, err := holder.HandKEK("m")
				if err != nil {
					return err
				}
				*out.(*wire.KEKResponse) = *resp
				return nil
			}
			rec := c.store.Cluster()
			if _, err := ClusterCA(m.Dir, rec); !errors.Is(err, ErrNoKEK) {
				t.Fatalf("before: %v, want ErrNoKEK", err)
			}
			err := m.PullKEK(context.Background(), rec)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("PullKEK: %v, want %v", err, tc.wantErr)
			}
			_, caErr := ClusterCA(m.Dir, rec)
			if (caErr == nil) != (tc.wantErr == nil) {
				t.Fatalf("after: open the CA: %v", caErr)
			}
			if tc.wantErr == nil {
				if err := m.PullKEK(context.Background(), rec); err != nil {
					t.Fatalf("PullKEK with the key held: %v", err)
				}
			}
		})
	}
}
