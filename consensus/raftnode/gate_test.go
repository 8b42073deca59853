package raftnode

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// The gate runs on the leader before proposing: a refused command is not
// written, and removing the gate lets it through.
func TestRaftCommandGate(t *testing.T) {
	c := newRaftCluster(t, 1)
	l := c.form()
	ctx := context.Background()
	var asked []command.Type
	l.r.SetCommandGate(func(cmd command.Command) error {
		asked = append(asked, cmd.Type())
		if cmd.Type() == command.TypeRotateToken {
			return fmt.Errorf("%w: test", command.ErrUnsupported)
		}
		return nil
	})
	before := l.r.LastIndex()
	if _, err := l.r.Apply(ctx, command.RotateToken{SecretHash: "x"}); !errors.Is(err, command.ErrUnsupported) {
		t.Fatalf("gated apply: %v", err)
	}
	// The new leader may append its own barriers meanwhile (leaderNudge):
	// no command may follow before.
	for i := before + 1; i <= l.r.LastIndex(); i++ {
		var e raft.Log
		if err := l.r.logs.GetLog(i, &e); err != nil {
			t.Fatalf("read log entry %d: %v", i, err)
		}
		if e.Type == raft.LogCommand {
			t.Fatalf("a refused command reached the log at index %d (last index before: %d)", i, before)
		}
	}
	if _, err := l.r.Apply(ctx, command.SetVoterTarget{Target: 3}); err != nil {
		t.Fatalf("ungated apply: %v", err)
	}
	if len(asked) != 2 {
		t.Fatalf("gate asked %v", asked)
	}
	l.r.SetCommandGate(nil)
	if _, err := l.r.Apply(ctx, command.RotateToken{SecretHash: "x"}); err != nil {
		t.Fatalf("apply without gate: %v", err)
	}
}
