package writes

import (
	"net/netip"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

// ownTaskAddrs returns cmd, a command node id proposes about itself, with
// every task address it reports that is not inside id's share of that
// task's networks removed (and logs what it removed). A node draws its
// tasks' addresses from its own share of each network (its /24 on the
// default network, api.NetworkShare on the others); an address elsewhere is
// another container's, a VIP or a host's, and every node would send the
// service's traffic there and take it for a container of the task's
// networks (the DNS views). The report itself is kept: refusing the batch
// would stop the node's other reports, which it retries as they are.
func (w *Writer) ownTaskAddrs(id string, cmd command.Command) command.Command {
	return eachOf(cmd, func(c command.TaskStatus) command.TaskStatus { return w.ownTaskStatusAddrs(id, c) })
}

// eachOf returns cmd with f applied to every command of type T in it (as
// a value or a pointer, in batches too).
func eachOf[T command.Command](cmd command.Command, f func(T) T) command.Command {
	return eachCommand(cmd, func(cmd command.Command) command.Command {
		switch c := any(cmd).(type) {
		case T:
			return f(c)
		case *T:
			v := f(*c)
			return any(&v).(command.Command)
		}
		return cmd
	})
}

// eachCommand returns cmd with f applied to it, or to each command of a
// batch (nested batches too): how the leader trims what a node's report
// says beyond itself.
func eachCommand(cmd command.Command, f func(command.Command) command.Command) command.Command {
	each := func(cmds []command.Command) []command.Command {
		out := make([]command.Command, len(cmds))
		for i, inner := range cmds {
			out[i] = eachCommand(inner, f)
		}
		return out
	}
	switch c := cmd.(type) {
	case command.Batch:
		return command.Batch{Commands: each(c.Commands)}
	case *command.Batch:
		return &command.Batch{Commands: each(c.Commands)}
	}
	return f(cmd)
}

func (w *Writer) ownTaskStatusAddrs(id string, c command.TaskStatus) command.TaskStatus {
	store := w.cfg.Store
	shares := nodeShares(store, id)
	statuses := slices.Clone(c.Statuses)
	for i, st := range statuses {
		if st.IP == "" && len(st.IPs) == 0 {
			continue
		}
		t, err := store.Task(st.TaskID)
		if err != nil || t.NodeID != c.NodeID {
			continue // the state machine ignores it
		}
		nets := api.SpecNetworks(t.Spec)
		inShare := func(network, ip string) bool {
			p, ok := shares[network]
			a, err := netip.ParseAddr(ip)
			return ok && err == nil && slices.Contains(nets, network) && p.Contains(a)
		}
		if st.IP != "" && !slices.ContainsFunc(nets, func(n string) bool { return inShare(n, st.IP) }) {
			w.log.Warn("dropped a task address outside the reporting node's share", "node_id", api.ShortID(id), "task", t.Name, "ip", st.IP)
			st.IP = ""
		}
		if st.IPs != nil {
			ips := make(map[string]string, len(st.IPs))
			for network, ip := range st.IPs {
				if inShare(network, ip) {
					ips[network] = ip
				} else {
					w.log.Warn("dropped a task address outside the reporting node's share", "node_id", api.ShortID(id), "task", t.Name, "network", network, "ip", ip)
				}
			}
			st.IPs = ips
		}
		statuses[i] = st
	}
	c.Statuses = statuses
	return c
}

// nodeShares maps the name of each network to node id's share of it.
func nodeShares(store *consensus.Store, id string) map[string]netip.Prefix {
	shares := map[string]netip.Prefix{}
	n, err := store.Node(id)
	if err != nil {
		return shares
	}
	nodeSub, err := netip.ParsePrefix(n.Subnet)
	if err != nil {
		return shares
	}
	shares[api.DefaultNetwork] = nodeSub
	cl := store.Cluster()
	if cl == nil {
		return shares
	}
	cluster, err := netip.ParsePrefix(cl.ClusterCIDR)
	if err != nil {
		return shares
	}
	for _, nw := range store.Networks() {
		if nw.Name == api.DefaultNetwork {
			continue
		}
		if share, err := api.NetworkShare(nw, cluster, id, nodeSub); err == nil {
			shares[nw.Name] = share
		}
	}
	return shares
}
