package pki

import (
	"errors"
	"strings"
	"testing"
)

var (
	testFP     = strings.Repeat("a", FingerprintLen)
	testSecret = strings.Repeat("b", SecretLen)
)

func TestParseToken(t *testing.T) {
	good := "SHOAL-1-" + testFP + "-" + testSecret
	tests := []struct {
		name    string
		in      string
		want    Token
		wantErr string // substring; "" means success
	}{
		{name: "good", in: good, want: Token{Version: 1, CAFingerprint: testFP, Secret: testSecret}},
		{name: "upper case and spaces", in: "  SHOAL-1-" + strings.ToUpper(testFP) + "-" + strings.ToUpper(testSecret) + "\n",
			want: Token{Version: 1, CAFingerprint: testFP, Secret: testSecret}},
		{name: "empty", in: "", wantErr: "4 dash-separated parts"},
		{name: "wrong prefix", in: "SWARM-1-" + testFP + "-" + testSecret, wantErr: `start with "SHOAL-"`},
		{name: "lower prefix", in: "shoal-1-" + testFP + "-" + testSecret, wantErr: `start with "SHOAL-"`},
		{name: "wrong version", in: "SHOAL-2-" + testFP + "-" + testSecret, wantErr: "unsupported version 2"},
		{name: "version not a number", in: "SHOAL-x-" + testFP + "-" + testSecret, wantErr: "not a number"},
		{name: "version with plus", in: "SHOAL-+1-" + testFP + "-" + testSecret, wantErr: "not a number"},
		{name: "version leading zero", in: "SHOAL-01-" + testFP + "-" + testSecret, wantErr: "not a number"},
		{name: "bad base32 fingerprint", in: "SHOAL-1-" + strings.Repeat("1", FingerprintLen) + "-" + testSecret, wantErr: "fingerprint: character 1 is not base32"},
		{name: "bad base32 secret", in: "SHOAL-1-" + testFP + "-" + strings.Repeat("b", SecretLen-1) + "8", wantErr: "secret: character 32 is not base32"},
		{name: "padding in secret", in: "SHOAL-1-" + testFP + "-" + strings.Repeat("b", SecretLen-1) + "=", wantErr: "not base32"},
		{name: "short fingerprint", in: "SHOAL-1-" + testFP[1:] + "-" + testSecret, wantErr: "fingerprint: 51 characters, want 52"},
		{name: "short secret", in: "SHOAL-1-" + testFP + "-" + testSecret[:26], wantErr: "secret: 26 characters, want 32"},
		{name: "long secret", in: "SHOAL-1-" + testFP + "-" + testSecret + "b", wantErr: "secret: 33 characters"},
		{name: "extra dashes", in: "SHOAL-1-" + testFP + "-" + testSecret + "-x", wantErr: "got 5"},
		{name: "double dash", in: "SHOAL--1-" + testFP + "-" + testSecret, wantErr: "got 5"},
		{name: "missing secret", in: "SHOAL-1-" + testFP, wantErr: "got 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseToken(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseToken: %v", err)
				}
				if got != tt.want {
					t.Fatalf("ParseToken = %+v, want %+v", got, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrMalformedToken) {
				t.Fatalf("ParseToken err = %v, want ErrMalformedToken", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseToken err = %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error leaks the secret: %q", err)
			}
		})
	}
}

func TestTokenRoundTrip(t *testing.T) {
	ca := newTestCA(t, "c1")
	secret := NewSecret()
	if len(secret) != SecretLen || strings.ToLower(secret) != secret {
		t.Fatalf("NewSecret = %q, want %d lower-case characters", secret, SecretLen)
	}
	if NewSecret() == secret {
		t.Fatal("NewSecret returned the same secret twice")
	}
	tok := FormatToken(ca.Fingerprint(), secret)
	if !strings.HasPrefix(tok, "SHOAL-1-") {
		t.Fatalf("token %q lacks prefix", tok)
	}
	got, err := ParseToken(tok)
	if err != nil {
		t.Fatalf("ParseToken(%q): %v", tok, err)
	}
	want := Token{Version: TokenVersion, CAFingerprint: ca.Fingerprint(), Secret: secret}
	if got != want {
		t.Fatalf("round trip = %+v, want %+v", got, want)
	}
	if got.String() != tok {
		t.Fatalf("String = %q, want %q", got.String(), tok)
	}
	hash := HashSecret(secret)
	if !VerifySecret(got.Secret, hash) {
		t.Fatal("VerifySecret refused the right secret")
	}
	if !VerifySecret(got.Secret, strings.ToUpper(hash)) {
		t.Fatal("VerifySecret refused an upper-case hash")
	}
	if VerifySecret(NewSecret(), hash) {
		t.Fatal("VerifySecret accepted a wrong secret")
	}
	if VerifySecret(secret, "") {
		t.Fatal("VerifySecret accepted an empty hash")
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("SHOAL-1-" + testFP + "-" + testSecret)
	f.Add("SHOAL-1--")
	f.Add("SHOAL-99999999999999999999-a-b")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedToken) {
				t.Fatalf("error %v does not wrap ErrMalformedToken", err)
			}
			return
		}
		again, err := ParseToken(tok.String())
		if err != nil || again != tok {
			t.Fatalf("reparse of %q = %+v, %v; want %+v", tok.String(), again, err, tok)
		}
		if len(tok.CAFingerprint) != FingerprintLen || len(tok.Secret) != SecretLen {
			t.Fatalf("accepted wrong lengths: %+v", tok)
		}
	})
}
