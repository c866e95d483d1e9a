package httpapi

import (
	"net/http"
	"net/http/pprof"
)

// pprofRoutes serves Go's profiler under /debug/pprof/ (a member's --pprof
// option, Options.Pprof). Profiles show the process's internals, and a
// heap profile may hold fragments of values, so they need an admin when
// access control is on.
func pprofRoutes() []route {
	serve := func(fn http.HandlerFunc) func(http.ResponseWriter, *http.Request) error {
		return func(w http.ResponseWriter, r *http.Request) error {
			fn(w, r)
			return nil
		}
	}
	return []route{
		{"GET /debug/pprof/", ruleAdmin, serve(pprof.Index)},
		{"GET /debug/pprof/cmdline", ruleAdmin, serve(pprof.Cmdline)},
		{"GET /debug/pprof/profile", ruleAdmin, serve(pprof.Profile)},
		{"GET /debug/pprof/symbol", ruleAdmin, serve(pprof.Symbol)},
		{"GET /debug/pprof/trace", ruleAdmin, serve(pprof.Trace)},
	}
}
