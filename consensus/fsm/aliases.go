package fsm

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus"
)

// dnsName is one name a service answers for on one network: its own name
// or one of its aliases (ServiceSpec.NetworkAliases). key is the name in
// lower case (DNS names are case-insensitive).
type dnsName struct{ network, key string }

// nameUse is what a name of a service is, for error messages ("service
// web", "alias www of service web").
type nameUse struct {
	what  string
	alias bool
}

// dnsNames returns the names of s on each of its networks.
func dnsNames(s *api.Service) map[dnsName]nameUse {
	out := map[dnsName]nameUse{}
	for _, n := range api.SpecNetworks(s.Spec) {
		out[dnsName{n, strings.ToLower(s.Name)}] = nameUse{what: "service " + s.Name}
	}
	for n, aliases := range s.Spec.NetworkAliases {
		for _, a := range aliases {
			k := dnsName{n, strings.ToLower(a)}
			if _, ok := out[k]; !ok { // an alias equal to its own name adds nothing
				out[k] = nameUse{what: fmt.Sprintf("alias %s of service %s", a, s.Name), alias: true}
			}
		}
	}
	return out
}

// checkAliases refuses a service whose names on a network (its own name,
// its aliases there) would answer for another service on that network too:
// the embedded DNS gives a name one service per network. Service names
// are already unique cluster-wide (checkService), so the clashes are an
// alias against another service's name or alias on a shared network. As
// checkService, an update is checked only on the names it adds (a new
// alias, a new network, a rename), so a clash an older state holds does
// not block every later update.
func checkAliases(w *consensus.WriteTxn, s, old *api.Service) error {
	mine := dnsNames(s)
	if old != nil {
		for k := range dnsNames(old) {
			delete(mine, k)
		}
	}
	if len(mine) == 0 {
		return nil
	}
	var problems []string
	for _, o := range consensus.All[api.Service](w, consensus.TableServices, consensus.IndexID) {
		if o.ID == s.ID {
			continue
		}
		for k, theirs := range dnsNames(o) {
			// Two names are checkService's (any case, every network).
			if u, ok := mine[k]; ok && (u.alias || theirs.alias) {
				problems = append(problems, fmt.Sprintf("%s on network %s: the name is taken there by %s", u.what, k.network, theirs.what))
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return fmt.Errorf("%s (a name answers for one service per network): %w", strings.Join(problems, "; "), consensus.ErrNameTaken)
}
