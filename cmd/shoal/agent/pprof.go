package agent

// The hidden --debug-pprof-addr flag serves net/http/pprof for profiling an
// agent in place (issue 10: find what an idle agent spends its CPU on). It is
// off by default, hidden from help and docs, and refuses anything but a
// loopback address: a profile endpoint shows goroutine stacks and can burn
// CPU on demand, so it must never be reachable from the network.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/shoal-org/shoal/node/hostguard"
)

// errPprofNotLoopback refuses a --debug-pprof-addr off loopback.
var errPprofNotLoopback = errors.New("--debug-pprof-addr must be a loopback IP:PORT (e.g. 127.0.0.1:6060)")

// checkPprofAddr accepts "" (off) or a loopback IP:PORT.
func checkPprofAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", errPprofNotLoopback, addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", errPprofNotLoopback, addr)
	}
	return nil
}

// servePprof serves the pprof handlers on addr until ctx ends and returns
// the bound address. It binds before returning, so a bad address is an
// error of the agent's start.
func servePprof(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("debug pprof listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// Only to loopback names: a web page can reach a loopback port by DNS
	// rebinding, and the profiles show every goroutine's stack.
	srv := &http.Server{Handler: hostguard.Handler(hostguard.LoopbackAddr(ln.Addr()), mux), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Warn("debug pprof listener stopped", "err", err)
		}
	}()
	return ln.Addr().String(), nil
}
