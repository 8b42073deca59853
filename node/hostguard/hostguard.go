// Package hostguard refuses HTTP requests that reach a loopback listener
// under a host name that is not loopback's. A server bound to 127.0.0.1 is
// out of the network's reach but not out of a browser's: a web page the
// operator opens can point a name of its own at 127.0.0.1 (DNS rebinding)
// and read the answers as same-origin. Such a request still carries the
// page's name in its Host header, so a loopback listener that answers only
// to "localhost" and loopback addresses is safe from it. The dashboard
// (node/ui), the metrics endpoint (node/collector) and pprof
// (--debug-pprof-addr) share this rule.
package hostguard

import (
	"net"
	"net/http"
	"strings"
)

// LoopbackHost reports whether a Host header (host or host:port) names
// the loopback interface: "localhost" or a loopback IP address.
func LoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoopbackAddr reports whether a listener's address is a loopback IP
// (not the wildcard address, which the network reaches anyway).
func LoopbackAddr(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// Handler wraps next: when loopback is true (the server listens on a
// loopback address only), a request whose Host is not a loopback name is
// answered 403 without reaching next.
func Handler(loopback bool, next http.Handler) http.Handler {
	if !loopback {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !LoopbackHost(r.Host) {
			http.Error(w, "a server on a loopback address answers only to a loopback host name", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}
