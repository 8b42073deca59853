package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// errUnknownAuthority marks a test case whose server error must be an
// x509.UnknownAuthorityError.
var errUnknownAuthority = errors.New("unknown authority")

// errWitness is what the anonymous client's server check returns in tests.
var errWitness = errors.New("not an acceptable witness")

type handshakeResult struct {
	state     tls.ConnectionState // server side
	serverErr error
	clientErr error
}

// handshake runs one TLS connection over loopback (kernel buffers avoid the
// lock-step deadlocks of net.Pipe when a TLS 1.3 server rejects the client
// after the client's handshake returned) and exchanges one message, so that
// a late rejection of the client certificate surfaces on the client.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	deadline := time.Now().Add(10 * time.Second)

	type serverOut struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan serverOut, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- serverOut{err: err}
			return
		}
		conn := tls.Server(raw, serverCfg)
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		if err := conn.Handshake(); err != nil {
			done <- serverOut{err: err}
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil {
			done <- serverOut{state: conn.ConnectionState(), err: err}
			return
		}
		_, err = conn.Write([]byte("pong"))
		done <- serverOut{state: conn.ConnectionState(), err: err}
	}()

	clientErr := func() error {
		raw, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		conn := tls.Client(raw, clientCfg)
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		if err := conn.Handshake(); err != nil {
			return err
		}
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != "pong" {
			return errors.New("bad reply " + string(buf))
		}
		return nil
	}()
	out := <-done
	return handshakeResult{state: out.state, serverErr: out.err, clientErr: clientErr}
}

func TestTLS(t *testing.T) {
	ca := newTestCA(t, "ours")
	pool := ca.Pool()
	serverCert, _ := nodeTLS(t, ca, "node-a")
	clientCert, _ := nodeTLS(t, ca, "node-b")
	revokedCert, revokedSerial := nodeTLS(t, ca, "node-gone")

	other := newTestCA(t, "theirs")
	foreignCert, _ := nodeTLS(t, other, "node-a")

	// An impostor that copied our (public) CA certificate into its chain but
	// signs its leaf with its own CA.
	impostor := foreignCert
	impostor.Certificate = [][]byte{foreignCert.Certificate[0], ca.Cert().Raw}
	// A server that sends only its leaf, not the CA.
	leafOnly := serverCert
	leafOnly.Certificate = serverCert.Certificate[:1]

	isRevoked := func(serial string) bool { return serial == revokedSerial }
	server := ServerTLS(serverCert, pool, isRevoked)

	tls12 := ClientTLS(clientCert, pool)
	tls12.MaxVersion = tls.VersionTLS12

	tests := []struct {
		name       string
		server     *tls.Config
		client     *tls.Config
		wantOK     bool
		wantPeer   string // "" means no node identity
		wantServer error  // errors.Is on the server error, if non-nil
		wantClient error  // errors.Is on the client error, if non-nil
		clientMsg  string // substring of the client error
	}{
		{name: "mutual TLS", server: server, client: ClientTLS(clientCert, pool), wantOK: true, wantPeer: "node-b"},
		{name: "revoked client refused", server: server, client: ClientTLS(revokedCert, pool), wantServer: ErrRevoked},
		{name: "client from another CA refused", server: server, client: ClientTLS(foreignCert, pool), wantServer: errUnknownAuthority},
		{name: "server from another CA refused", server: ServerTLS(foreignCert, other.Pool(), nil), client: ClientTLS(clientCert, pool)},
		{name: "TLS 1.2 refused", server: server, client: tls12},
		// Revocation holds on the dialling side too: a removed node that
		// still listens with its old certificate is no server for us.
		{name: "checked client to unrevoked server", server: server,
			client: NewSource(clientCert, pool).CheckedClientTLS(isRevoked), wantOK: true, wantPeer: "node-b"},
		{name: "revoked server refused by the client", server: ServerTLS(revokedCert, pool, nil),
			client: NewSource(clientCert, pool).CheckedClientTLS(isRevoked), wantClient: ErrRevoked, clientMsg: "server node node-gone"},
		{name: "join with right fingerprint", server: server, client: JoinTLS(ca.Fingerprint()), wantOK: true},
		{name: "join with upper-case fingerprint", server: server, client: JoinTLS(strings.ToUpper(ca.Fingerprint())), wantOK: true},
		{name: "join with wrong fingerprint", server: server, client: JoinTLS(other.Fingerprint()),
			wantClient: ErrCAMismatch, clientMsg: "the token expects " + other.Fingerprint()},
		{name: "join to another cluster", server: ServerTLS(foreignCert, other.Pool(), nil), client: JoinTLS(ca.Fingerprint()),
			wantClient: ErrCAMismatch, clientMsg: "server CA does not match the join token"},
		{name: "join to impostor with copied CA", server: ServerTLS(impostor, pool, nil), client: JoinTLS(ca.Fingerprint()),
			wantClient: ErrCAMismatch, clientMsg: "does not verify against the pinned CA"},
		{name: "join to server without CA in chain", server: ServerTLS(leafOnly, pool, nil), client: JoinTLS(ca.Fingerprint()),
			clientMsg:  "sent no CA certificate",
			wantClient: ErrCAMismatch},
		// A node whose certificate may be revoked asks without it: the
		// server sees no identity, the client still verifies the server.
		{name: "anonymous client", server: server, client: AnonymousClientTLS(pool, nil), wantOK: true},
		{name: "anonymous client to another cluster", server: ServerTLS(foreignCert, other.Pool(), nil),
			client: AnonymousClientTLS(pool, nil), clientMsg: "certificate"},
		{name: "anonymous client refuses the server by its check", server: server,
			client: AnonymousClientTLS(pool, func(leaf *x509.Certificate) error {
				if leaf.Subject.CommonName == "node-a" {
					return errWitness
				}
				return nil
			}), wantClient: errWitness},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := handshake(t, tt.server, tt.client)
			if tt.wantOK {
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("server err %v, client err %v; want success", res.serverErr, res.clientErr)
				}
				id, ok := PeerNodeID(res.state)
				if id != tt.wantPeer || ok != (tt.wantPeer != "") {
					t.Fatalf("PeerNodeID = %q, %v; want %q", id, ok, tt.wantPeer)
				}
				if res.state.Version != tls.VersionTLS13 {
					t.Fatalf("version %x, want TLS 1.3", res.state.Version)
				}
				return
			}
			if res.clientErr == nil {
				t.Fatalf("client succeeded (server err %v); want refusal", res.serverErr)
			}
			if res.serverErr == nil {
				t.Fatalf("server succeeded (client err %v); want refusal", res.clientErr)
			}
			var unknown x509.UnknownAuthorityError
			if tt.wantServer == errUnknownAuthority {
				if !errors.As(res.serverErr, &unknown) {
					t.Fatalf("server err %v, want x509.UnknownAuthorityError", res.serverErr)
				}
			} else if tt.wantServer != nil && !errors.Is(res.serverErr, tt.wantServer) {
				t.Fatalf("server err %v, want %v", res.serverErr, tt.wantServer)
			}
			if tt.wantClient != nil && !errors.Is(res.clientErr, tt.wantClient) {
				t.Fatalf("client err %v, want %v", res.clientErr, tt.wantClient)
			}
			if !strings.Contains(res.clientErr.Error(), tt.clientMsg) {
				t.Fatalf("client err %q, want it to contain %q", res.clientErr, tt.clientMsg)
			}
			t.Logf("refused: client: %v; server: %v", res.clientErr, res.serverErr)
		})
	}
}

func TestPeerNodeIDWithoutCert(t *testing.T) {
	if id, ok := PeerNodeID(tls.ConnectionState{}); ok || id != "" {
		t.Fatalf("PeerNodeID(empty) = %q, %v", id, ok)
	}
	// A verified chain whose leaf is not a node certificate has no node ID.
	ca := newTestCA(t, "c")
	st := tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{ca.Cert()}}}
	if id, ok := PeerNodeID(st); ok {
		t.Fatalf("PeerNodeID(CA leaf) = %q, true", id)
	}
}
