package main

import (
	"errors"
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	for in, want := range map[string]struct {
		revs uint64
		age  time.Duration
	}{
		"":           {},
		"10000":      {10000, 0},
		"72h":        {0, 72 * time.Hour},
		"500, 30m":   {500, 30 * time.Minute},
		"1h30m,1000": {1000, 90 * time.Minute},
	} {
		revs, age, err := parseRetention(in)
		if err != nil || revs != want.revs || age != want.age {
			t.Errorf("parseRetention(%q) = %d, %s, %v; want %d, %s", in, revs, age, err, want.revs, want.age)
		}
	}
	for _, in := range []string{"0", "-5", "soon", "10,-1h"} {
		if _, _, err := parseRetention(in); !errors.Is(err, errUsage) {
			t.Errorf("parseRetention(%q): %v, want a usage error", in, err)
		}
	}
}
