package node

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/membership"
	"github.com/shoal-org/shoal/node/wire"
)

// The leader refuses a command some member of the Raft configuration is
// too old for, at once and without retrying until the write timeout, and
// accepts it once that member advertises the level.
func TestWriteGatedByMemberLevels(t *testing.T) {
	a := newSoloAgent(t)
	a.cfg.WriteTimeout = time.Minute // a retried refusal would end in ErrNoQuorum instead
	a.cl.Host.Config = a.cfg
	m := membership.NewDetached(nil)
	a.cl.Members = m
	m.NotifyJoin(gossipNode(a.id.NodeID, `{"id":"`+a.id.NodeID+`","v":"v1.0.0","pl":1}`))
	since := func(cmd command.Command) int {
		if cmd.Type() == command.TypeDeleteTasks {
			return 2 // as if DeleteTasks were new in the next release
		}
		return command.SinceLevel(cmd)
	}
	a.cl.Raft.SetCommandGate(m.LevelGate(a.cl.Raft, since))
	ctx := context.Background()

	before := a.cl.Store.Index()
	_, err := a.write(ctx, &command.DeleteTasks{IDs: []string{"none"}})
	if !errors.Is(err, command.ErrUnsupported) {
		t.Fatalf("write of a too-new command: %v", err)
	}
	if !strings.Contains(err.Error(), "v1.0.0, level 1") || !strings.Contains(err.Error(), api.ShortID(a.id.NodeID)) {
		t.Fatalf("the refusal does not name the node and its release: %v", err)
	}
	if a.cl.Store.Index() != before {
		t.Fatal("a refused command changed the state")
	}
	if wire.ErrorCode(err) != "command_unsupported" {
		t.Fatalf("forwarded as %q", wire.ErrorCode(err))
	}
	// Commands every release applies are not held back.
	if _, err := a.write(ctx, &command.SetVoterTarget{Target: 3}); err != nil {
		t.Fatalf("base-level write: %v", err)
	}
	// Upgraded: the member now advertises level 2.
	m.NotifyUpdate(gossipNode(a.id.NodeID, `{"id":"`+a.id.NodeID+`","v":"v1.1.0","pl":2}`))
	if _, err := a.write(ctx, &command.DeleteTasks{IDs: []string{"none"}}); err != nil {
		t.Fatalf("write after the upgrade: %v", err)
	}
}

func gossipNode(name string, meta string) *memberlist.Node {
	return &memberlist.Node{Name: name, Addr: net.ParseIP("192.0.2.1"), Port: 7946, Meta: []byte(meta)}
}
