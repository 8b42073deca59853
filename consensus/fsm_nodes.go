package consensus

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/shoal-org/shoal/api"
)

func (c BootstrapCluster) apply(w *writeTxn) (any, error) {
	if getCluster(w.tx) != nil {
		return nil, ErrAlreadyBootstrapped
	}
	if c.Cluster.ClusterID == "" || c.Node.ID == "" {
		return nil, fmt.Errorf("bootstrap: cluster and node IDs are required: %w", ErrInvalid)
	}
	cl := cloneCluster(&c.Cluster)
	n := cloneNode(&c.Node)
	n.Voter = true
	n.Version = w.index
	if err := ensureSubnet(w, cl, n); err != nil {
		return nil, fmt.Errorf("bootstrap node %s: %w", n.ID, err)
	}
	if err := w.putCluster(cl); err != nil {
		return nil, err
	}
	if err := w.insert(tableNodes, n); err != nil {
		return nil, err
	}
	return cloneNode(n), nil
}

func (c UpsertNode) apply(w *writeTxn) (any, error) {
	if c.Node.ID == "" {
		return nil, fmt.Errorf("upsert node: empty ID: %w", ErrInvalid)
	}
	n := cloneNode(&c.Node)
	n.Version = w.index
	if n.Subnet != "" {
		if err := checkSubnet(w, n); err != nil {
			return nil, fmt.Errorf("upsert node %s: %w", n.ID, err)
		}
	}
	if n.Subnet == "" {
		if old := first[api.Node](w, tableNodes, indexID, n.ID); old != nil && old.Subnet != "" {
			n.Subnet = old.Subnet
		} else if cl, err := w.cluster(); err == nil {
			if err := ensureSubnet(w, cl, n); err != nil {
				return nil, fmt.Errorf("upsert node %s: %w", n.ID, err)
			}
			if err := w.putCluster(cl); err != nil {
				return nil, err
			}
		}
	}
	if err := w.insert(tableNodes, n); err != nil {
		return nil, err
	}
	return cloneNode(n), nil
}

// checkSubnet refuses a node subnet given in a command that is not an IPv4
// prefix or overlaps another node's: the overlay routes each /24 to one
// node.
func checkSubnet(w *writeTxn, n *api.Node) error {
	p, err := netip.ParsePrefix(n.Subnet)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("subnet %q is not an IPv4 prefix: %w", n.Subnet, ErrInvalid)
	}
	for _, o := range all[api.Node](w, tableNodes, indexID) {
		if o.ID == n.ID || o.Subnet == "" {
			continue
		}
		if op, err := netip.ParsePrefix(o.Subnet); err == nil && op.Overlaps(p) {
			return fmt.Errorf("subnet %s overlaps %s of node %s: %w", p, op, o.ID, ErrInUse)
		}
	}
	return nil
}

func (c UpdateNode) apply(w *writeTxn) (any, error) {
	old := first[api.Node](w, tableNodes, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("update node %s: %w", c.ID, ErrNotFound)
	}
	n := cloneNode(old)
	switch c.Update.Availability {
	case "":
	case api.AvailabilityActive, api.AvailabilityPause, api.AvailabilityDrain:
		n.Availability = c.Update.Availability
	default:
		return nil, fmt.Errorf("update node %s: availability %q (want active, pause or drain): %w",
			c.ID, c.Update.Availability, ErrInvalid)
	}
	for k, v := range c.Update.LabelAdd {
		if k == "" {
			return nil, fmt.Errorf("update node %s: empty label key: %w", c.ID, ErrInvalid)
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
		return nil, fmt.Errorf("update node %s: role %q (want manager or worker): %w", c.ID, c.Update.Role, ErrInvalid)
	}
	n.UpdatedAt = c.Now
	n.Version = w.index
	if err := w.insert(tableNodes, n); err != nil {
		return nil, err
	}
	return cloneNode(n), nil
}

func (c SetNodeStatus) apply(w *writeTxn) (any, error) {
	for _, s := range c.Statuses {
		if s.Status != api.NodeReady && s.Status != api.NodeDown {
			return nil, fmt.Errorf("set node %s status %q: %w", s.ID, s.Status, ErrInvalid)
		}
	}
	changed := 0
	for _, s := range c.Statuses {
		old := first[api.Node](w, tableNodes, indexID, s.ID)
		if old == nil || old.Status == s.Status {
			continue
		}
		n := cloneNode(old)
		n.Status = s.Status
		n.StatusChangedAt = s.At
		n.Version = w.index
		if err := w.insert(tableNodes, n); err != nil {
			return nil, err
		}
		changed++
	}
	return changed, nil
}

func (c SetNodeVoter) apply(w *writeTxn) (any, error) {
	old := first[api.Node](w, tableNodes, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("set node %s voter: %w", c.ID, ErrNotFound)
	}
	if old.Voter == c.Voter {
		return nil, nil
	}
	n := cloneNode(old)
	n.Voter = c.Voter
	n.Version = w.index
	return nil, w.insert(tableNodes, n)
}

func (c RemoveNode) apply(w *writeTxn) (any, error) {
	old := first[api.Node](w, tableNodes, indexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("remove node %s: %w", c.ID, ErrNotFound)
	}
	if err := w.delete(tableNodes, old); err != nil {
		return nil, err
	}
	if cl, err := w.cluster(); err == nil {
		if old.CertSerial != "" && !cl.IsRevoked(old.CertSerial) {
			cl.Revoked = append(cl.Revoked, old.CertSerial)
		}
		// The log index, not a clock: every replica records the same.
		cl.LastRemovalIndex = w.index
		if err := w.putCluster(cl); err != nil {
			return nil, err
		}
	}
	groups := map[groupKey]struct{}{}
	for _, t := range all[api.Task](w, tableTasks, indexNodeID, c.ID) {
		nt := cloneTask(t)
		nt.DesiredState = api.TaskShutdown
		if !api.TaskTerminal(nt.State) {
			nt.State = api.TaskOrphaned
			nt.Message = "node removed"
		}
		nt.UpdatedAt = c.Now
		if err := w.insert(tableTasks, nt); err != nil {
			return nil, err
		}
		groups[taskGroup(nt)] = struct{}{}
	}
	for _, img := range all[api.Image](w, tableImages, indexID) {
		if !slices.Contains(img.Nodes, c.ID) {
			continue
		}
		ni := cloneImage(img)
		ni.Nodes = slices.DeleteFunc(ni.Nodes, func(id string) bool { return id == c.ID })
		if err := w.insert(tableImages, ni); err != nil {
			return nil, err
		}
	}
	return nil, trimGroups(w, groups)
}

func (c RotateToken) apply(w *writeTxn) (any, error) {
	cl, err := w.cluster()
	if err != nil {
		return nil, fmt.Errorf("rotate token: %w", err)
	}
	if c.SecretHash == "" {
		return nil, fmt.Errorf("rotate token: empty hash: %w", ErrInvalid)
	}
	cl.TokenSecretHash = c.SecretHash
	cl.TokenSecret = c.Secret
	cl.TokenSecretSealed = slices.Clone(c.SecretSealed)
	return nil, w.putCluster(cl)
}
