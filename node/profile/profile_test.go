package profile

import (
	"errors"
	"testing"
	"time"

	"github.com/shoal-org/shoal/consensus/raftnode"
	"github.com/shoal-org/shoal/node/membership"
)

func TestByName(t *testing.T) {
	fast := Profile{Gossip: membership.DefaultTiming, Raft: raftnode.DefaultTiming, Procs: 1, Silence: 900 * time.Millisecond, SharedOrigin: true}
	tolerant := Profile{Gossip: membership.TolerantTiming, Raft: raftnode.QuietTiming, Procs: 1, Silence: 1800 * time.Millisecond}
	for _, c := range []struct {
		name string
		want Profile
		err  bool
	}{
		{"", fast, false},
		{"fast", fast, false},
		{"tolerant", tolerant, false},
		{"Tolerant", Profile{}, true},
		{"slow", Profile{}, true},
	} {
		got, err := ByName(c.name)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ByName(%q) = %+v, %v; want %+v, error %v", c.name, got, err, c.want, c.err)
		}
		if err != nil && !errors.Is(err, ErrUnknown) {
			t.Errorf("ByName(%q): %v is not ErrUnknown", c.name, err)
		}
	}
}

// Every profile's raft timing is one raft accepts, and its heard window
// (the leader's second opinion on a node gossip calls dead) covers a live
// agent's heartbeat interval but ends before gossip's earliest verdict on
// a real death, so the second opinion never holds a dead node back.
func TestProfilesHold(t *testing.T) {
	for name, p := range All {
		rc := raftnode.DefaultConfig()
		rc.NodeID = "x"
		rc.Timing = p.Raft
		if err := rc.Validate(); err != nil {
			t.Errorf("%s: raft timing: %v", name, err)
		}
		w := p.HeardWindow()
		if w <= p.Raft.HeartbeatInterval {
			t.Errorf("%s: heard window %s does not cover the heartbeat interval %s", name, w, p.Raft.HeartbeatInterval)
		}
		if w > p.Gossip.EarliestVerdict() {
			t.Errorf("%s: heard window %s outlasts gossip's earliest verdict %s", name, w, p.Gossip.EarliestVerdict())
		}
		// Raft's silence window leaves a live non-voter (heartbeats every
		// interval + timeout/10) at least half an interval of lateness.
		nv := p.Raft.HeartbeatInterval + p.Raft.HeartbeatTimeout/10
		if p.SilenceWindow() < nv+nv/2 {
			t.Errorf("%s: silence window %s within 1.5 non-voter intervals (%s)", name, p.SilenceWindow(), nv)
		}
		// A follower hears a real heartbeat at least twice per timeout.
		if 2*p.Raft.HeartbeatInterval > p.Raft.HeartbeatTimeout {
			t.Errorf("%s: heartbeat every %s against a %s timeout", name, p.Raft.HeartbeatInterval, p.Raft.HeartbeatTimeout)
		}
	}
	// The fast profile keeps the window it always had.
	if got := All[Default].HeardWindow(); got != 500*time.Millisecond {
		t.Errorf("fast heard window %s, want 500ms", got)
	}
}

// Fast's gossip ticks on raft's beats (the agent starts it on one);
// tolerant's cannot (1 s beats).
func TestGossipOnBeats(t *testing.T) {
	for name, want := range map[string]bool{"fast": true, "tolerant": false} {
		if got := All[name].GossipOnBeats(); got != want {
			t.Errorf("%s: GossipOnBeats = %v, want %v", name, got, want)
		}
	}
	if (Profile{Gossip: membership.DefaultTiming}).GossipOnBeats() {
		t.Error("no heartbeat interval: no beats to be on")
	}
}
