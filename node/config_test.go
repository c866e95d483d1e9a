package node

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := testConfig(t, "n1").Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	def := DefaultConfig()
	def.ID, def.DataDir = "n1", t.TempDir()
	def.RaftAddr, def.HTTPAddr = "127.0.0.1:7001", "127.0.0.1:8001"
	if err := def.Validate(); err != nil {
		t.Fatalf("DefaultConfig with an id, a data dir and addresses: %v", err)
	}
	for _, c := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no id", func(c *Config) { c.ID = "" }, "id is required"},
		{"bootstrap and join", func(c *Config) { c.Join = []string{"http://127.0.0.1:1"} }, "exclusive"},
		{"commit timeout 0", func(c *Config) { c.CommitTimeout = 0 }, "raft timeouts must be positive"},
		{"commit timeout above heartbeat", func(c *Config) { c.CommitTimeout = c.HeartbeatTimeout + time.Millisecond }, "commit timeout"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = c.HeartbeatTimeout + time.Millisecond }, "leader lease timeout"},
		{"max append entries 0", func(c *Config) { c.MaxAppendEntries = 0 }, "max append entries"},
		{"max in-flight writes 0", func(c *Config) { c.MaxInflightWrites = 0 }, "max in-flight writes"},
		{"negative scrub interval", func(c *Config) { c.ScrubInterval = -time.Second }, "scrub interval"},
	} {
		cfg := testConfig(t, "n1")
		cfg.Bootstrap = true
		c.change(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalidConfig saying %q", c.name, err, c.want)
		}
	}
	// The boundary is allowed: a commit timeout equal to the heartbeat.
	cfg := testConfig(t, "n1")
	cfg.CommitTimeout = cfg.HeartbeatTimeout
	if err := cfg.Validate(); err != nil {
		t.Errorf("commit timeout equal to the heartbeat timeout: %v", err)
	}
}

// TestAuthTokenTTL: the default is httpapi's, and the TTL is bounded.
func TestAuthTokenTTL(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.RaftAddr, cfg.HTTPAddr = "n1", t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	if cfg.AuthTokenTTL != 10*time.Minute {
		t.Fatalf("default %v", cfg.AuthTokenTTL)
	}
	for ttl, ok := range map[time.Duration]bool{time.Second: true, time.Hour: true, 0: false, time.Millisecond: false, 25 * time.Hour: false} {
		cfg.AuthTokenTTL = ttl
		if err := cfg.Validate(); (err == nil) != ok {
			t.Errorf("ttl %v: %v", ttl, err)
		}
	}
}

// TestBcryptCost: the default is auth's, and the cost is bounded as
// bcrypt bounds it.
func TestBcryptCost(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.RaftAddr, cfg.HTTPAddr = "n1", t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	if cfg.BcryptCost != 10 {
		t.Fatalf("default %d", cfg.BcryptCost)
	}
	for cost, ok := range map[int]bool{4: true, 12: true, 31: true, 0: false, 3: false, 32: false} {
		cfg.BcryptCost = cost
		if err := cfg.Validate(); (err == nil) != ok {
			t.Errorf("cost %d: %v", cost, err)
		}
	}
}

// TestScrubInterval: an hour by default; 0 (no periodic scrub) is valid.
func TestScrubInterval(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.ScrubInterval != time.Hour {
		t.Fatalf("default %v", cfg.ScrubInterval)
	}
	cfg = testConfig(t, "n1")
	cfg.ScrubInterval = 0
	if err := cfg.Validate(); err != nil {
		t.Fatalf("scrub interval 0: %v", err)
	}
}
