package containeropts

import (
	"strings"
	"testing"
)

func TestSysctlProblem(t *testing.T) {
	tests := []struct{ key, value, want string }{
		{"net.core.somaxconn", "1024", ""},
		{"net.ipv4.ip_forward", "1", ""},
		{"net.ipv4.conf.all.rp_filter", "0", ""},
		{"net.ipv4.tcp_keepalive_time", "600", ""},
		{"net.ipv4.ip_local_port_range", "1024 65000", ""},
		{"kernel.shmmax", "68719476736", ""},
		{"kernel.msgmax", "65536", ""},
		{"kernel.sem", "250 32000 100 128", ""},
		{"fs.mqueue.msg_max", "100", ""},
		{"net.core.netdev_max_backlog", "5000", `"net.core.netdev_max_backlog" is not namespaced`},
		{"net.ipv4.tcp_mem", "1 2 3", "is not namespaced"},
		{"net.ipv4.route.gc_timeout", "300", "is not namespaced"},
		{"net.nf_conntrack_max", "1", "is not namespaced"},
		{"kernel.pid_max", "100000", `"kernel.pid_max" is not namespaced: a container may set net.*`},
		{"vm.swappiness", "10", "is not namespaced"},
		{"kernel.shmfoo", "1", "is not namespaced"},
		{"fs.file-max", "1", "is not namespaced"},
		{"net..core", "1", "want a dotted name"},
		{"net/../../etc", "1", "want a dotted name"},
		{"", "1", "want a dotted name"},
		{"net.core.somaxconn", "", "want one non-empty line"},
		{"net.core.somaxconn", "1\n2", "want one non-empty line"},
	}
	for _, tt := range tests {
		got := SysctlProblem(tt.key, tt.value)
		if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
			t.Errorf("%q=%q: %q, want %q", tt.key, tt.value, got, tt.want)
		}
	}
}
