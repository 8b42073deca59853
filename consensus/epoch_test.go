package consensus

import (
	"testing"
)

func TestCompareEpochs(t *testing.T) {
	for _, tt := range []struct {
		local, peer uint64
		want        EpochVerdict
	}{
		{0, 0, EpochSame},
		{3, 3, EpochSame},
		{1, 0, EpochPeerStale}, // an old voter returning to a recovered node
		{5, 2, EpochPeerStale},
		{0, 1, EpochSelfStale}, // the old voter meeting the recovered node
		{2, 9, EpochSelfStale},
		{^uint64(0), 0, EpochPeerStale},
	} {
		if got := CompareEpochs(tt.local, tt.peer); got != tt.want {
			t.Errorf("CompareEpochs(%d, %d) = %s, want %s", tt.local, tt.peer, got, tt.want)
		}
		// The verdicts of the two sides mirror each other: one side
		// refuses exactly when the other knows it is fenced.
		back := CompareEpochs(tt.peer, tt.local)
		mirror := map[EpochVerdict]EpochVerdict{EpochSame: EpochSame, EpochPeerStale: EpochSelfStale, EpochSelfStale: EpochPeerStale}
		if back != mirror[tt.want] {
			t.Errorf("CompareEpochs(%d, %d) = %s, want %s", tt.peer, tt.local, back, mirror[tt.want])
		}
	}
}

func TestNextEpoch(t *testing.T) {
	for _, tt := range []struct {
		local, recorded, want uint64
	}{
		{0, 0, 1}, // first recovery
		{1, 1, 2}, // second recovery, file and record agree
		{0, 3, 4}, // the local file was lost: the record wins
		{4, 2, 5}, // the record was never written (crash after the bump)
		{7, 0, 8}, // a node whose state predates epochs
		{2, 2, 3}, // never equal to either input
		{10, 9, 11},
	} {
		got := NextEpoch(tt.local, tt.recorded)
		if got != tt.want {
			t.Errorf("NextEpoch(%d, %d) = %d, want %d", tt.local, tt.recorded, got, tt.want)
		}
		if CompareEpochs(got, tt.local) != EpochPeerStale || CompareEpochs(got, tt.recorded) != EpochPeerStale {
			t.Errorf("NextEpoch(%d, %d) = %d does not fence both inputs", tt.local, tt.recorded, got)
		}
	}
}
