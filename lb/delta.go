package lb

// Why in place: a sync used to delete and re-add the whole table, and a
// scale-up changes one service's backends at a time, so 40 new tasks on
// 3 nodes meant about 40 full tables per node (some 110 nftables objects
// each, every rule echoed back) where a change needed a map refilled and
// a chain or two rewritten; that was the largest part of the agent's CPU
// during a scale-up. kube-proxy's nftables mode makes the same trade.
//
// What stays: each sync is still one transaction, so a packet sees the
// old rule set or the new one, never a mix (a `numgen mod N` rule and its
// map change together); a change that cannot be made in place (a chain's
// or a set's definition differs) replaces the table as before, and so does
// a sync after a failure, after Intact found the table changed by someone
// else, and the first sync of an LB (an agent restart).

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// delta turns the table programmed from one ruleset into the table of
// another, in the order the operations must go into one batch.
type delta struct {
	newSets   []setSpec         // added with their elements
	refill    []setSpec         // the same set, other elements: flushed and filled again
	newChains []*nftables.Chain // added with their rules
	rewrite   []*nftables.Chain // kept, every rule flushed and added again
	delChains []*nftables.Chain // flushed, then deleted once nothing jumps to them
	delSets   []*nftables.Set   // deleted once no rule looks them up
	next      *ruleset          // where the rules to add come from, in its order
}

func (d *delta) empty() bool {
	return len(d.newSets)+len(d.refill)+len(d.newChains)+len(d.rewrite)+len(d.delChains)+len(d.delSets) == 0
}

// diff is the delta from prev to next, both compiled for the same table.
// ok is false when the change cannot be made in place: a chain or a set
// whose definition (hook, priority, policy; key and data types, flags)
// differs, or a rule that does not marshal.
func diff(prev, next *ruleset) (d delta, ok bool) {
	if prev.table.Name != next.table.Name || prev.table.Family != next.table.Family {
		return delta{}, false
	}
	d.next = next
	prevSets := map[string]setSpec{}
	for _, s := range prev.sets {
		prevSets[s.set.Name] = s
	}
	nextSets := map[string]bool{}
	for _, s := range next.sets {
		nextSets[s.set.Name] = true
		old, found := prevSets[s.set.Name]
		switch {
		case !found:
			d.newSets = append(d.newSets, s)
		case !sameSetDef(old.set, s.set):
			return delta{}, false
		case !reflect.DeepEqual(old.elems, s.elems):
			d.refill = append(d.refill, s)
		}
	}
	for _, s := range prev.sets {
		if !nextSets[s.set.Name] {
			d.delSets = append(d.delSets, s.set)
		}
	}

	prevRules, err := prev.ruleKeys()
	if err != nil {
		return delta{}, false
	}
	nextRules, err := next.ruleKeys()
	if err != nil {
		return delta{}, false
	}
	prevChains := map[string]*nftables.Chain{}
	for _, c := range prev.chains {
		prevChains[c.Name] = c
	}
	nextChains := map[string]bool{}
	for _, c := range next.chains {
		nextChains[c.Name] = true
		old, found := prevChains[c.Name]
		switch {
		case !found:
			d.newChains = append(d.newChains, c)
		case !sameChainDef(old, c):
			return delta{}, false
		case !sameRules(prevRules[c.Name], nextRules[c.Name]):
			d.rewrite = append(d.rewrite, c)
		}
	}
	for _, c := range prev.chains {
		if !nextChains[c.Name] {
			d.delChains = append(d.delChains, c)
		}
	}
	return d, true
}

func sameRules(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, bytes.Equal)
}

// ruleKeys keys every rule of rs by its expressions' netlink encoding,
// once. A lookup's set ID is left out: it only numbers the sets of one
// batch, and the kernel finds a set by its name first.
func (rs *ruleset) ruleKeys() (map[string][][]byte, error) {
	if rs.keys != nil {
		return rs.keys, nil
	}
	out := map[string][][]byte{}
	fam := byte(rs.table.Family)
	for _, r := range rs.rules {
		var key []byte
		for _, e := range r.Exprs {
			if l, isLookup := e.(*expr.Lookup); isLookup {
				c := *l
				c.SetID = 0
				e = &c
			}
			b, err := expr.Marshal(fam, e)
			if err != nil {
				return nil, fmt.Errorf("marshal a rule of chain %s: %w", r.Chain.Name, err)
			}
			key = fmt.Appendf(key, "%d:", len(b))
			key = append(key, b...)
		}
		out[r.Chain.Name] = append(out[r.Chain.Name], key)
	}
	rs.keys = out
	return out, nil
}

// sameChainDef and sameSetDef compare what defines a chain or a set,
// leaving out the table (the same one) and a set's batch-local ID.
func sameChainDef(a, b *nftables.Chain) bool {
	x, y := *a, *b
	x.Table, y.Table = nil, nil
	return reflect.DeepEqual(x, y)
}

func sameSetDef(a, b *nftables.Set) bool {
	x, y := *a, *b
	x.Table, y.Table, x.ID, y.ID = nil, nil, 0, 0
	return reflect.DeepEqual(x, y)
}

// queue puts the delta's operations on c, in an order the kernel accepts
// in one transaction: sets and chains exist before a rule names them, and
// nothing is deleted while a rule still jumps to it or looks it up.
func (d *delta) queue(c *nftables.Conn) error {
	for _, s := range d.newSets {
		if err := c.AddSet(s.set, s.elems); err != nil {
			return fmt.Errorf("add set %s: %w", s.set.Name, err)
		}
	}
	for _, s := range d.refill {
		c.FlushSet(s.set)
		if len(s.elems) == 0 {
			continue
		}
		if err := c.SetAddElements(s.set, s.elems); err != nil {
			return fmt.Errorf("fill set %s: %w", s.set.Name, err)
		}
	}
	write := map[string]bool{} // the chains whose rules go in
	for _, ch := range d.newChains {
		c.AddChain(ch)
		write[ch.Name] = true
	}
	for _, ch := range d.rewrite {
		c.FlushChain(ch)
		write[ch.Name] = true
	}
	for _, r := range d.next.rules {
		if write[r.Chain.Name] {
			c.AddRule(r)
		}
	}
	for _, ch := range d.delChains {
		c.FlushChain(ch)
	}
	for _, ch := range d.delChains {
		c.DelChain(ch)
	}
	for _, s := range d.delSets {
		c.DelSet(s)
	}
	return nil
}
