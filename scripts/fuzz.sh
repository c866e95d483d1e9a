#!/usr/bin/env bash
# fuzz.sh runs every fuzz target of the given packages for a short time.
#
#   scripts/fuzz.sh [FUZZTIME] [PACKAGE...]     default: 15s ./fsm
#
# Targets are discovered with `go test -list`, so new Fuzz* functions are
# picked up without editing this file; a package with none is reported and
# skipped. Each target runs on its own (go test -fuzz takes one target at a
# time). A failing input is written to the package's testdata/fuzz/ by
# go test; commit it with the fix so it stays a regression test.
set -euo pipefail

fuzztime="${1:-15s}"
shift || true
pkgs=("$@")
if [[ ${#pkgs[@]} -eq 0 ]]; then
	pkgs=(./fsm)
fi

ran=0
for pkg in "${pkgs[@]}"; do
	if [[ ! -d "$pkg" ]]; then
		echo "fuzz: $pkg: no such package directory, skipped"
		continue
	fi
	# A package that does not build fails here, loudly.
	listing="$(go test -list 'Fuzz.*' "$pkg")"
	targets="$(grep -E '^Fuzz' <<<"$listing" || true)"
	if [[ -z "$targets" ]]; then
		echo "fuzz: $pkg: no fuzz targets"
		continue
	fi
	for name in $targets; do
		echo "fuzz: $pkg $name for $fuzztime"
		go test -run XXX -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg"
		ran=$((ran + 1))
	done
done
echo "fuzz: $ran target(s) fuzzed"
