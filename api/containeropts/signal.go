package containeropts

import (
	"fmt"
	"strconv"
	"strings"
)

// signals are Linux's signal numbers by name (the same on x86_64 and
// arm64, the architectures Shoal runs on).
var signals = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
	"FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
	"TERM": 15, "STKFLT": 16, "CHLD": 17, "CLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20,
	"TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27,
	"WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}

// Real-time signals as glibc numbers them (32 and 33 are its own).
const (
	sigRTMin = 34
	sigRTMax = 64
)

// notForwarded are the signals shoal-init, every container's PID 1
// (runtime/init), does not pass on to the command: the synchronous faults,
// the stops, and SIGCHLD, which it takes for itself. A stop signal among
// them would never reach the command, and the stop would cost the whole
// grace period. SIGKILL is not forwarded either, but it ends the init, so
// the container, at once, as Docker's --stop-signal KILL does.
var notForwarded = map[int]bool{4: true, 5: true, 6: true, 7: true, 8: true, 11: true, 17: true, 19: true, 21: true, 22: true, 31: true}

// ParseSignal returns the number and the canonical name (SIGQUIT,
// SIGRTMIN+3) of a stop signal given as Docker takes it: a name with or
// without SIG, in any case, or a number. A signal shoal-init does not
// forward is refused.
func ParseSignal(s string) (int, string, error) {
	in := strings.ToUpper(strings.TrimSpace(s))
	n, err := strconv.Atoi(in)
	if err != nil {
		name := strings.TrimPrefix(in, "SIG")
		var ok bool
		n, ok = signals[name]
		switch {
		case ok:
		case name == "RTMIN":
			n = sigRTMin
		case name == "RTMAX":
			n = sigRTMax
		case strings.HasPrefix(name, "RTMIN+"):
			k, err := strconv.Atoi(name[len("RTMIN+"):])
			if err != nil || k < 0 {
				return 0, "", fmt.Errorf("unknown signal %q", s)
			}
			n = sigRTMin + k
		case strings.HasPrefix(name, "RTMAX-"):
			k, err := strconv.Atoi(name[len("RTMAX-"):])
			if err != nil || k < 0 {
				return 0, "", fmt.Errorf("unknown signal %q", s)
			}
			n = sigRTMax - k
		default:
			return 0, "", fmt.Errorf("unknown signal %q (want a name such as SIGQUIT or a number)", s)
		}
	}
	if n < 1 || n > sigRTMax || n == 32 || n == 33 {
		return 0, "", fmt.Errorf("signal %q: not a signal a container can be sent (1-31, 34-64)", s)
	}
	if notForwarded[n] {
		return 0, "", fmt.Errorf("signal %q: the container's init (PID 1) does not pass it on to the command", s)
	}
	return n, signalName(n), nil
}

// signalName is the canonical name of signal n.
func signalName(n int) string {
	best := ""
	for name, v := range signals {
		// Where a number has two names, the kernel's wins (canonical).
		if v == n && (best == "" || canonical[name]) {
			best = name
		}
	}
	switch {
	case best != "":
		return "SIG" + best
	case n == sigRTMax:
		return "SIGRTMAX"
	case n >= sigRTMin && n-sigRTMin <= sigRTMax-n:
		if n == sigRTMin {
			return "SIGRTMIN"
		}
		return fmt.Sprintf("SIGRTMIN+%d", n-sigRTMin)
	default:
		return fmt.Sprintf("SIGRTMAX-%d", sigRTMax-n)
	}
}

// canonical names win over their aliases (IOT, CLD, POLL).
var canonical = map[string]bool{"ABRT": true, "CHLD": true, "IO": true}
