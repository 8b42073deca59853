package specflags

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-org/shoal/api"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"64M", 64 << 20, false},
		{"64m", 64 << 20, false},
		{"64MB", 64 << 20, false},
		{"64MiB", 64 << 20, false},
		{"1g", 1 << 30, false},
		{"1.5G", 3 << 29, false},
		{"512k", 512 << 10, false},
		{"2t", 2 << 40, false},
		{"100", 100, false},
		{"100b", 100, false},
		{"0", 0, false},
		{"", 0, true},
		{"M", 0, true},
		{"-1m", 0, true},
		{"12Q", 0, true},
		{"1e3", 0, true},
		{"abc", 0, true},
		{"99999999999t", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.wantErr {
			if !errors.Is(err, errBadSize) {
				t.Errorf("ParseSize(%q) err = %v, want errBadSize", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"0.5", 500_000_000, false},
		{"1", 1_000_000_000, false},
		{"2.25", 2_250_000_000, false},
		{"0.1", 100_000_000, false},
		{"0.000000001", 1, false},
		{"0", 0, false},
		{"0.0000000001", 0, true},
		{"-1", 0, true},
		{"", 0, true},
		{"half", 0, true},
		{"1e2", 0, true},
		{"NaN", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseCPUs(tt.in)
		if tt.wantErr {
			if !errors.Is(err, errBadCPUs) {
				t.Errorf("ParseCPUs(%q) err = %v, want errBadCPUs", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseCPUs(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParsePublish(t *testing.T) {
	tests := []struct {
		in      string
		want    api.PortConfig
		wantErr bool
	}{
		{"8080:80", api.PortConfig{Published: 8080, Target: 80, Protocol: "tcp"}, false},
		{"53:53/udp", api.PortConfig{Published: 53, Target: 53, Protocol: "udp"}, false},
		{"53:53/UDP", api.PortConfig{Published: 53, Target: 53, Protocol: "udp"}, false},
		{"80", api.PortConfig{Target: 80, Protocol: "tcp"}, false},
		{"80/udp", api.PortConfig{Target: 80, Protocol: "udp"}, false},
		{"published=8080,target=80", api.PortConfig{Published: 8080, Target: 80, Protocol: "tcp"}, false},
		{"published=8080,target=80,protocol=udp,mode=ingress", api.PortConfig{Published: 8080, Target: 80, Protocol: "udp"}, false},
		{"8080:80/sctp", api.PortConfig{}, true},
		{"0:80", api.PortConfig{}, true},
		{"8080:70000", api.PortConfig{}, true},
		{"a:b", api.PortConfig{}, true},
		{"", api.PortConfig{}, true},
		{"published=8080", api.PortConfig{}, true},
		{"published=8080,target=80,mode=host", api.PortConfig{Published: 8080, Target: 80, Protocol: "tcp", Mode: "host"}, false},
		{"published=8080,target=80,mode=local", api.PortConfig{}, true},
		{"published=8080,foo=1", api.PortConfig{}, true},
		// Without a published port the cluster picks one (Published 0).
		{"published=,target=80", api.PortConfig{Target: 80, Protocol: "tcp"}, false},
		{"target=80,protocol=udp", api.PortConfig{Target: 80, Protocol: "udp"}, false},
		{"target=80,mode=host", api.PortConfig{Target: 80, Protocol: "tcp", Mode: "host"}, false},
		{"published= ,target=53,protocol=udp", api.PortConfig{Target: 53, Protocol: "udp"}, false},
		{"published=,target=", api.PortConfig{}, true},
		{"published=x,target=80", api.PortConfig{}, true},
		{":80", api.PortConfig{}, true},
	}
	for _, tt := range tests {
		got, err := parsePublish(tt.in)
		if tt.wantErr {
			if !errors.Is(err, errBadPublish) {
				t.Errorf("parsePublish(%q) err = %v, want errBadPublish", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parsePublish(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

// TestParsePublishWords: a refused port says what is wrong with it; a
// range is named as unsupported, not as a number out of range.
func TestParsePublishWords(t *testing.T) {
	for in, want := range map[string]string{
		"80-81":                         "target port range 80-81: ranges are not supported",
		"8080-8081:80-81":               "target port range 80-81: ranges are not supported",
		"8080-8081:80":                  "published port range 8080-8081: ranges are not supported",
		"published=8080-8081,target=80": "published port range 8080-8081",
		"target=80-81":                  "target port range 80-81",
		"8x":                            `target port "8x" is not a number`,
		"80-9x":                         `target port "80-9x" is not a number`,
		"99999":                         "target port 99999: must be 1-65535",
		"0:80":                          "published port 0: must be 1-65535",
		":80":                           "missing published port",
		"target=":                       "missing target port",
	} {
		_, err := parsePublish(in)
		if !errors.Is(err, errBadPublish) || !strings.Contains(err.Error(), want) {
			t.Errorf("parsePublish(%q) = %v, want errBadPublish saying %q", in, err, want)
		}
	}
}

func TestParseConstraint(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"node.hostname==h1", "node.hostname==h1", false},
		{"node.hostname == h1", "node.hostname==h1", false},
		{"node.labels.zone!=a", "node.labels.zone!=a", false},
		{"node.role==manager", "node.role==manager", false},
		{"node.id==abc", "node.id==abc", false},
		{"engine.labels.disk==ssd", "engine.labels.disk==ssd", false},
		{"node.hostname=h1", "", true},
		{"node.hostname==", "", true},
		{"==h1", "", true},
		{"node.colour==red", "", true},
		{"node.labels.==x", "", true},
		{"node.labels.a==b==c", "", true},
		{"node host==x", "", true},
	}
	for _, tt := range tests {
		got, err := ParseConstraint(tt.in)
		if tt.wantErr {
			if !errors.Is(err, errBadConstraint) {
				t.Errorf("ParseConstraint(%q) err = %v, want errBadConstraint", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseConstraint(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseEnv(t *testing.T) {
	t.Setenv("SHOAL_TEST_FROM_ENV", "yes")
	tests := []struct {
		in     string
		want   string
		ok     bool
		hasErr bool
	}{
		{"A=1", "A=1", true, false},
		{"A=", "A=", true, false},
		{"A=b=c", "A=b=c", true, false},
		{"SHOAL_TEST_FROM_ENV", "SHOAL_TEST_FROM_ENV=yes", true, false},
		{"SHOAL_TEST_UNSET_XYZ", "", false, false},
		{"=1", "", false, true},
		{"A B=1", "", false, true},
	}
	for _, tt := range tests {
		got, ok, err := parseEnv(tt.in)
		if (err != nil) != tt.hasErr || got != tt.want || ok != tt.ok {
			t.Errorf("parseEnv(%q) = %q, %v, %v; want %q, %v, err=%v", tt.in, got, ok, err, tt.want, tt.ok, tt.hasErr)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"10m", now.Add(-10 * time.Minute), false},
		{"2024-05-06T07:00:00Z", time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC), false},
		{"2024-05-06T09:00:00+02:00", time.Date(2024, 5, 6, 7, 0, 0, 0, time.UTC), false},
		{"2024-05-06T07:00:00.5Z", time.Date(2024, 5, 6, 7, 0, 0, 5e8, time.UTC), false},
		// Without a zone: local time, as docker's.
		{"2024-05-06", time.Date(2024, 5, 6, 0, 0, 0, 0, time.Local), false},
		{"2024-05-06T07:00:00", time.Date(2024, 5, 6, 7, 0, 0, 0, time.Local), false},
		{"2024-05-06T07:00:00.25", time.Date(2024, 5, 6, 7, 0, 0, 25e7, time.Local), false},
		{"2024-05-06T07:00", time.Date(2024, 5, 6, 7, 0, 0, 0, time.Local), false},
		{"1700000000", time.Unix(1700000000, 0), false},
		{"1700000000.5", time.Unix(1700000000, 5e8), false},
		// docker's --since 0: the start of time, not now.
		{"0", time.Unix(0, 0), false},
		{"0s", now, false},
		{"yesterday", time.Time{}, true},
		{"2024-05-06 07:00:00", time.Time{}, true},
		{"2024-13-06T07:00:00", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := ParseSince(tt.in, now)
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseTail(t *testing.T) {
	for in, want := range map[string]int{"all": -1, "": -1, "0": 0, "25": 25} {
		if got, err := ParseTail(in); err != nil || got != want {
			t.Errorf("ParseTail(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "x"} {
		if _, err := ParseTail(in); err == nil {
			t.Errorf("ParseTail(%q) succeeded", in)
		}
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"sleep 100", []string{"sleep", "100"}, false},
		{"  sh   -c 'echo hi there' ", []string{"sh", "-c", "echo hi there"}, false},
		{`echo "a b" c\ d`, []string{"echo", "a b", "c d"}, false},
		{`echo ''`, []string{"echo", ""}, false},
		{"", nil, false},
		{"echo 'open", nil, true},
	}
	for _, tt := range tests {
		got, err := SplitWords(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("SplitWords(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestParseScale(t *testing.T) {
	if n, v, err := ParseScale("web=3"); err != nil || n != "web" || v != 3 {
		t.Fatalf("ParseScale(web=3) = %q, %d, %v", n, v, err)
	}
	for _, in := range []string{"web", "=3", "web=-1", "web=x"} {
		if _, _, err := ParseScale(in); err == nil {
			t.Errorf("ParseScale(%q) succeeded", in)
		}
	}
}
