// Package bytesize parses and formats byte counts the way cairn's flags
// and messages write them: a plain number of bytes, or a number with a
// binary (KiB, MiB, GiB, TiB) or decimal (KB, MB, GB, TB) unit.
package bytesize

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrInvalid means a string is not a byte count.
var ErrInvalid = errors.New("bytesize: invalid size")

var units = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first, so "KiB" is not read as "B".
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// Parse reads a byte count: "1048576", "512MiB", "8GiB", "1.5GiB",
// "10GB". Units are case-insensitive and may follow a space. The result
// is rounded down to whole bytes and must not be negative.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%w: %q is negative", ErrInvalid, s)
		}
		return n, nil
	}
	for _, u := range units {
		if len(t) <= len(u.suffix) || !strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			continue
		}
		num := strings.TrimSpace(t[:len(t)-len(u.suffix)])
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			break
		}
		if f < 0 {
			return 0, fmt.Errorf("%w: %q is negative", ErrInvalid, s)
		}
		v := f * float64(u.mult)
		if v >= math.MaxInt64 {
			return 0, fmt.Errorf("%w: %q is too large", ErrInvalid, s)
		}
		return int64(v), nil
	}
	return 0, fmt.Errorf("%w: %q: use bytes (1048576) or a unit (512MiB, 8GiB, 10GB)", ErrInvalid, s)
}

// Format writes n with the largest binary unit that keeps it at least 1,
// with up to two decimals ("8GiB", "1.5MiB", "512B").
func Format(n int64) string {
	if n < 0 {
		return "-" + Format(-n)
	}
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult {
			s := strconv.FormatFloat(float64(n)/float64(u.mult), 'f', 2, 64)
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
			return s + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
