package fsm

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
	"github.com/shoal-org/shoal/consensus/fsm/alloc"
	"github.com/shoal-org/shoal/consensus/fsm/command"
)

func applyCreateService(w *consensus.WriteTxn, c command.CreateService) (any, error) {
	s := consensus.CloneService(&c.Service)
	if s.Name == "" {
		s.Name = s.Spec.Name
	}
	if s.ID == "" || s.Name == "" {
		return nil, fmt.Errorf("create service: ID and name are required: %w", consensus.ErrInvalid)
	}
	if consensus.First[api.Service](w, consensus.TableServices, consensus.IndexID, s.ID) != nil {
		return nil, fmt.Errorf("create service %s: %w", s.ID, consensus.ErrExists)
	}
	if err := publishPorts(w, s, nil); err != nil {
		return nil, fmt.Errorf("create service %s: %w", s.Name, err)
	}
	if err := checkService(w, s, nil); err != nil {
		return nil, fmt.Errorf("create service %s: %w", s.Name, err)
	}
	if err := checkAliases(w, s, nil); err != nil {
		return nil, fmt.Errorf("create service %s: %w", s.Name, err)
	}
	if err := checkFileRefs(w, s.Spec); err != nil {
		return nil, fmt.Errorf("create service %s: %w", s.Name, err)
	}
	cl, _ := w.Cluster() // nil before bootstrap: no VIP
	changed, err := assignNetworks(w, cl, s, nil)
	if err != nil {
		return nil, fmt.Errorf("create service %s: %w", s.Name, err)
	}
	if changed {
		if err := w.PutCluster(cl); err != nil {
			return nil, err
		}
	}
	s.Version = w.Index()
	if err := w.Insert(consensus.TableServices, s); err != nil {
		return nil, err
	}
	return consensus.CloneService(s), nil
}

func applyUpdateService(w *consensus.WriteTxn, c command.UpdateService) (any, error) {
	old := consensus.First[api.Service](w, consensus.TableServices, consensus.IndexID, c.Service.ID)
	if old == nil {
		return nil, fmt.Errorf("update service %s: %w", c.Service.ID, consensus.ErrNotFound)
	}
	if c.ExpectVersion != 0 && old.Version != c.ExpectVersion {
		return nil, fmt.Errorf("update service %s: stored version %d, expected %d: %w",
			old.Name, old.Version, c.ExpectVersion, consensus.ErrVersionMismatch)
	}
	s := consensus.CloneService(&c.Service)
	if s.Name == "" {
		s.Name = s.Spec.Name
	}
	if s.Name == "" {
		s.Name = old.Name
	}
	if s.VIP == "" {
		s.VIP = old.VIP
	}
	if err := publishPorts(w, s, old); err != nil {
		return nil, fmt.Errorf("update service %s: %w", old.Name, err)
	}
	if err := checkService(w, s, old); err != nil {
		if s.Name != old.Name {
			return nil, fmt.Errorf("rename service %s to %s: %w", old.Name, s.Name, err)
		}
		return nil, fmt.Errorf("update service %s: %w", old.Name, err)
	}
	if err := checkAliases(w, s, old); err != nil {
		return nil, fmt.Errorf("update service %s: %w", old.Name, err)
	}
	if err := checkFileRefs(w, s.Spec); err != nil {
		return nil, fmt.Errorf("update service %s: %w", old.Name, err)
	}
	cl, _ := w.Cluster()
	changed, err := assignNetworks(w, cl, s, old)
	if err != nil {
		return nil, fmt.Errorf("update service %s: %w", old.Name, err)
	}
	if changed {
		if err := w.PutCluster(cl); err != nil {
			return nil, err
		}
	}
	s.CreatedAt = old.CreatedAt
	s.Version = w.Index()
	if err := w.Insert(consensus.TableServices, s); err != nil {
		return nil, err
	}
	return consensus.CloneService(s), nil
}

// publishPorts gives the ports of s that have no published port (0: `-p
// 80`, compose "6379") one: on an update the one old publishes for the
// same target, protocol and mode (api.KeepPublished: the CLI and `stack
// deploy` resend the spec as written), else the lowest free one of
// api.AutoPortMin-AutoPortMax (alloc.PublishedPorts). Here, where the
// write is applied, like the conflict checks of checkService: every
// replica chooses the same port from the same state, and of two
// concurrent creates the second sees the first's port taken. The leader
// proposes a spec with a port left at 0 only when every member applies it
// this way (command.AutoPortLevel).
func publishPorts(w *consensus.WriteTxn, s *api.Service, old *api.Service) error {
	ports := s.Spec.Ports
	if old != nil {
		ports = api.KeepPublished(old.Spec.Ports, ports)
	}
	ports, err := alloc.PublishedPorts(w, s.ID, ports)
	if err != nil {
		return err
	}
	s.Spec.Ports = ports
	return nil
}

// checkService enforces the invariants a service must keep with every
// other one, for a create (old nil) or an update of old into s:
//
//   - its name is a DNS label (api.ServiceNameProblem) and no other service
//     has the same name in any case: `web` and `WEB` are one DNS name;
//   - its published ports are valid and no other service publishes the same
//     protocol and port: the load balancer cannot send one port two ways;
//   - its VIP, when set, is an IPv4 address no other service holds.
//
// The API checks all of this too, but against its local replica: two
// concurrent writes through two nodes both pass there, and only the state
// machine sees them in order. An update is only checked on what it changes
// (a new name, newly published ports, a new VIP), so a conflict already in
// the state (written by an older binary) does not block every later update
// of the services involved.
func checkService(w *consensus.WriteTxn, s *api.Service, old *api.Service) error {
	rename := old == nil || s.Name != old.Name
	if rename {
		if p := api.ServiceNameProblem(s.Name); p != "" {
			return fmt.Errorf("name %q: %s: %w", s.Name, p, consensus.ErrInvalid)
		}
	}
	var vip netip.Addr
	newVIP := s.VIP != "" && (old == nil || s.VIP != old.VIP)
	if newVIP {
		a, err := netip.ParseAddr(strings.TrimSpace(s.VIP))
		if err != nil || !a.Is4() {
			return fmt.Errorf("VIP %q is not an IPv4 address: %w", s.VIP, consensus.ErrInvalid)
		}
		vip = a
	}
	claimed := map[string]bool{} // published ports this command adds
	var oldPorts map[string]bool
	if old != nil {
		oldPorts = map[string]bool{}
		for _, p := range old.Spec.Ports {
			oldPorts[publishedKey(p)] = true
		}
	}
	own := map[string]bool{}
	for _, p := range s.Spec.Ports {
		key := publishedKey(p)
		switch {
		case p.Published < 1 || p.Published > 65535 || p.Target < 1 || p.Target > 65535:
			return fmt.Errorf("port %d:%d out of range 1-65535: %w", p.Published, p.Target, consensus.ErrInvalid)
		case p.Protocol != "" && p.Protocol != "tcp" && p.Protocol != "udp":
			return fmt.Errorf("port %d: protocol %q (want tcp or udp): %w", p.Published, p.Protocol, consensus.ErrInvalid)
		case own[key]:
			return fmt.Errorf("published port %s listed twice: %w", key, consensus.ErrInvalid)
		}
		own[key] = true
		if !oldPorts[key] {
			claimed[key] = true
		}
	}
	if !rename && !newVIP && len(claimed) == 0 {
		return nil
	}
	for _, o := range consensus.All[api.Service](w, consensus.TableServices, consensus.IndexID) {
		if o.ID == s.ID {
			continue
		}
		if rename && strings.EqualFold(o.Name, s.Name) {
			if o.Name == s.Name {
				return fmt.Errorf("a service named %s exists (%s): %w", o.Name, o.ID, consensus.ErrNameTaken)
			}
			return fmt.Errorf("name %s differs from service %s only in case, and service names are DNS names: %w",
				s.Name, o.Name, consensus.ErrNameTaken)
		}
		for _, p := range o.Spec.Ports {
			if key := publishedKey(p); claimed[key] {
				return fmt.Errorf("published port %s is taken by service %s: %w", key, o.Name, consensus.ErrInUse)
			}
		}
		if newVIP {
			if a, err := netip.ParseAddr(strings.TrimSpace(o.VIP)); err == nil && a == vip {
				return fmt.Errorf("VIP %s is taken by service %s: %w", vip, o.Name, consensus.ErrInUse)
			}
		}
	}
	return nil
}

// publishedKey names what a published port occupies on every node:
// "8080/tcp" (an empty protocol is tcp, as the API defaults it).
func publishedKey(p api.PortConfig) string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%d/%s", p.Published, proto)
}

func applyDeleteService(w *consensus.WriteTxn, c command.DeleteService) (any, error) {
	old := consensus.First[api.Service](w, consensus.TableServices, consensus.IndexID, c.ID)
	if old == nil {
		return nil, fmt.Errorf("delete service %s: %w", c.ID, consensus.ErrNotFound)
	}
	if err := w.Delete(consensus.TableServices, old); err != nil {
		return nil, err
	}
	for _, t := range consensus.All[api.Task](w, consensus.TableTasks, consensus.IndexServiceID, c.ID) {
		nt := consensus.CloneTask(t)
		nt.DesiredState = api.TaskShutdown
		// Nobody will ever report on a task that was never assigned.
		if nt.NodeID == "" && !api.TaskTerminal(nt.State) {
			nt.State = api.TaskShutdown
		}
		if !c.Now.IsZero() {
			nt.UpdatedAt = c.Now
		}
		if err := w.Insert(consensus.TableTasks, nt); err != nil {
			return nil, err
		}
	}
	return nil, nil
}
