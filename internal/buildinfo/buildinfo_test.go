package buildinfo

import (
	"runtime"
	"testing"
)

func TestGet(t *testing.T) {
	v := Get()
	if v.Version == "" || v.GoVersion != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("Get() = %+v", v)
	}
	version, commit, date = "v9.9.9", "abc", "2026-01-02T03:04:05Z"
	defer func() { version, commit, date = "", "", "" }()
	if v := Get(); v.Version != "v9.9.9" || v.Commit != "abc" || v.BuildDate != "2026-01-02T03:04:05Z" {
		t.Fatalf("with link-time values: %+v", v)
	}
}
