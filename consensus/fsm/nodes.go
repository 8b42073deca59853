package fsm

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/alloc"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func applyBootstrapCluster(w *consensus.WriteTxn, c command.BootstrapCluster) (any, error) {
	if w.Bootstrapped() {
		return nil, consensus.ErrAlreadyBootstrapped
	}
	if c.Cluster.ClusterID == "" || c.Node.ID == "" {
		return nil, fmt.Errorf("bootstrap: cluster and node IDs are required: %w", consensus.ErrInvalid)
	}
	cl := consensus.CloneCluster(&c.Cluster)
	n := consensus.CloneNode(&c.Node)
	n.Voter = true
	n.Version = w.Index()
	if err := ensureSubnet(w, cl, n); err != nil {
		return nil, fmt.Errorf("bootstrap node %s: %w", n.ID, err)
	}
	if err := w.PutCluster(cl); err != nil {
		return nil, err
	}
	if err := w.Insert(consensus.TableNodes, n); err != nil {
		return nil, err
	}
	return consensus.CloneNode(n), nil
}

func applyUpsertNode(w *consensus.WriteTxn, c command.UpsertNode) (any, error) {
	if c.Node.ID == "" {
		return nil, fmt.Errorf("upsert node: empty ID: %w", consensus.ErrInvalid)
	}
	n := consensus.CloneNode(&c.Node)
	n.Version = w.Index()
	if n.Subnet != "" {
		if err := checkSubnet(w, n); err != nil {
			return nil, fmt.Errorf("upsert node %s: %w", n.ID, err)
		}
	}
	if n.Subnet == "" {
		if old := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, n.ID); old != nil && old.Subnet != "" {
			n.Subnet = old.Subnet
		} else if cl, err := w.Cluster(); err == nil {
			if err := ensureSubnet(w, cl, n); err != nil {
				return nil, fmt.Errorf("upsert node %s: %w", n.ID, err)
			}
			if err := w.PutCluster(cl); err != nil {
				return nil, err
			}
		}
	}
	if err := w.Insert(consensus.TableNodes, n); err != nil {
		return nil, err
	}
	return consensus.CloneNode(n), nil
}

func applyUpdateOwnNode(w *consensus.WriteTxn, c command.UpdateOwnNode) (any, error) {
	old := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, c.Node.ID)
	if old == nil {
		return nil, fmt.Errorf("node %s reports about itself: %w", c.Node.ID, consensus.ErrNotFound)
	}
	n := consensus.CloneNode(old)
	api.CopyOwnedNodeFields(n, c.Node)
	n.Version = w.Index()
	if err := w.Insert(consensus.TableNodes, n); err != nil {
		return nil, err
	}
	return consensus.CloneNode(n), nil
}

// ensureSubnet gives n a free /24 of the cluster CIDR when it has none; cl
// records the allocation state (the caller stores it).
func ensureSubnet(w *consensus.WriteTxn, cl *consensus.ClusterState, n *api.Node) error {
	if n.Subnet != "" {
		return nil
	}
	subnet, err := alloc.NodeSubnet(w, cl, n.ID)
	if err != nil {
		return err
	}
	n.Subnet = subnet
	return nil
}

// checkSubnet refuses a node subnet given in a command that is not an IPv4
// prefix or overlaps another node's: the overlay routes each /24 to one
// node.
func checkSubnet(w *consensus.WriteTxn, n *api.Node) error {
	p, err := netip.ParsePrefix(n.Subnet)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("subnet %q is not an IPv4 prefix: %w", n.Subnet, consensus.ErrInvalid)
	}
	for _, o := range consensus.All[api.Node](w, consensus.TableNodes, consensus.IndexID) {
		if o.ID == n.ID || o.Subnet == "" {
			continue
		}
		if op, err := netip.ParsePrefix(o.Subnet); err == nil && op.Overlaps(p) {
			return fmt.Errorf("subnet %s overlaps %s of node %s: %w", p, op, o.ID, consensus.ErrInUse)
		}
	}
	return nil
}

func applyUpdateNode(w *consensus.WriteTxn, c command.UpdateNode) (any, error) {
	old := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("update node %s: %w", c.ID, consensus.ErrNotFound)
	}
	n := consensus.CloneNode(old)
	switch c.Update.Availability {
	case "":
	case api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
		n.Availability = c.Update.Availability
	default:
		return nil, fmt.Errorf("update node %s: availability %q (want active, pause or drain): %w",
			c.ID, c.Update.Availability, consensus.ErrInvalid)
	}
	for k, v := range c.Update.LabelAdd {
		if k == "" {
			return nil, fmt.Errorf("update node %s: empty label key: %w", c.ID, consensus.ErrInvalid)
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
	for _, k := range c.Update.LabelRm {
		delete(n.Labels, k)
	}
	switch c.Update.Role {
	case "":
	case api.RoleManager, api.RoleWorker:
		n.Role = c.Update.Role
	default:
		return nil, fmt.Errorf("update node %s: role %q (want manager or worker): %w", c.ID, c.Update.Role, consensus.ErrInvalid)
	}
	n.UpdatedAt = c.Now
	n.Version = w.Index()
	if err := w.Insert(consensus.TableNodes, n); err != nil {
		return nil, err
	}
	return consensus.CloneNode(n), nil
}

func applySetNodeStatus(w *consensus.WriteTxn, c command.SetNodeStatus) (any, error) {
	for _, s := range c.Statuses {
		if s.Status != api.NodeReady && s.Status != api.NodeDown {
			return nil, fmt.Errorf("set node %s status %q: %w", s.ID, s.Status, consensus.ErrInvalid)
		}
	}
	changed := 0
	for _, s := range c.Statuses {
		old := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, s.ID)
		if old == nil || old.Status == s.Status {
			continue
		}
		n := consensus.CloneNode(old)
		n.Status = s.Status
		n.StatusChangedAt = s.At
		n.Version = w.Index()
		if err := w.Insert(consensus.TableNodes, n); err != nil {
			return nil, err
		}
		changed++
	}
	return changed, nil
}

func applySetNodeVoter(w *consensus.WriteTxn, c command.SetNodeVoter) (any, error) {
	old := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("set node %s voter: %w", c.ID, consensus.ErrNotFound)
	}
	if old.Voter == c.Voter {
		return nil, nil
	}
	n := consensus.CloneNode(old)
	n.Voter = c.Voter
	n.Version = w.Index()
	if !c.Now.IsZero() {
		n.UpdatedAt = c.Now
	}
	return nil, w.Insert(consensus.TableNodes, n)
}

func applyRemoveNode(w *consensus.WriteTxn, c command.RemoveNode) (any, error) {
	old := consensus.First[api.Node](w, consensus.TableNodes, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("remove node %s: %w", c.ID, consensus.ErrNotFound)
	}
	if err := w.Delete(consensus.TableNodes, old); err != nil {
		return nil, err
	}
	if cl, err := w.Cluster(); err == nil {
		if old.CertSerial != "" && !cl.IsRevoked(old.CertSerial) {
			cl.Revoked = append(cl.Revoked, old.CertSerial)
		}
		// A renewed certificate it never confirmed goes with it.
		if p := old.PendingCertSerial; p != "" && !cl.IsRevoked(p) {
			cl.Revoked = append(cl.Revoked, p)
			delete(cl.CertExpiry, p)
		}
		// Without a known expiry the serial stays revoked until the
		// leader's next trim bounds it (TrimRevoked.UnknownUntil, past any
		// use of the certificate): peers answer the removed host's
		// question "was I removed?" from it until then.
		delete(cl.CertExpiry, old.CertSerial)
		// The log index, not a clock: every replica records the same.
		cl.LastRemovalIndex = w.Index()
		if err := w.PutCluster(cl); err != nil {
			return nil, err
		}
	}
	if err := setRunContainers(w, c.ID, nil); err != nil {
		return nil, err
	}
	if err := releaseShares(w, c.ID); err != nil {
		return nil, err
	}
	groups := map[groupKey]struct{}{}
	for _, t := range consensus.All[api.Task](w, consensus.TableTasks, consensus.IndexNodeID, c.ID) {
		nt := consensus.CloneTask(t)
		nt.DesiredState = api.TaskShutdown
		if !api.TaskTerminal(nt.State) {
			nt.State = api.TaskOrphaned
			nt.Message = "node removed"
		}
		nt.UpdatedAt = c.Now
		if err := w.Insert(consensus.TableTasks, nt); err != nil {
			return nil, err
		}
		groups[taskGroup(nt)] = struct{}{}
	}
	for _, img := range consensus.All[api.Image](w, consensus.TableImages, consensus.IndexID) {
		if !slices.Contains(img.Nodes, c.ID) {
			continue
		}
		ni := consensus.CloneImage(img)
		ni.Nodes = slices.DeleteFunc(ni.Nodes, func(id string) bool { return id == c.ID })
		if err := w.Insert(consensus.TableImages, ni); err != nil {
			return nil, err
		}
	}
	return nil, trimGroups(w, groups)
}

func applyRotateToken(w *consensus.WriteTxn, c command.RotateToken) (any, error) {
	cl, err := w.Cluster()
	if err != nil {
		return nil, fmt.Errorf("rotate token: %w", err)
	}
	if c.SecretHash == "" {
		return nil, fmt.Errorf("rotate token: empty hash: %w", consensus.ErrInvalid)
	}
	cl.TokenSecretHash = c.SecretHash
	cl.TokenSecret = c.Secret
	cl.TokenSecretSealed = slices.Clone(c.SecretSealed)
	return nil, w.PutCluster(cl)
}
