// Package buildinfo says which build of cairn is running: the release,
// git commit and build date set at link time by the Makefile's build
// target (-ldflags -X), else what the Go toolchain recorded in the binary
// (runtime/debug.ReadBuildInfo: the module version, and vcs.revision,
// vcs.time and vcs.modified for a build from a git checkout).
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/cairn-db/cairn/api"
)

// Set at link time, e.g.
//
//	go build -ldflags "-X github.com/cairn-db/cairn/internal/buildinfo.version=v1.2.0
//	  -X github.com/cairn-db/cairn/internal/buildinfo.commit=abc123
//	  -X github.com/cairn-db/cairn/internal/buildinfo.date=2026-01-02T03:04:05Z"
//
// Empty: taken from the build information, when there is some.
var (
	version string
	commit  string
	date    string
)

// Get returns the running binary's build information (Node empty).
func Get() api.VersionResponse {
	v := api.VersionResponse{Version: "devel", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
			v.Version = mv
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.time":
				v.CommitTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	if version != "" {
		v.Version = version
	}
	if commit != "" {
		v.Commit = commit
	}
	v.BuildDate = date
	return v
}
