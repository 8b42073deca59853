package test

// End-to-end tests of "removal is final" (issue 7): `node rm --force` of a
// RUNNING node cuts it off from every path at once — its certificate is
// refused for Raft, RPC and blob fetch, the connections it held are closed,
// and the gossip key is rotated so that its gossip (still encrypted with the
// old key) is ignored by the others.
//
// A removed node that can ask a peer learns that it was removed and resets
// itself (node/revocation), closing its connections and leaving gossip on
// its own; that would make the checks pass for the wrong reason. So the removed host's outgoing
// connections to the cluster port are dropped with nftables in its own
// namespace first: it keeps running with its old certificate and its old
// gossip key, as a node that does not want to go would.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/test/harness"
)

// revokeTable is the nftables table the test adds in the removed host's
// namespace.
const revokeTable = "shoal_test_revoke"

// blockClusterPortOut drops h's outgoing connections to any cluster port.
func blockClusterPortOut(t testing.TB, h *harness.Host) {
	t.Helper()
	rules := fmt.Sprintf(`table inet %s {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp dport %d drop
	}
}
`, revokeTable, harness.ClusterPort)
	cmd := exec.Command("ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("block the cluster port on %s: %v: %s", h.Name, err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "exec", h.NS, "nft", "delete", "table", "inet", revokeTable).Run()
	})
}

// asNode dials addr from the test process with the certificate and key in
// h's data dir (as h's root could), selects proto and sends line (may be
// empty). It returns the connection after the handshake started.
func asNode(h *harness.Host, addr string, proto byte, line string) (*tls.Conn, error) {
	cert, pool, err := pki.LoadNodeTLS(filepath.Join(h.DataDir, "cluster", "pki"))
	if err != nil {
		return nil, fmt.Errorf("load %s's certificate: %w", h.Name, err)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, pki.ClientTLS(cert, pool))
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(append([]byte{proto}, line...)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// rpcLine is one RPC request line.
func rpcLine(method string, body any) string {
	b, _ := json.Marshal(body)
	req, _ := json.Marshal(map[string]any{"method": method, "body": json.RawMessage(b)})
	return string(req) + "\n"
}

// refusedAt reports whether a connection as h to addr with proto (and one
// request line) is refused during the TLS handshake for h's certificate
// (the server's alert surfaces on the first read in TLS 1.3), with what
// happened otherwise.
func refusedAt(h *harness.Host, addr string, proto byte, line string) (bool, string) {
	conn, err := asNode(h, addr, proto, line)
	if err != nil {
		return strings.Contains(err.Error(), "remote error: tls"), err.Error()
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = bufio.NewReader(conn).ReadByte()
	if err == nil {
		return false, "the server answered"
	}
	return strings.Contains(err.Error(), "remote error: tls"), err.Error()
}

// clusterConnsWith counts the established TCP connections in h's namespace
// between h's cluster port and ip, or from h to ip's cluster port.
func clusterConnsWith(t testing.TB, h *harness.Host, ip string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "ss", "-Htn", "state", "established").Output()
	if err != nil {
		t.Fatalf("ss on %s: %v", h.Name, err)
	}
	port := fmt.Sprintf(":%d", harness.ClusterPort)
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		local, peer := f[len(f)-2], f[len(f)-1]
		if strings.HasPrefix(peer, ip+":") && (strings.HasSuffix(local, port) || peer == ip+port) {
			n++
		}
	}
	return n
}

// revokeTimes is how long after `node rm` started each path was cut off.
type revokeTimes struct {
	handshake time.Duration // Raft, RPC and blob fetch refuse its certificate on every survivor
	held      time.Duration // the connection it held open was closed
	conns     time.Duration // no established cluster-port connection with it on any survivor
	gossip    time.Duration // every survivor's gossip counts it out (its messages are not read)
}

// membersAre holds when every one of hosts counts n live gossip members.
func membersAre(n int, hosts ...*harness.Host) harness.Condition {
	return func() (bool, string) {
		for _, h := range hosts {
			st, err := h.Status()
			if err != nil || st.Members != n {
				return false, fmt.Sprintf("%s counts %d gossip members (%v), want %d", h.Name, st.Members, err, n)
			}
		}
		return true, ""
	}
}

// removeRunningNode removes victim (running, blocked from asking whether it
// was removed) through via with `node rm --force` and polls until every
// path is cut. survivors are the other hosts.
func removeRunningNode(t testing.TB, via, victim *harness.Host, survivors []*harness.Host) revokeTimes {
	t.Helper()
	victimID := victim.NodeID(t)
	before := len(survivors) + 1

	// Preconditions, so that every check below can fail: the victim's
	// certificate works, it holds connections with the survivors, and
	// gossip counts it.
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, s := range survivors {
			if ok, what := refusedAt(victim, s.Addr(), 'C', rpcLine("ping", nil)); ok || what != "the server answered" {
				return false, fmt.Sprintf("ping as %s to %s: %s", victim.Name, s.Name, what)
			}
			st, err := s.Status()
			if err != nil || st.Members != before {
				return false, fmt.Sprintf("%s: %d members (%v)", s.Name, st.Members, err)
			}
		}
		return true, ""
	}, "the victim's certificate accepted and gossip complete")
	blockClusterPortOut(t, victim)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		n := 0
		for _, s := range survivors {
			n += clusterConnsWith(t, s, victim.IP)
		}
		return n > 0, fmt.Sprintf("%d connections", n)
	}, "survivors connected with the victim on the cluster port")
	held, err := asNode(victim, via.Addr(), 'C', "") // a request line never comes
	if err != nil {
		t.Fatalf("hold a connection as the victim: %v", err)
	}
	defer held.Close()
	heldClosed := make(chan time.Time, 1)
	go func() {
		// The server waits 30 s for a request line; closing sooner is the
		// revocation's doing.
		_ = held.SetReadDeadline(time.Now().Add(25 * time.Second))
		_, err := held.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return
		}
		heldClosed <- time.Now()
	}()

	removed := time.Now() // times count from the start of `node rm`
	via.MustCLI(t, "node", "rm", "--force", victimID)
	var out revokeTimes

	blob := rpcLine("blob", map[string]string{"digest": "sha256:" + strings.Repeat("0", 64)})
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, s := range survivors {
			for _, p := range []struct {
				name  string
				proto byte
				line  string
			}{{"raft", 'R', ""}, {"rpc", 'C', rpcLine("ping", nil)}, {"blob fetch", 'C', blob}} {
				if ok, what := refusedAt(victim, s.Addr(), p.proto, p.line); !ok {
					return false, fmt.Sprintf("%s as the victim to %s: %s", p.name, s.Name, what)
				}
			}
		}
		return true, ""
	}, "the victim's certificate refused for raft, rpc and blob fetch everywhere")
	out.handshake = time.Since(removed)
	select {
	case at := <-heldClosed:
		out.held = at.Sub(removed)
	case <-time.After(20 * time.Second):
		t.Fatal("the connection the victim held open was not closed")
	}
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, s := range survivors {
			if n := clusterConnsWith(t, s, victim.IP); n > 0 {
				return false, fmt.Sprintf("%s still has %d connections with the victim", s.Name, n)
			}
		}
		return true, ""
	}, "no survivor connected with the victim")
	out.conns = time.Since(removed)
	// The victim keeps gossiping with the key it had; once the rotation
	// retired that key nobody reads it, nobody answers its probes, and every
	// survivor declares it dead.
	harness.Eventually(t, 60*time.Second, membersAre(len(survivors), survivors...), "the victim's gossip ignored by every survivor")
	out.gossip = time.Since(removed)
	return out
}

// TestRevokeRunningNodeCutOff: `node rm --force` of a running node that
// does not want to go (it keeps its old certificate and gossip key, and
// cannot ask whether it was removed) → it can reach neither Raft, RPC nor
// blob fetch on any survivor, the connections it held are closed, no
// survivor holds a cluster-port connection with it, and its gossip is
// ignored: the survivors count 3 members and keep counting 3 while it keeps
// running and gossiping with its old key.
func TestRevokeRunningNodeCutOff(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 4)
	c.Form(t)
	leader := c.Leader(t, electionTimeout)
	var victim *harness.Host
	var survivors []*harness.Host
	for _, h := range c.Hosts() {
		if h != leader && victim == nil {
			victim = h
			continue
		}
		survivors = append(survivors, h)
	}
	times := removeRunningNode(t, leader, victim, survivors)
	t.Logf("cut off after node rm started: handshakes refused %v, held connection closed %v, all connections gone %v, gossip ignored %v",
		times.handshake, times.held, times.conns, times.gossip)

	// It stays out while it keeps running with its old certificate and key.
	harness.Consistently(t, 10*time.Second, func() (bool, string) {
		if !victim.Running() {
			return false, "the removed agent stopped; the test needs it running with its old certificate and key"
		}
		for _, s := range survivors {
			if n := clusterConnsWith(t, s, victim.IP); n > 0 {
				return false, fmt.Sprintf("%s has %d cluster-port connections with the removed node", s.Name, n)
			}
		}
		if ok, what := membersAre(len(survivors), survivors...)(); !ok {
			return false, what + ": the removed node's gossip was accepted"
		}
		return true, ""
	}, "the removed node stays cut off from the cluster port and from gossip")
	st, err := victim.Status()
	if err != nil {
		t.Fatalf("status on the removed node: %v", err)
	}
	if st.ClusterID == "" {
		t.Fatal("the removed node reset itself: the check above proved nothing")
	}
	c.WaitReady(t, 60*time.Second, len(survivors), survivors...)

}

// gossipKeyring reads the gossip keyring h's agent persisted last.
func gossipKeyring(h *harness.Host) ([][]byte, error) {
	b, err := os.ReadFile(filepath.Join(h.DataDir, "cluster", "keyring.json"))
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("%s's keyring: %w", h.Name, err)
	}
	return keys, nil
}

func hasKey(keys [][]byte, k []byte) bool {
	return slices.ContainsFunc(keys, func(x []byte) bool { return bytes.Equal(x, k) })
}

// TestRevokeRotationWhileDown: a node that is down while a removal rotates
// the gossip key to its end (the key it knows retired) comes back, catches
// up through Raft (which needs no gossip key), applies the new keyring and
// is a gossip member again, ready on every node.
func TestRevokeRotationWhileDown(t *testing.T) {
	harness.Context(t, testTimeout)
	c := harness.New(t, 4)
	c.Form(t)
	leader := c.Leader(t, electionTimeout)
	var nodes []api.Node
	if err := leader.JSON(&nodes, "node", "ls"); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, n := range nodes {
		status[n.Hostname] = n.ManagerStatus
	}
	// Keep the quorum: of the two hosts away, at most one votes.
	var down, gone *harness.Host
	for _, h := range c.Hosts() {
		if h != leader && status[hostname(h)] == "" && gone == nil {
			gone = h
		}
	}
	for _, h := range c.Hosts() {
		if h != leader && h != gone && down == nil {
			down = h
		}
	}
	if gone == nil || down == nil {
		t.Fatalf("want a non-voter and another follower among %v", status)
	}
	rest := hostsExcept(c.Hosts(), down, gone)
	before, err := gossipKeyring(down)
	if err != nil || len(before) != 1 {
		t.Fatalf("%s's keyring before: %d keys, %v", down.Name, len(before), err)
	}
	goneID, downID := gone.NodeID(t), down.NodeID(t)
	for _, h := range []*harness.Host{gone, down} {
		if err := h.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	harness.Eventually(t, downTimeout, nodeStatusSeen(goneID, api.NodeDown, rest...), "%s down", gone.Name)
	harness.Eventually(t, downTimeout, nodeStatusSeen(downID, api.NodeDown, rest...), "%s down", down.Name)
	leader.MustCLI(t, "node", "rm", goneID)
	harness.Eventually(t, 60*time.Second, func() (bool, string) {
		for _, h := range rest {
			keys, err := gossipKeyring(h)
			if err != nil || len(keys) != 1 || hasKey(keys, before[0]) {
				return false, fmt.Sprintf("%s's keyring: %d keys, the old one among them: %v (%v)", h.Name, len(keys), hasKey(keys, before[0]), err)
			}
		}
		return true, ""
	}, "the rotation finished: the key %s knows retired everywhere else", down.Name)
	if now, err := gossipKeyring(down); err != nil || len(now) != 1 || !bytes.Equal(now[0], before[0]) {
		t.Fatalf("%s's keyring changed while it was down: %d keys (%v)", down.Name, len(now), err)
	}

	if err := down.Restart(); err != nil {
		t.Fatal(err)
	}
	back := append(rest, down)
	c.WaitReady(t, formTimeout, 3, back...)
	harness.Eventually(t, 60*time.Second, membersAre(3, back...), "%s a gossip member again", down.Name)
	want, err := gossipKeyring(leader)
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, func() (bool, string) {
		keys, err := gossipKeyring(down)
		if err != nil || len(keys) != 1 || !bytes.Equal(keys[0], want[0]) {
			return false, fmt.Sprintf("%s's keyring: %d keys, the current one: %v (%v)", down.Name, len(keys), hasKey(keys, want[0]), err)
		}
		return true, ""
	}, "%s persisted the current keyring", down.Name)
}
