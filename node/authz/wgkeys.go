package authz

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/shoal-org/shoal/api"
)

// MaxWireGuardKey bounds the length of a WireGuard key a node publishes
// in its record: a key is 44 characters of base64. Nothing bounded it, so
// a node could carry any string there, replicated in its record to every
// node and every snapshot.
const MaxWireGuardKey = 64

// WireGuardKeyTaken returns why node n may not publish the WireGuard keys
// in its record, or "": a key another node's record holds (current or
// next), or one longer than MaxWireGuardKey. Every node configures one
// peer per public key, for the first node that holds it, so a member that
// copied another node's public key (they are public, in Raft) into its
// own record cut that node off every encrypted network cluster-wide.
//
// Keys are compared as the 32 bytes they decode to, as the overlay reads
// them (overlay/wireguard ParseKey trims spaces and accepts base64 whose
// last character has unused bits set): compared as strings, another
// node's key with a trailing space or another last character passed here
// and still took that node's peer everywhere.
func WireGuardKeyTaken(nodes []*api.Node, n api.Node) string {
	for _, k := range []string{n.WireGuardKey, n.WireGuardNextKey} {
		if k == "" {
			continue
		}
		if len(k) > MaxWireGuardKey {
			return fmt.Sprintf("a WireGuard key of %d characters (a key has 44)", len(k))
		}
		want := wgKeyID(k)
		for _, o := range nodes {
			if o.ID != n.ID && (wgKeyID(o.WireGuardKey) == want || wgKeyID(o.WireGuardNextKey) == want) {
				return fmt.Sprintf("WireGuard key %s is node %s's", k, api.ShortID(o.ID))
			}
		}
	}
	return ""
}

// wgKeyID is what identifies a published key: the 32 bytes it decodes to
// as the overlay decodes it, or the string itself when it is no key (the
// overlay skips such a peer); "" never matches.
func wgKeyID(k string) string {
	if k == "" {
		return "\x00none"
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
	if err != nil || len(b) != 32 {
		return "s:" + k
	}
	return "k:" + string(b)
}
