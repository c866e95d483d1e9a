package bytesize

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"512MiB", 512 << 20}, {"8GiB", 8 << 30}, {"8 gib", 8 << 30},
		{"1.5GiB", 3 << 29}, {"10GB", 10e9}, {"4KiB", 4096}, {"1TiB", 1 << 40}, {"7B", 7}, {" 2MB ", 2e6},
	} {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "-1", "-1MiB", "MiB", "8XB", "1e400GiB", "NaNGiB", "99999999TiB", "8 GiB B"} {
		if got, err := Parse(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %d, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		in   int64
		want string
	}{
		{0, "0B"}, {512, "512B"}, {1 << 10, "1KiB"}, {3 << 19, "1.5MiB"}, {8 << 30, "8GiB"}, {1 << 48, "256TiB"}, {-2048, "-2KiB"},
	} {
		if got := Format(c.in); got != c.want {
			t.Errorf("Format(%d) = %q, want %q", c.in, got, c.want)
		}
		if c.in >= 0 {
			if back, err := Parse(Format(c.in)); err != nil || back != c.in {
				t.Errorf("Parse(Format(%d)) = %d, %v", c.in, back, err)
			}
		}
	}
}
