#!/usr/bin/env bash
# install-zsh.sh installs zsh, which the zsh completion test
# (cmd/cairn/completion_test.go) needs, with Debian's apt-get as root.
#
#   bash scripts/install-zsh.sh
#
# Idempotent: a zsh already on PATH is left alone. Exit status 0 when zsh
# is available afterwards, 2 when it is not (not root, no apt-get, or the
# install failed), so a caller can require the test only when it is:
#
#   if bash scripts/install-zsh.sh; then export CAIRN_REQUIRE_ZSH=1; fi
set -euo pipefail
exec </dev/null

if command -v zsh >/dev/null 2>&1; then
	echo "install-zsh: $(command -v zsh) already installed"
	exit 0
fi
if [[ "$(id -u)" != "0" ]]; then
	echo "install-zsh: SKIPPED: not root (euid $(id -u)); install zsh yourself (apt-get install zsh)"
	exit 2
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-zsh: SKIPPED: no apt-get on this system; install zsh with its package manager"
	exit 2
fi
echo "install-zsh: apt-get update && apt-get install -y zsh"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update && apt-get install -y zsh; } || ! command -v zsh >/dev/null 2>&1; then
	echo "install-zsh: FAILED: apt-get could not install zsh (see above)"
	exit 2
fi
echo "install-zsh: installed $(command -v zsh)"
