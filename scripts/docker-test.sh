#!/usr/bin/env bash
# scripts/docker-test.sh runs cairn's Docker deployment tests
# (cluster_test/docker_test.go, build tag `docker`): it builds the FROM-scratch
# image with `make image`, brings the docker-compose.yml cluster up under
# unique project names, with the certificates its cert-* services make and
# every client over TLS, checks that clients without the right certificate
# are refused, rotates a certificate, kills, partitions and restarts
# members, runs the Compose examples of docs/deploy.md, and takes
# everything down again (`down -v`: the data and certificate volumes too).
#
#   bash scripts/docker-test.sh           # or: make docker-test
#
# Without a Docker engine that answers `docker info` it prints why and exits
# 0: the tests are skipped, not failed. CAIRN_DOCKER_TIMEOUT (default 15m)
# bounds the go test run. Every project name and image tag this run creates
# starts with cairntest<pid>-, so leftovers of a run killed before its own
# cleanups (a go test timeout) are removed on exit, and nothing else is.
set -euo pipefail
exec </dev/null

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v docker >/dev/null 2>&1; then
	echo "docker-test: SKIPPED: no docker command; the Docker deployment tests did not run"
	exit 0
fi
if ! docker info >/dev/null 2>&1; then
	echo "docker-test: SKIPPED: docker does not answer (docker info failed); the Docker deployment tests did not run"
	exit 0
fi

prefix="cairntest$$-"
export CAIRN_DOCKER_PREFIX="$prefix"

# compose and cleanup run from the EXIT trap.
# shellcheck disable=SC2317
compose() {
	if docker compose version >/dev/null 2>&1; then
		docker compose "$@"
	else
		docker-compose "$@"
	fi
}

# shellcheck disable=SC2317
cleanup() {
	local p left=""
	for p in $(docker ps -a --format '{{.Label "com.docker.compose.project"}}' | grep "^$prefix" | sort -u); do
		left+=" $p"
		compose -f docker-compose.yml -p "$p" down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
	done
	for p in $(docker network ls --format '{{.Name}}' | grep "^$prefix"); do
		left+=" network:$p"
		docker network rm "$p" >/dev/null 2>&1 || true
	done
	for p in $(docker volume ls --format '{{.Name}}' | grep "^$prefix"); do
		left+=" volume:$p"
		docker volume rm "$p" >/dev/null 2>&1 || true
	done
	for p in $(docker image ls --format '{{.Repository}}:{{.Tag}}' | grep "^cairn:$prefix"); do
		left+=" image:$p"
		docker rmi "$p" >/dev/null 2>&1 || true
	done
	if [[ -n "$left" ]]; then
		echo "docker-test: removed leftovers:$left"
	fi
}
log="$(mktemp)"
trap 'cleanup; rm -f "$log"' EXIT

echo "docker-test: $(docker version --format 'engine {{.Server.Version}}' 2>/dev/null), compose: $(docker compose version --short 2>/dev/null || docker-compose version --short 2>/dev/null || echo none)"
rc=0
go test -tags docker -count=1 -timeout "${CAIRN_DOCKER_TIMEOUT:-15m}" -v ./cluster_test/ -run Docker 2>&1 | tee "$log" || rc=$?
if grep -q -- '--- SKIP' "$log"; then
	echo
	echo "docker-test: skipped checks (see the reasons above):"
	grep -E -- '--- SKIP|KNOWN' "$log" || true
fi
exit "$rc"
