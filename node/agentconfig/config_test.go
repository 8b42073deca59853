package agentconfig

import (
	"strings"
	"testing"
)

func validConfig() Config {
	c := Default()
	c.DataDir = "/tmp/shoal-test"
	c.AdvertiseAddr = "192.0.2.10"
	c.Hostname = "n1"
	return c
}

func TestConfigValid(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Config)
	}{
		{"defaults with an advertise address", func(*Config) {}},
		{"IPv6 advertise address", func(c *Config) { c.AdvertiseAddr = "2001:db8::1" }},
		{"listen on all addresses", func(c *Config) { c.ListenAddr = "0.0.0.0" }},
		{"explicit listen address", func(c *Config) { c.ListenAddr = "192.0.2.10" }},
		{"high ports", func(c *Config) { c.GossipPort, c.ClusterPort = 65535, 1 }},
		{"dashboard on loopback", func(c *Config) { c.UIAddr = "127.0.0.1:8080" }},
		{"dashboard on an address (token checked at start)", func(c *Config) { c.UIAddr = "192.0.2.10:8080" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string // a substring naming the setting
	}{
		{"missing data dir", func(c *Config) { c.DataDir = "" }, "--data-dir"},
		{"missing advertise address", func(c *Config) { c.AdvertiseAddr = "" }, "--advertise-addr is required"},
		{"advertise address not an IP", func(c *Config) { c.AdvertiseAddr = "node1.example" }, "--advertise-addr"},
		{"advertise address with a port", func(c *Config) { c.AdvertiseAddr = "192.0.2.10:2377" }, "--advertise-addr"},
		{"advertise 0.0.0.0", func(c *Config) { c.AdvertiseAddr = "0.0.0.0" }, "--advertise-addr"},
		{"advertise ::", func(c *Config) { c.AdvertiseAddr = "::" }, "--advertise-addr"},
		{"bad listen address", func(c *Config) { c.ListenAddr = "eth0" }, "--listen-addr"},
		{"missing socket", func(c *Config) { c.Socket = "" }, "--socket"},
		{"equal ports", func(c *Config) { c.GossipPort, c.ClusterPort = 7000, 7000 }, "must differ"},
		{"gossip port zero", func(c *Config) { c.GossipPort = 0 }, "--gossip-port"},
		{"gossip port too big", func(c *Config) { c.GossipPort = 65536 }, "--gossip-port"},
		{"cluster port negative", func(c *Config) { c.ClusterPort = -1 }, "--cluster-port"},
		{"cluster port too big", func(c *Config) { c.ClusterPort = 70000 }, "--cluster-port"},
		{"empty hostname", func(c *Config) { c.Hostname = "" }, "hostname"},
		{"bad cluster CIDR", func(c *Config) { c.ClusterCIDR = "10.42.0.0" }, "cluster CIDR"},
		{"bad VIP CIDR", func(c *Config) { c.VIPCIDR = "10.43.0.0/33" }, "VIP CIDR"},
		{"zero write timeout", func(c *Config) { c.WriteTimeout = 0 }, "write timeout"},
		{"dashboard without a port", func(c *Config) { c.UIAddr = "127.0.0.1" }, "--ui-addr"},
		{"dashboard on a host name", func(c *Config) { c.UIAddr = "dash.example:8080" }, "--ui-addr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	c := validConfig()
	c.DataDir = ""
	c.AdvertiseAddr = ""
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "--data-dir") || !strings.Contains(err.Error(), "--advertise-addr") {
		t.Fatalf("want both problems reported, got %v", err)
	}
}

func TestConfigAddrs(t *testing.T) {
	c := validConfig()
	if got := c.BindIP(); got != "192.0.2.10" {
		t.Errorf("BindIP without listen address = %q, want the advertise address", got)
	}
	c.ListenAddr = "0.0.0.0"
	if got := c.BindIP(); got != "0.0.0.0" {
		t.Errorf("BindIP = %q, want 0.0.0.0", got)
	}
	c.AdvertiseAddr = "2001:db8::1"
	c.ClusterPort = 2400
	if got := c.ClusterAddr(); got != "[2001:db8::1]:2400" {
		t.Errorf("ClusterAddr = %q", got)
	}
}

func TestConfigMetricsAddr(t *testing.T) {
	base := Default()
	base.DataDir = t.TempDir()
	base.AdvertiseAddr = "127.0.0.1"
	for addr, ok := range map[string]bool{
		"": true, "127.0.0.1:9323": true, ":9323": true, "[::1]:9323": true,
		"localhost:9323": false, "127.0.0.1": false, "127.0.0.1:99999": false, "127.0.0.1:x": false,
	} {
		c := base
		c.MetricsAddr = addr
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("--metrics-addr %q: err=%v, want ok=%v", addr, err, ok)
		}
	}
}
