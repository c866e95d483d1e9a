#!/usr/bin/env bash
# install-chromium.sh installs Debian's chromium, the headless browser the
# status page's browser test (cluster_test/ui_test.go) drives.
#
#   bash scripts/install-chromium.sh
#
# It is idempotent: a chromium already on PATH (or named by $CAIRN_CHROMIUM)
# is left alone. Otherwise it runs `apt-get update && apt-get install -y
# chromium`, which needs root and apt-get; without either it prints why it
# skips. Exit status: 0 when a chromium binary is available afterwards, 2
# when it is not (skipped or the install failed), so a caller can require
# the browser test only when the install succeeded:
#
#   if bash scripts/install-chromium.sh; then export CAIRN_REQUIRE_CHROMIUM=1; fi
set -euo pipefail
exec </dev/null

find_chromium() {
	if [[ -n "${CAIRN_CHROMIUM:-}" ]] && command -v "$CAIRN_CHROMIUM" >/dev/null 2>&1; then
		command -v "$CAIRN_CHROMIUM"
		return 0
	fi
	local name
	for name in chromium chromium-browser google-chrome; do
		if command -v "$name" >/dev/null 2>&1; then
			command -v "$name"
			return 0
		fi
	done
	return 1
}

if bin="$(find_chromium)"; then
	echo "install-chromium: $bin already installed: $("$bin" --version 2>/dev/null || echo 'version unknown')"
	exit 0
fi
if [[ "$(id -u)" != "0" ]]; then
	echo "install-chromium: SKIPPED: not root (euid $(id -u)); install Debian's chromium yourself (apt-get install chromium) or set CAIRN_CHROMIUM"
	exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-chromium: SKIPPED: no apt-get on this system; install chromium with its package manager or set CAIRN_CHROMIUM"
	exit 2
fi

echo "install-chromium: apt-get update && apt-get install -y chromium"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update && apt-get install -y chromium; }; then
	echo "install-chromium: FAILED: apt-get could not install chromium (see above)"
	exit 2
fi
if ! bin="$(find_chromium)"; then
	echo "install-chromium: FAILED: apt-get installed chromium but no chromium binary is on PATH"
	exit 2
fi
echo "install-chromium: installed $bin: $("$bin" --version 2>/dev/null || echo 'version unknown')"
