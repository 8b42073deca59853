package wireguard

import (
	"bufio"
	"encoding/hex"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
)

func TestParseDeviceState(t *testing.T) {
	k1, k2, k3 := [32]byte{1}, [32]byte{2}, [32]byte{3}
	get := "private_key=" + hex.EncodeToString(k1[:]) + "\nlisten_port=51820\n" +
		"public_key=" + hex.EncodeToString(k2[:]) + "\nendpoint=10.0.0.2:51820\nlast_handshake_time_sec=5\nallowed_ip=100.64.0.2/32\n" +
		"public_key=" + hex.EncodeToString(k3[:]) + "\nprotocol_version=1\n"
	st, err := parseDeviceState(get)
	if err != nil {
		t.Fatal(err)
	}
	want := deviceState{PrivateKey: k1, ListenPort: 51820, Peers: [][32]byte{k2, k3}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("got %+v, want %+v", st, want)
	}
	// A device with nothing configured: no key, no peers.
	if st, err := parseDeviceState("listen_port=0\n"); err != nil || st.PrivateKey != ([32]byte{}) || st.Peers != nil {
		t.Fatalf("empty device: %+v %v", st, err)
	}
	for _, bad := range []string{
		"private_key=zz\n",
		"public_key=" + strings.Repeat("0", 63) + "\n",
		"listen_port=70000\n",
		"listen_port=x\n",
	} {
		if _, err := parseDeviceState(bad); !errors.Is(err, ErrDevice) {
			t.Errorf("%q: %v, want ErrDevice", bad, err)
		}
	}
}

// TestDecide: a running device is adopted only when it is a TUN device
// under the wanted name holding this node's key and port; anything else
// is replaced, with a reason.
func TestDecide(t *testing.T) {
	self, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	// wireguard-go reports a private key clamped.
	self.Private[0], self.Private[31] = 0xff, 0xff
	same := deviceState{PrivateKey: clampKey(self.Private), ListenPort: 51820, Peers: [][32]byte{other.Public}}
	for _, tc := range []struct {
		name     string
		running  deviceState
		parseErr error
		link     string
		adopt    bool
		why      string
	}{
		{"same key, port and name", same, nil, "tuntap", true, "same"},
		{"same, no peers yet", deviceState{PrivateKey: clampKey(self.Private), ListenPort: 51820}, nil, "tuntap", true, "same"},
		{"the key unclamped (never reported so)", deviceState{PrivateKey: self.Private, ListenPort: 51820}, nil, "tuntap", false, "another private key"},
		{"another key", deviceState{PrivateKey: other.Private, ListenPort: 51820}, nil, "tuntap", false, "another private key"},
		{"no key: start cut short", deviceState{ListenPort: 51820}, nil, "tuntap", false, "no private key"},
		{"another port", deviceState{PrivateKey: clampKey(self.Private), ListenPort: 51821}, nil, "tuntap", false, "port 51821"},
		{"TUN device gone", same, nil, "", false, "missing"},
		{"name taken by another link type", same, nil, "bridge", false, "bridge"},
		{"unreadable state", same, ErrDevice, "tuntap", false, "unreadable"},
	} {
		adopt, why := Decide(tc.running, tc.parseErr, tc.link, self, 51820)
		if adopt != tc.adopt || !strings.Contains(why, tc.why) {
			t.Errorf("%s: adopt %v (%s), want %v (%s)", tc.name, adopt, why, tc.adopt, tc.why)
		}
	}
}

// TestUAPIErrno: a device's non-zero errno is an error, errno=0 ends the
// answer, and what precedes it is the answer.
func TestUAPIErrno(t *testing.T) {
	dir := t.TempDir()
	sock := dir + "/d.sock"
	srv := fakeUAPI(t, sock, "listen_port=1\nerrno=0\n\n", "errno=-22\n\n")
	defer srv()
	got, err := UAPIGet(sock)
	if err != nil || got != "listen_port=1\n" {
		t.Fatalf("get: %q %v", got, err)
	}
	if err := uapiSet(sock, "x=1\n"); !errors.Is(err, ErrDevice) || !strings.Contains(err.Error(), "-22") {
		t.Fatalf("set answered errno -22: %v", err)
	}
}

// fakeUAPI answers the connections on sock, one after the other, with
// replies in order, each after reading a request up to its blank line.
func fakeUAPI(t *testing.T, sock string, replies ...string) (stop func()) {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, r := range replies {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\n" {
					break
				}
			}
			_, _ = c.Write([]byte(r))
			c.Close()
		}
	}()
	return func() { ln.Close() }
}
