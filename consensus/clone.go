package consensus

import (
	"maps"
	"slices"

	"github.com/shoal-org/shoal/api"
)

// Objects inside memdb are immutable once inserted: the FSM (consensus/fsm)
// clones before it changes anything, and reads hand out clones so callers
// may mutate freely.

// CloneNode returns a deep copy of n (nil for nil).
func CloneNode(n *api.Node) *api.Node {
	if n == nil {
		return nil
	}
	c := *n
	c.Labels = maps.Clone(n.Labels)
	return &c
}

func cloneSpec(s api.ServiceSpec) api.ServiceSpec {
	c := s
	c.Command = slices.Clone(s.Command)
	c.Entrypoint = slices.Clone(s.Entrypoint)
	c.Env = slices.Clone(s.Env)
	c.Labels = maps.Clone(s.Labels)
	c.Ports = slices.Clone(s.Ports)
	c.Constraints = slices.Clone(s.Constraints)
	c.Mounts = slices.Clone(s.Mounts)
	c.Healthcheck = cloneHealth(s.Healthcheck)
	c.Secrets = slices.Clone(s.Secrets)
	c.Configs = slices.Clone(s.Configs)
	c.Networks = slices.Clone(s.Networks)
	c.CapAdd = slices.Clone(s.CapAdd)
	c.CapDrop = slices.Clone(s.CapDrop)
	c.Sysctls = maps.Clone(s.Sysctls)
	c.Ulimits = slices.Clone(s.Ulimits)
	c.ExtraHosts = slices.Clone(s.ExtraHosts)
	if s.NetworkAliases != nil {
		c.NetworkAliases = make(map[string][]string, len(s.NetworkAliases))
		for n, as := range s.NetworkAliases {
			c.NetworkAliases[n] = slices.Clone(as)
		}
	}
	c.PlacementPreferences = slices.Clone(s.PlacementPreferences)
	c.LogOptions = maps.Clone(s.LogOptions)
	if s.Autoscale != nil {
		a := *s.Autoscale
		c.Autoscale = &a
	}
	if s.RegistryAuth != nil {
		r := *s.RegistryAuth
		r.Sealed = slices.Clone(s.RegistryAuth.Sealed)
		c.RegistryAuth = &r
	}
	return c
}

func cloneHealth(h *api.HealthConfig) *api.HealthConfig {
	if h == nil {
		return nil
	}
	c := *h
	c.Test = slices.Clone(h.Test)
	return &c
}

// CloneService returns a deep copy of s, its specs included (nil for nil).
func CloneService(s *api.Service) *api.Service {
	if s == nil {
		return nil
	}
	c := *s
	c.Ports = slices.Clone(s.Ports)
	c.Spec = cloneSpec(s.Spec)
	c.Networks = slices.Clone(s.Networks)
	c.VIPs = maps.Clone(s.VIPs)
	if s.PreviousSpec != nil {
		p := cloneSpec(*s.PreviousSpec)
		c.PreviousSpec = &p
	}
	if s.UpdateStatus != nil {
		u := *s.UpdateStatus
		c.UpdateStatus = &u
	}
	if s.AutoscaleStatus != nil {
		a := *s.AutoscaleStatus
		c.AutoscaleStatus = &a
	}
	return &c
}

// CloneTask returns a deep copy of t (nil for nil).
func CloneTask(t *api.Task) *api.Task {
	if t == nil {
		return nil
	}
	c := *t
	c.Spec = cloneSpec(t.Spec)
	c.IPs = maps.Clone(t.IPs)
	return &c
}

// CloneImage returns a deep copy of i (nil for nil).
func CloneImage(i *api.Image) *api.Image {
	if i == nil {
		return nil
	}
	c := *i
	c.Tags = slices.Clone(i.Tags)
	c.Layers = slices.Clone(i.Layers)
	c.DiffIDs = slices.Clone(i.DiffIDs)
	c.Nodes = slices.Clone(i.Nodes)
	if i.Config != nil {
		cfg := *i.Config
		cfg.Entrypoint = slices.Clone(cfg.Entrypoint)
		cfg.Cmd = slices.Clone(cfg.Cmd)
		cfg.Env = slices.Clone(cfg.Env)
		cfg.ExposedPorts = slices.Clone(cfg.ExposedPorts)
		cfg.Healthcheck = cloneHealth(cfg.Healthcheck)
		c.Config = &cfg
	}
	return &c
}

// CloneCluster returns a deep copy of c (nil for nil).
func CloneCluster(c *ClusterState) *ClusterState {
	if c == nil {
		return nil
	}
	n := *c
	n.CACertPEM = slices.Clone(c.CACertPEM)
	n.CAKeyPEM = slices.Clone(c.CAKeyPEM)
	n.GossipKeys = make([][]byte, len(c.GossipKeys))
	for i, k := range c.GossipKeys {
		n.GossipKeys[i] = slices.Clone(k)
	}
	if c.GossipKeys == nil {
		n.GossipKeys = nil
	}
	n.Revoked = slices.Clone(c.Revoked)
	n.CertExpiry = maps.Clone(c.CertExpiry)
	n.CAKeySealed = slices.Clone(c.CAKeySealed)
	n.TokenSecretSealed = slices.Clone(c.TokenSecretSealed)
	n.PrevCACertPEM = slices.Clone(c.PrevCACertPEM)
	n.CACrossPEM = slices.Clone(c.CACrossPEM)
	n.RotationPending = slices.Clone(c.RotationPending)
	return &n
}

// CloneNetwork returns a deep copy of n (nil for nil).
func CloneNetwork(n *api.Network) *api.Network {
	if n == nil {
		return nil
	}
	c := *n
	c.Labels = maps.Clone(n.Labels)
	c.Shares = maps.Clone(n.Shares)
	if n.RunContainers != nil {
		c.RunContainers = make(map[string][]string, len(n.RunContainers))
		for k, v := range n.RunContainers {
			c.RunContainers[k] = slices.Clone(v)
		}
	}
	return &c
}
