package feed

import (
	"testing"
	"time"
)

// TestWakeInterval checks the wake-up interval's bounds.
func TestWakeInterval(t *testing.T) {
	for _, c := range []struct {
		max     time.Duration
		streams int
		want    time.Duration
	}{
		{25 * time.Millisecond, 1, 250 * time.Microsecond},
		{25 * time.Millisecond, 40, 10 * time.Millisecond},
		{25 * time.Millisecond, 100, 25 * time.Millisecond},
		{25 * time.Millisecond, 1000, 25 * time.Millisecond},
		{0, 100, 0},
	} {
		h := &Hub{maxDelay: c.max, active: c.streams}
		if got := h.wakeInterval(); got != c.want {
			t.Errorf("max %s, %d streams: wake interval %s, want %s", c.max, c.streams, got, c.want)
		}
	}
}
