package containeropts

import (
	"fmt"
	"slices"
	"strings"
)

// ipcSysctls are the IPC namespace's sysctls a container may set, as
// Docker and runc allow them (kernel.shm*, kernel.msg*, kernel.sem).
var ipcSysctls = []string{
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
	"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
}

// hostOnlyNetSysctls are the net.* sysctls no network namespace but the
// host's has (Linux 6.18, compared in a fresh netns): runc's write to
// /proc/sys in the container's netns would fail, and every task with it.
// An entry ending in '_' stands for every key it begins. (A kernel older than
// the node's may namespace fewer, net.core.rmem_max among them: such a
// key passes here and fails at the task's start, as in Docker.)
var hostOnlyNetSysctls = []string{
	"net.core.bpf_jit_enable", "net.core.bpf_jit_harden", "net.core.bpf_jit_kallsyms", "net.core.bpf_jit_limit",
	"net.core.busy_poll", "net.core.busy_read", "net.core.default_qdisc", "net.core.dev_weight",
	"net.core.dev_weight_rx_bias", "net.core.dev_weight_tx_bias", "net.core.devconf_inherit_init_net",
	"net.core.fb_tunnels_only_for_init_net", "net.core.flow_limit_cpu_bitmap", "net.core.flow_limit_table_len",
	"net.core.gro_normal_batch", "net.core.high_order_alloc_disable", "net.core.max_skb_frags",
	"net.core.mem_pcpu_rsv", "net.core.message_burst", "net.core.message_cost", "net.core.netdev_budget",
	"net.core.netdev_budget_usecs", "net.core.netdev_max_backlog", "net.core.netdev_rss_key",
	"net.core.netdev_tstamp_prequeue", "net.core.netdev_unregister_timeout_secs",
	"net.core.rps_sock_flow_entries", "net.core.skb_defer_max", "net.core.warnings",
	"net.ipv4.cipso_", "net.ipv4.fib_sync_mem", "net.ipv4.inet_peer_", "net.ipv4.ipfrag_secret_interval",
	"net.ipv4.route.error_", "net.ipv4.route.gc_", "net.ipv4.route.max_size", "net.ipv4.route.redirect_",
	"net.ipv4.tcp_available_ulp", "net.ipv4.tcp_low_latency", "net.ipv4.tcp_max_orphans", "net.ipv4.tcp_mem",
	"net.ipv4.udp_mem", "net.ipv6.calipso_", "net.ipv6.ip6frag_secret_interval", "net.ipv6.mld_max_msf",
	"net.ipv6.mld_qrv", "net.netfilter.nf_log_all_netns", "net.nf_conntrack_max",
}

// SysctlProblem returns why a container may not set sysctl key to value,
// or "". A container may set only what its own namespaces hold, as in
// Docker: net.* (but those only the host has), the IPC ones (kernel.shm*,
// kernel.msg*, kernel.sem) and fs.mqueue.*. Anything else would be the
// host's setting, which runc refuses. The key is dotted words; the value
// is what runc writes to /proc/sys, one line.
func SysctlProblem(key, value string) string {
	for _, w := range strings.Split(key, ".") {
		if w == "" || strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			return fmt.Sprintf("%q: want a dotted name such as net.core.somaxconn", key)
		}
	}
	if strings.TrimSpace(value) == "" || strings.ContainsAny(value, "\x00\n") {
		return fmt.Sprintf("%q: value %q: want one non-empty line", key, value)
	}
	switch {
	case slices.Contains(ipcSysctls, key), strings.HasPrefix(key, "fs.mqueue."):
		return ""
	case strings.HasPrefix(key, "net."):
		for _, h := range hostOnlyNetSysctls {
			if key == h || strings.HasSuffix(h, "_") && strings.HasPrefix(key, h) {
				return fmt.Sprintf("%q is not namespaced: only the host has it, and a container cannot set it", key)
			}
		}
		return ""
	}
	return fmt.Sprintf("%q is not namespaced: a container may set net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* only", key)
}
