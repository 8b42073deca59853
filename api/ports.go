package api

// Published ports the leader picks. A PortConfig with Published 0 (`-p 80`,
// compose "6379") asks the cluster for one, as Swarm does: the state
// machine gives it the lowest port of AutoPortMin-AutoPortMax that no
// service publishes for that protocol, where the create or update is
// applied, so every node agrees and two concurrent creates cannot get the
// same port. The chosen port is stored in the spec.
const (
	AutoPortMin = 30000
	AutoPortMax = 32767
)

// KeepPublished returns ports with every port that has no published port
// (0) given the one old publishes for it: the same target, protocol and
// mode, each old port given once, the ports listed with a published port
// claiming theirs first. The CLI and `stack deploy` send a spec as written
// (`-p 80`, "6379"), without the port the leader chose; without this an
// update or a redeploy of the same file would move the port (and roll the
// tasks). A port left at 0 is new: the leader picks one. Pure; ports is not
// modified.
func KeepPublished(old, ports []PortConfig) []PortConfig {
	if len(ports) == 0 {
		return ports
	}
	out := make([]PortConfig, len(ports))
	copy(out, ports)
	used := make([]bool, len(old))
	for _, p := range out {
		if p.Published == 0 {
			continue
		}
		for i, o := range old {
			if !used[i] && o.Published == p.Published && portProto(o) == portProto(p) {
				used[i] = true
				break
			}
		}
	}
	for j, p := range out {
		if p.Published != 0 {
			continue
		}
		for i, o := range old {
			if !used[i] && o.Published != 0 && o.Target == p.Target &&
				portProto(o) == portProto(p) && portMode(o) == portMode(p) {
				used[i] = true
				out[j].Published = o.Published
				break
			}
		}
	}
	return out
}

// portProto is a port's protocol, "tcp" when empty (the API's default).
func portProto(p PortConfig) string {
	if p.Protocol == "" {
		return "tcp"
	}
	return p.Protocol
}

// portMode is a port's publish mode, PublishIngress when empty.
func portMode(p PortConfig) string {
	if p.Mode == "" {
		return PublishIngress
	}
	return p.Mode
}
