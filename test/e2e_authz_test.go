package test

// End-to-end tests of the trust boundaries (issue 7): a node's certificate
// speaks only for that node, a worker cannot change the cluster, and a
// service cannot publish the cluster's own ports.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/consensus/fsm/command"
	"github.com/shoal-org/shoal/node/pki"
	"github.com/shoal-org/shoal/test/harness"
)

// rawRPC is a test-only client of the cluster port: it speaks as the node
// of host h with the certificate and key in h's data dir, exactly as a
// node's root could, and sends one request in the RPC framing (TLS, the
// protocol byte 'C', one JSON request line, one JSON answer line).
func rawRPC(t testing.TB, h *harness.Host, addr, method string, body any) (code, msg string) {
	t.Helper()
	cert, pool, err := pki.LoadNodeTLS(filepath.Join(h.DataDir, "cluster", "pki"))
	if err != nil {
		t.Fatalf("load %s's certificate: %v", h.Name, err)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, pki.ClientTLS(cert, pool))
	if err != nil {
		t.Fatalf("dial %s as %s: %v", addr, h.Name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{"method": method, "body": json.RawMessage(b)})
	if _, err := conn.Write(append([]byte{'C'}, append(req, '\n')...)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatalf("read the answer of %s: %v", method, err)
	}
	var resp struct {
		Error string `json:"error"`
		Code  string `json:"code"`
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		t.Fatalf("answer %q: %v", line, err)
	}
	return resp.Code, resp.Error
}

// forgeApply sends cmd over the raw-command path to the leader as host h,
// retrying while leadership moves, and returns the refusal.
func forgeApply(t testing.TB, c *harness.Cluster, h *harness.Host, cmd command.Command) (code, msg string) {
	t.Helper()
	enc, err := command.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, electionTimeout, func() (bool, string) {
		st, err := h.Status()
		if err != nil || st.LeaderAddr == "" {
			return false, fmt.Sprintf("no leader known to %s (%v)", h.Name, err)
		}
		code, msg = rawRPC(t, h, st.LeaderAddr, "apply", map[string]any{"command": enc})
		return code != "not_leader", msg
	}, "an answer from the leader")
	return code, msg
}

// TestAuthz: one 3-node cluster, several trust boundaries.
func TestAuthz(t *testing.T) {
	c, _ := svcCluster(t, 3)
	h1, h2, h3 := c.Host(1), c.Host(2), c.Host(3)
	ids := nodeIDs(t, h1, h2, h3)
	id2, id3 := ids[1], ids[2]

	t.Run("forged status and node record refused", func(t *testing.T) {
		h1.MustCLI(t, "service", "create", "-d", "--name", "g", "--mode", "global", "bb:1", "sleep", "3600")
		var onH2 api.Task
		harness.Eventually(t, 2*time.Minute, func() (bool, string) {
			var tasks []api.Task
			if err := h1.JSON(&tasks, "service", "ps", "g"); err != nil {
				return false, err.Error()
			}
			running := 0
			for _, tk := range tasks {
				if tk.State == api.TaskRunning && tk.DesiredState == api.TaskRunning {
					running++
					if tk.NodeID == id2 {
						onH2 = tk
					}
				}
			}
			return running == 3 && onH2.ID != "", fmt.Sprintf("%d of 3 tasks running", running)
		}, "the global service running on every node")

		// h3, with its own valid certificate, reports h2's task as running
		// at an address of its choosing (which would move the service's
		// traffic to h3).
		code, msg := forgeApply(t, c, h3, &command.TaskStatus{NodeID: id2, Statuses: []api.TaskStatus{{
			TaskID: onH2.ID, State: api.TaskFailed, Error: "forged", IP: "10.42.250.250", Timestamp: time.Now().UTC(),
		}}})
		if code != "forbidden" || !strings.Contains(msg, "own tasks") {
			t.Fatalf("forged TaskStatus: code %q %q, want forbidden", code, msg)
		}
		// h3 rewrites h2's record to point at itself.
		n2, err := h1.Node(id2)
		if err != nil {
			t.Fatal(err)
		}
		hijack := n2
		hijack.Addr = h3.IP
		hijack.Labels = map[string]string{"owned": "yes"}
		code, msg = forgeApply(t, c, h3, &command.UpsertNode{Node: hijack})
		if code != "forbidden" || !strings.Contains(msg, "own node record") {
			t.Fatalf("raw UpsertNode for another node: code %q %q, want forbidden", code, msg)
		}
		// A cluster-internal command, even about itself.
		code, msg = forgeApply(t, c, h3, &command.SetNodeVoter{ID: id3, Voter: true})
		if code != "forbidden" {
			t.Fatalf("raw SetNodeVoter: code %q %q, want forbidden", code, msg)
		}
		// Nothing changed, on any node.
		harness.Consistently(t, 2*time.Second, func() (bool, string) {
			for _, h := range c.Hosts() {
				var tasks []api.Task
				if err := h.JSON(&tasks, "service", "ps", "g"); err != nil {
					return false, err.Error()
				}
				for _, tk := range tasks {
					if tk.ID == onH2.ID && (tk.State != api.TaskRunning || tk.IP != onH2.IP) {
						return false, fmt.Sprintf("%s sees h2's task %s at %s", h.Name, tk.State, tk.IP)
					}
				}
				n, err := h.Node(id2)
				if err != nil {
					return false, err.Error()
				}
				if n.Addr != h2.IP || n.Labels["owned"] != "" {
					return false, fmt.Sprintf("%s sees h2 at %s with labels %v", h.Name, n.Addr, n.Labels)
				}
			}
			return true, ""
		}, "the forged commands changed nothing")
	})

	t.Run("publishing the cluster's ports refused", func(t *testing.T) {
		for _, port := range []string{"2377", "7946", "4789"} {
			_, _, err := h2.CLI("service", "create", "-d", "--name", "p"+port, "--publish", port+":80", "bb:1", "sleep", "3600")
			mustFail(t, err, "publish "+port, port)
			mustFail(t, err, "publish "+port, "cluster")
		}
		var svcs []api.Service
		if err := h1.JSON(&svcs, "service", "ls"); err != nil {
			t.Fatal(err)
		}
		for _, s := range svcs {
			if strings.HasPrefix(s.Name, "p") {
				t.Fatalf("service %s was created", s.Name)
			}
		}
	})

	t.Run("worker role", func(t *testing.T) {
		leader := c.Leader(t, electionTimeout)
		worker := h3
		if leader == h3 {
			worker = h2
		}
		wid := worker.NodeID(t)
		h1.MustCLI(t, "node", "update", "--role", "worker", wid)
		// Every node shows the role; the worker stops voting.
		harness.Eventually(t, formTimeout, func() (bool, string) {
			for _, h := range c.Hosts() {
				n, err := h.Node(wid)
				if err != nil {
					return false, err.Error()
				}
				if n.Role != api.RoleWorker || n.Voter || n.ManagerStatus != "" {
					return false, fmt.Sprintf("%s sees %s role %q voter %v manager status %q", h.Name, worker.Name, n.Role, n.Voter, n.ManagerStatus)
				}
			}
			st, err := worker.Status()
			if err != nil {
				return false, err.Error()
			}
			if st.Voter {
				return false, "the worker still votes"
			}
			return true, ""
		}, "the worker shown as such and demoted")
		var nodes []api.Node
		if err := h1.JSON(&nodes, "node", "ls"); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if want := api.RoleManager; n.ID != wid && n.Role != want {
				t.Fatalf("node %s role %q, want %s", n.Hostname, n.Role, want)
			}
		}

		// The worker's socket answers reads and refuses changes.
		if err := worker.JSON(&nodes, "node", "ls"); err != nil {
			t.Fatalf("node ls on the worker: %v", err)
		}
		_, _, err := worker.CLI("service", "create", "-d", "--name", "fromworker", "bb:1", "sleep", "3600")
		mustFail(t, err, "service create on a worker", "worker")
		_, _, err = worker.CLI("service", "rm", "g")
		mustFail(t, err, "service rm on a worker", "worker")
		_, _, err = worker.CLI("node", "update", "--role", "manager", wid)
		mustFail(t, err, "a worker promoting itself", "worker")
		_, _, err = worker.CLI("node", "rm", "--force", h1.NodeID(t))
		mustFail(t, err, "node rm on a worker", "worker")
		if _, err := h1.Node(wid); err != nil {
			t.Fatal(err)
		}

		// A manager undoes it; the node may write again and may vote again.
		h1.MustCLI(t, "node", "update", "--role", "manager", wid)
		harness.Eventually(t, formTimeout, func() (bool, string) {
			_, stderr, err := worker.CLI("service", "create", "-d", "--name", "fromworker", "bb:1", "sleep", "3600")
			if err != nil {
				return false, stderr
			}
			return true, ""
		}, "writes from the node once it is a manager again")
		waitVoters(t, c, 3, 3)
	})
}
