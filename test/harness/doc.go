// Package harness runs real Shoal clusters on one machine for end-to-end tests
// and benchmarks (STYLE.md habit 16).
//
// A Cluster is a Linux bridge in the root network namespace with a private
// /24 (10.213.X.0/24, the bridge holds .1) and n hosts. Each Host is a network
// namespace joined to the bridge by a veth pair, with the address .11, .12, …
// and one real `shoal agent` started inside it. Agents use the default ports
// (each host has its own namespace) and a per-host unix socket under
// /run/shoal-test/<cluster>/hN/ (the agent keeps its runc root and its
// containers' run dirs beside it);
// tests talk to them only through the CLI, run in
// the root namespace with `--host unix://SOCK`.
//
// Why nsenter and not `ip netns exec`: `ip netns exec` also unshares the mount
// namespace, so the overlayfs rootfs mounts an agent makes would vanish from
// a restarted agent's view (and from the test's cleanup). The agent is started
// with `nsenter --net=/run/netns/NS`, which switches only the network
// namespace, as a real host's agent would see its mounts after a restart.
// The price: /sys/class/net inside the agent shows the root namespace's
// devices; agents must use netlink, not sysfs, for network devices.
//
// Faults are injected where they happen in real clusters: at the link
// (Host.CutLink sets the bridge side of the veth down, Cluster.Partition adds
// nftables drop rules in the hosts' namespaces) and at the process
// (Host.KillProcess sends SIGKILL; Host.Kill does both: "pull the plug").
//
// Everything a cluster creates is removed by t.Cleanup, even when the test
// fails: agents, runc containers under the hosts' runc roots, mounts under
// the cluster's directories, namespaces, veths and the bridge. When a test
// fails, the last 100 lines of every agent's log are written to the test log.
// A test binary that dies without running its cleanups (a -timeout panic)
// leaves its clusters behind; each cluster records its owner process, and
// the next New in any process tears down clusters whose owner is gone.
//
// Tests that use the harness are skipped (not failed) when not run as root or
// when ip, nft, nsenter or runc is missing. The shoal binary is taken from
// $SHOAL_BIN or built once per test process (CGO_ENABLED=0) from the module
// root; call RemoveBuiltBinary from TestMain to delete that build.
package harness
