package handlers

// The network routes' side of the replica (node/httpapi networks.go routes
// them here; what a request alone can tell is checked there).

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/httpapi"
)

// RunNetworks checks the networks of a `shoal run` container: each must
// be attachable, or the default network, and named once. It returns their
// names as stored, in the order given.
func RunNetworks(store *consensus.Store, names []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, name := range names {
		n, err := ResolveNetwork(store, name)
		if err != nil {
			return nil, err
		}
		if n.Name != api.DefaultNetwork && !n.Attachable {
			return nil, httpapi.BadRequest("network %s is not attachable: only services may join it (create it with --attachable)", n.Name)
		}
		if seen[n.Name] {
			return nil, httpapi.BadRequest("network %s given twice", n.Name)
		}
		seen[n.Name] = true
		out = append(out, n.Name)
	}
	return out, nil
}

// ResolveNetwork resolves ref (ID, prefix or name): NotFound or BadRequest
// when it names no single network.
func ResolveNetwork(store *consensus.Store, ref string) (*api.Network, error) {
	n, err := store.ResolveNetwork(ref)
	if err != nil {
		if errors.Is(err, consensus.ErrNotFound) {
			return nil, httpapi.NotFound("no such network: %s", ref)
		}
		return nil, httpapi.BadRequest("network %s: %v", ref, err)
	}
	return n, nil
}

// SpecNetworkNames returns spec with each network it names by ID or ID
// prefix (the first column of `network ls`, which docker's --network and
// `shoal run --network` take as well as a name) given by the network's
// name: specs keep names, and the state machine, the data plane, DNS and
// `network rm` compare names, so an ID was refused as "network ID: not
// found". A network the spec then names twice is kept once (--network-add
// by ID of a network the service is on). A name, or a reference to no
// single network, is left as it is for the validation that follows. It
// never changes the caller's slices or map.
func SpecNetworkNames(store *consensus.Store, spec api.ServiceSpec) api.ServiceSpec {
	if len(spec.Networks) == 0 {
		return spec
	}
	nets := make([]string, 0, len(spec.Networks))
	var aliases map[string][]string
	for _, ref := range spec.Networks {
		n, err := store.ResolveNetwork(ref)
		if err != nil || n.Name == ref {
			nets = append(nets, ref)
			continue
		}
		if aliases == nil {
			aliases = maps.Clone(spec.NetworkAliases)
		}
		if a, ok := aliases[ref]; ok {
			delete(aliases, ref)
			aliases[n.Name] = append(slices.Clone(aliases[n.Name]), a...)
		}
		if !slices.Contains(nets, n.Name) && !slices.Contains(spec.Networks, n.Name) {
			nets = append(nets, n.Name)
		}
	}
	spec.Networks = nets
	if aliases != nil {
		spec.NetworkAliases = aliases
	}
	return spec
}

func (x *API) Networks() ([]api.Network, error) {
	store, err := x.agent.Store()
	if err != nil {
		return nil, err
	}
	out := []api.Network{}
	for _, n := range store.Networks() {
		out = append(out, *n)
	}
	return out, nil
}

func (x *API) Network(ref string) (*api.Network, error) {
	store, err := x.agent.Store()
	if err != nil {
		return nil, err
	}
	return ResolveNetwork(store, ref)
}

func (x *API) CreateNetwork(ctx context.Context, n api.Network) (*api.Network, error) {
	store, err := x.agent.Store()
	if err != nil {
		return nil, err
	}
	n.ID, n.CreatedAt = x.agent.NewID(), time.Now().UTC()
	n = WithShareLayout(store, n)
	if err := x.agent.Write(ctx, &command.CreateNetwork{Network: n}); err != nil {
		return nil, err
	}
	WaitLocal(ctx, store, func() bool {
		_, err := store.ResolveNetwork(n.ID)
		return err == nil
	})
	return ResolveNetwork(store, n.ID)
}

// WithShareLayout returns n with ShareBits set when its subnet is too
// small for index-derived node shares in store's cluster
// (api.NeedsAllocatedShares): the state machine then hands each node a
// share as it needs one. The field is set here, in the command, rather
// than by the state machine so that the command gate sees it: such a
// network needs every member at command.SharesLevel (an older one would
// refuse the subnet, and assign no shares). A subnet that does not parse
// is left for the state machine to refuse.
func WithShareLayout(store *consensus.Store, n api.Network) api.Network {
	subnet, err := netip.ParsePrefix(strings.TrimSpace(n.Subnet))
	cl := store.Cluster()
	if err != nil || cl == nil {
		return n
	}
	cluster, err := netip.ParsePrefix(cl.ClusterCIDR)
	if err != nil {
		return n
	}
	if n.ShareBits == 0 && subnet.Addr().Is4() && api.NeedsAllocatedShares(subnet, cluster) {
		n.ShareBits = api.AllocatedShareBits
	}
	return n
}

func (x *API) RemoveNetwork(ctx context.Context, id string) error {
	return x.agent.Write(ctx, &command.DeleteNetwork{ID: id})
}
