package runtime

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal-org/shoal/api"
	"github.com/shoal-org/shoal/runtime/ocispec"
	"github.com/shoal-org/shoal/runtime/seccompprog"
)

// TestInitInstallsRuncsFilter: a container whose init installs the
// seccomp program runs under the very filter runc installs when it
// compiles the profile itself: the PID 1 of one container of each kind and
// processes exec'd in the first (as root and as another user, and in a
// container without CAP_SETPCAP) have one filter each, the same program,
// and the capabilities they would have had from runc, nothing of what the
// wrapper held. Its health probes run under one filter; the program file
// is read-only in the container and cannot be unmounted. Containers with
// CAP_SYS_ADMIN or CAP_SYS_PTRACE are left to runc.
func TestInitInstallsRuncsFilter(t *testing.T) {
	cfg := testConfig(t)
	h := startHarness(t, cfg)
	events := h.rt.Subscribe()
	sleep := []string{"sleep", "3600"}
	fast := h.run(t, Spec{Image: "busybox", Name: "fast", Command: sleep, Healthcheck: &api.HealthConfig{
		Test:     []string{"CMD-SHELL", "grep -q '^Seccomp_filters:.1$' /proc/self/status"},
		Interval: 100 * time.Millisecond, Timeout: 10 * time.Second, Retries: 1}})
	cache := h.rt.seccomp
	h.rt.seccomp = nil // runc compiles the profile, as before
	slow := h.run(t, Spec{Image: "busybox", Name: "slow", Command: sleep})
	h.rt.seccomp = cache
	admin := h.run(t, Spec{Image: "busybox", Name: "admin", Command: sleep, CapAdd: []string{"SYS_ADMIN"}})
	tracer := h.run(t, Spec{Image: "busybox", Name: "tracer", Command: sleep, CapAdd: []string{"SYS_PTRACE"}})
	noSetpcap := h.run(t, Spec{Image: "busybox", Name: "nosetpcap", Command: sleep, CapDrop: []string{"SETPCAP"}})

	for _, tt := range []struct {
		c        api.Container
		initLoad bool
	}{{fast, true}, {slow, false}, {admin, false}, {tracer, false}, {noSetpcap, true}} {
		var s specs.Spec
		b, err := os.ReadFile(pathsOnDisk(t, cfg, tt.c.ID).Config)
		if err == nil {
			err = json.Unmarshal(b, &s)
		}
		if err != nil {
			t.Fatal(err)
		}
		proc := *s.Process
		if got := ocispec.WrapExec(&s, &proc); got != tt.initLoad || (s.Linux.Seccomp == nil) != tt.initLoad {
			t.Errorf("%s: the init installs the filter: %v, profile in the config: %v; want the init to: %v",
				tt.c.Name, got, s.Linux.Seccomp != nil, tt.initLoad)
		}
	}

	want, err := seccompprog.Dump(slow.Pid)
	if err != nil {
		t.Fatalf("runc's filter: %v", err)
	}
	got, err := seccompprog.Dump(fast.Pid)
	if err != nil {
		t.Fatalf("the init's filter: %v", err)
	}
	if len(want) == 0 || !sameProgram(got, want) {
		t.Fatalf("the init installed %d bytes of program, runc %d: not the same", len(got), len(want))
	}
	for _, tt := range []struct {
		c    api.Container
		user string
	}{{fast, ""}, {fast, "1000"}, {noSetpcap, ""}, {noSetpcap, "1000"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p, err := h.rt.Exec(ctx, tt.c.ID, ExecOptions{Args: []string{"sleep", "100"}, User: tt.user})
		if err != nil {
			t.Fatal(err)
		}
		// Until the wrapper has become sleep, the process may still be
		// the init with no filter yet: wait for the command.
		poll(t, "the exec'd sleep", 10*time.Second, func() bool {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/comm")
			return string(b) == "sleep\n"
		})
		execd, err := seccompprog.Dump(p.Pid)
		if err != nil {
			t.Fatalf("%s, user %q: the exec'd process's filter: %v", tt.c.Name, tt.user, err)
		}
		if !sameProgram(execd, want) {
			t.Errorf("%s, user %q: the exec'd process has %d bytes of program, runc installs %d: not the same", tt.c.Name, tt.user, len(execd), len(want))
		}
		// As root: PID 1's capabilities; as another user: none, and
		// PID 1's bounding set (Docker's, and runc's, way).
		wantCaps := capsOf(t, tt.c.Pid)
		if tt.user != "" {
			for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
				wantCaps[k] = "0000000000000000"
			}
		}
		if got := capsOf(t, p.Pid); !maps.Equal(got, wantCaps) {
			t.Errorf("%s, user %q: the exec'd process's capabilities %v, want %v", tt.c.Name, tt.user, got, wantCaps)
		}
		_ = p.Signal(syscall.SIGKILL)
		<-p.Done()
		p.Close()
		cancel()
	}

	for _, cmd := range []string{"echo x > " + ocispec.SeccompPath, "umount " + ocispec.SeccompPath, "umount -l " + ocispec.SeccompPath} {
		if _, _, code := execCollect(t, h.rt, fast.ID, ExecOptions{Args: []string{"sh", "-c", cmd}}, ""); code == 0 {
			t.Errorf("%q in the container succeeded", cmd)
		}
	}

	deadline := time.After(30 * time.Second)
	for healthy := false; !healthy; {
		select {
		case ev := <-events:
			healthy = ev.ContainerID == fast.ID && ev.Health == api.HealthHealthy
			if ev.ContainerID == fast.ID && ev.Health == api.HealthUnhealthy {
				t.Fatal("the health probe did not run under one filter")
			}
		case <-deadline:
			t.Fatal("no healthy event: the probe did not run under one filter")
		}
	}
}

// sameProgram reports whether two seccomp programs are the same graph of
// instructions, however laid out and whatever the order of a chain of
// equality checks. runc's stub in front of libseccomp's program dispatches
// on the architecture, one check and one section per architecture, in an
// order that varies from one runc to the next (it comes from a Go map):
// two compiles of one profile differ there only. Each program is walked
// from its first instruction, jump targets before fall-through, the arms
// of a chain of checks in the order of their constants, numbering
// instructions as they are first reached; the programs are the same when
// the walks are. (Equal walks mean equal meaning; the converse is not
// needed.)
func sameProgram(a, b []byte) bool {
	return len(a) > 0 && slices.Equal(programGraph(a), programGraph(b))
}

// programGraph is p's instructions in walk order, each with its operation,
// its constant and the walk numbers of the instructions it goes on to.
func programGraph(p []byte) []string {
	if len(p)%8 != 0 {
		return []string{"not a program"}
	}
	n := len(p) / 8
	ids := map[int]int{}
	var out []string
	var visit func(pc int) int
	visit = func(pc int) int {
		if id, ok := ids[pc]; ok {
			return id
		}
		id := len(out)
		ids[pc] = id
		out = append(out, "")
		if pc < 0 || pc >= n {
			out[id] = "out of the program"
			return id
		}
		ins := p[pc*8 : pc*8+8]
		code, jt, jf, k := binary.LittleEndian.Uint16(ins), int(ins[2]), int(ins[3]), binary.LittleEndian.Uint32(ins[4:])
		const jeqK = 0x15 // BPF_JMP|BPF_JEQ|BPF_K
		switch {
		case code&0x07 == 0x06: // BPF_RET
			out[id] = fmt.Sprintf("ret %#x", k)
		case code == 0x05: // BPF_JMP|BPF_JA
			out[id] = fmt.Sprintf("ja -> %d", visit(pc+1+int(k)))
		case code == jeqK:
			// A chain of equality checks of the one loaded value
			// against distinct constants: at most one matches, so
			// their order is no part of the program's meaning.
			type arm struct {
				k      uint32
				target int
			}
			var arms []arm
			seen := map[uint32]bool{}
			cur := pc
			for cur < n {
				c := p[cur*8 : cur*8+8]
				ck := binary.LittleEndian.Uint32(c[4:])
				if binary.LittleEndian.Uint16(c) != jeqK || seen[ck] {
					break
				}
				seen[ck] = true
				arms = append(arms, arm{ck, cur + 1 + int(c[2])})
				cur += 1 + int(c[3])
			}
			slices.SortFunc(arms, func(x, y arm) int { return cmp.Compare(x.k, y.k) })
			var b strings.Builder
			b.WriteString("jeq")
			for _, a := range arms {
				fmt.Fprintf(&b, " %#x -> %d", a.k, visit(a.target))
			}
			fmt.Fprintf(&b, " else -> %d", visit(cur))
			out[id] = b.String()
		case code&0x07 == 0x05: // a conditional jump
			t := visit(pc + 1 + jt)
			f := visit(pc + 1 + jf)
			out[id] = fmt.Sprintf("%#x %#x -> %d %d", code, k, t, f)
		default:
			out[id] = fmt.Sprintf("%#x %#x -> %d", code, k, visit(pc+1))
		}
		return id
	}
	visit(0)
	return append(out, fmt.Sprintf("%d instructions, %d reached", n, len(ids)))
}

func TestSameProgram(t *testing.T) {
	ins := func(code uint16, jt, jf uint8, k uint32) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint16(b, code)
		b[2], b[3] = jt, jf
		binary.LittleEndian.PutUint32(b[4:], k)
		return b
	}
	const ldArch, jeq, ret = 0x20, 0x15, 0x06
	const x86, x64, kill, a, b = 0x40000003, 0xc000003e, 0, 1, 2
	prog := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	// The architecture's load, two checks, the kill of any other
	// architecture, then one section per architecture.
	x86First := prog(ins(ldArch, 0, 0, 4), ins(jeq, 2, 0, x86), ins(jeq, 2, 0, x64), ins(ret, 0, 0, kill), ins(ret, 0, 0, a), ins(ret, 0, 0, b))
	x64First := prog(ins(ldArch, 0, 0, 4), ins(jeq, 3, 0, x64), ins(jeq, 1, 0, x86), ins(ret, 0, 0, kill), ins(ret, 0, 0, a), ins(ret, 0, 0, b))
	sectionsSwapped := prog(ins(ldArch, 0, 0, 4), ins(jeq, 3, 0, x86), ins(jeq, 1, 0, x64), ins(ret, 0, 0, kill), ins(ret, 0, 0, b), ins(ret, 0, 0, a))
	crossed := prog(ins(ldArch, 0, 0, 4), ins(jeq, 3, 0, x86), ins(jeq, 1, 0, x64), ins(ret, 0, 0, kill), ins(ret, 0, 0, a), ins(ret, 0, 0, b))
	otherSection := prog(ins(ldArch, 0, 0, 4), ins(jeq, 2, 0, x86), ins(jeq, 2, 0, x64), ins(ret, 0, 0, kill), ins(ret, 0, 0, 3), ins(ret, 0, 0, b))
	unreached := prog(x86First, ins(ret, 0, 0, a))
	for _, tt := range []struct {
		name string
		a, b []byte
		want bool
	}{
		{"the same", x86First, x86First, true},
		{"the checks in the other order", x86First, x64First, true},
		{"the sections in the other order", x86First, sectionsSwapped, true},
		{"each architecture sent to the other's section", x86First, crossed, false},
		{"a section differs", x86First, otherSection, false},
		{"a jump out of the program", x86First, x86First[:len(x86First)-8], false},
		{"an instruction never reached", x86First, unreached, false},
	} {
		if got := sameProgram(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// capsOf returns the capability sets of process pid, as /proc/PID/status
// shows them.
func capsOf(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	caps := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.HasPrefix(k, "Cap") {
			caps[k] = strings.TrimSpace(v)
		}
	}
	if len(caps) != 5 {
		t.Fatalf("capabilities of %d: %v", pid, caps)
	}
	return caps
}
