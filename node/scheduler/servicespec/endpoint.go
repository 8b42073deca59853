package servicespec

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// endpointProblems checks how the service is reached by name: its endpoint
// mode, and its network aliases. A dnsrr service has no VIP, so a port
// published through the routing mesh (which balances over the VIP's
// backends) would have nothing to stand for it: Swarm refuses it with the
// same words. Host-mode ports reach the node's own tasks and stay allowed.
// An alias is a DNS label of one of the service's networks, each once per
// network (in any case: DNS names are case-insensitive); clashes with other
// services are the state machine's (it sees them all).
func endpointProblems(spec api.ServiceSpec) []string {
	var p []string
	switch spec.EndpointMode {
	case "", api.EndpointVIP:
	case api.EndpointDNSRR:
		for i, port := range spec.Ports {
			if port.Mode == "" || port.Mode == api.PublishIngress {
				// A port the cluster would pick is shown as written (-p 80),
				// not as 0:80.
				spelled := strconv.Itoa(port.Target)
				if port.Published != 0 {
					spelled = fmt.Sprintf("%d:%d", port.Published, port.Target)
				}
				p = append(p, fmt.Sprintf("ports[%d] %s: port published with ingress mode can't be used with dnsrr mode (publish it with mode=host, or use endpoint mode vip)",
					i, spelled))
			}
		}
	default:
		p = append(p, fmt.Sprintf("endpoint_mode %q: want vip or dnsrr", spec.EndpointMode))
	}
	nets := api.SpecNetworks(spec)
	keys := make([]string, 0, len(spec.NetworkAliases))
	for n := range spec.NetworkAliases {
		keys = append(keys, n)
	}
	sort.Strings(keys)
	for _, n := range keys {
		if !slices.Contains(nets, n) {
			p = append(p, fmt.Sprintf("network_aliases[%s]: the service is not on network %s (it is on %s)", n, n, strings.Join(nets, ", ")))
			continue
		}
		seen := map[string]bool{}
		for i, a := range spec.NetworkAliases[n] {
			if why := api.AliasProblem(a); why != "" {
				p = append(p, fmt.Sprintf("network_aliases[%s][%d] %q: %s", n, i, a, why))
				continue
			}
			if seen[strings.ToLower(a)] {
				p = append(p, fmt.Sprintf("network_aliases[%s][%d] %q: listed twice", n, i, a))
			}
			seen[strings.ToLower(a)] = true
		}
	}
	return p
}
