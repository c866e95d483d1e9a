#!/usr/bin/env bash
# scripts/vagrant-check.sh checks the VM/systemd deployment (Vagrantfile,
# deploy/) as far as a machine that cannot boot the VMs allows:
#
#   1. deploy/provision.sh: bash -n, and shellcheck when installed
#   2. deploy/cairn.service: systemd-analyze verify, and its offline security
#      score (skipped without systemd-analyze)
#   3. Vagrantfile: vagrant validate for 3 and 5 members and a refused
#      CAIRN_NODES (vagrant is installed from apt when CI=true and missing;
#      skipped otherwise)
#   4. provision.sh against scratch roots (--root and DESTDIR): the binary,
#      unit, config (id, addresses, bootstrap/join; equal to
#      deploy/config/n*.yaml for the Vagrant addresses), modes, a no-op
#      second run, and refused bad arguments
#   5. the configs it writes really run: three members started on loopback
#      from three scratch roots' cairn.yaml files form a cluster that takes a
#      write, and one member started from deploy/config/cairn.yaml.example
#      with every tuning key set becomes ready; all are stopped again
#
# It never touches the real system outside a temporary directory (and the
# apt install of vagrant when CI=true). Exit status 0 if every check that
# ran passed; skipped checks say why.
set -euo pipefail
exec </dev/null

cd "$(dirname "${BASH_SOURCE[0]}")/.."

work="$(mktemp -d "${TMPDIR:-/tmp}/cairn-vagrant-check.XXXXXX")"
pids=()
# cleanup runs from the EXIT trap: it stops only the members this script
# started, by pid.
# shellcheck disable=SC2317
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

failures=0
step() { printf '\n== %s\n' "$*"; }
ok() { echo "ok: $*"; }
skip() { echo "SKIPPED: $*"; }
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# ---------------------------------------------------------------------------
step "1. deploy/provision.sh syntax"
if bash -n deploy/provision.sh; then
	ok "bash -n deploy/provision.sh"
else
	fail "bash -n deploy/provision.sh"
fi
if command -v shellcheck >/dev/null; then
	if shellcheck deploy/provision.sh scripts/vagrant-check.sh scripts/docker-test.sh; then
		ok "shellcheck"
	else
		fail "shellcheck"
	fi
else
	skip "shellcheck is not installed"
fi

# The binary every later step installs, built into the scratch directory.
CGO_ENABLED=0 go build -trimpath -o "$work/cairn" ./cmd/cairn
cairn="$work/cairn"

# ---------------------------------------------------------------------------
step "2. deploy/cairn.service"
if command -v systemd-analyze >/dev/null; then
	# verify checks that ExecStart's binary exists: point it at the one
	# just built, in a copy.
	sed "s#^ExecStart=/usr/local/bin/cairn #ExecStart=$cairn #" deploy/cairn.service >"$work/cairn.service"
	grep -q "^ExecStart=$cairn " "$work/cairn.service" || fail "cairn.service: no ExecStart=/usr/local/bin/cairn line"
	if out="$(systemd-analyze verify "$work/cairn.service" 2>&1)" && [[ -z "$out" ]]; then
		ok "systemd-analyze verify"
	else
		fail "systemd-analyze verify: $out"
	fi
	# Offline exposure score (0 best, 10 worst); 2.0 guards the sandboxing.
	if systemd-analyze security --offline=true --threshold=20 "$work/cairn.service" >"$work/security.txt" 2>&1; then
		ok "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$work/security.txt")"
	else
		cat "$work/security.txt"
		fail "systemd-analyze security: exposure above 2.0"
	fi
else
	skip "systemd-analyze is not installed"
fi
for key in "User=cairn" "Restart=on-failure" "ProtectSystem=strict" "ReadWritePaths=/var/lib/cairn" \
	"NoNewPrivileges=yes" "PrivateTmp=yes" "ExecStart=/usr/local/bin/cairn node run --config /etc/cairn/cairn.yaml"; do
	grep -qx "$key" deploy/cairn.service || fail "cairn.service lacks $key"
done
if [[ "$(grep -c '^ReadWritePaths=' deploy/cairn.service)" != 1 ]]; then
	fail "cairn.service: want exactly one ReadWritePaths (the data directory)"
fi

# ---------------------------------------------------------------------------
step "3. Vagrantfile"
if ! command -v vagrant >/dev/null && [[ "${CI:-}" == "true" ]]; then
	sudo=""
	if [[ $EUID -ne 0 ]]; then
		sudo="sudo -n"
	fi
	if command -v apt-get >/dev/null; then
		echo "CI=true and vagrant is missing: installing it from apt"
		$sudo apt-get update -qq >/dev/null || true
		if [[ -n "$(apt-cache policy vagrant 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]]; then
			DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends vagrant >/dev/null ||
				echo "apt-get install vagrant failed"
		else
			echo "apt has no vagrant package here"
		fi
	fi
fi
if command -v vagrant >/dev/null; then
	# Keep vagrant's state out of the repository and the home directory,
	# and keep it off the network.
	export VAGRANT_DOTFILE_PATH="$work/vagrant-dot" VAGRANT_HOME="$work/vagrant-home"
	export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_PLUGINS=1
	# With the binary (every provisioner checked) and without it (before
	# `make build`).
	for n in 3 5; do
		for bin in "$cairn" "$work/no-such-binary"; do
			if out="$(CAIRN_NODES=$n CAIRN_BINARY="$bin" vagrant validate --ignore-provider 2>&1)"; then
				ok "vagrant validate with CAIRN_NODES=$n, CAIRN_BINARY=$bin ($(vagrant --version))"
			else
				fail "vagrant validate with CAIRN_NODES=$n, CAIRN_BINARY=$bin: $out"
			fi
		done
	done
	if out="$(CAIRN_NODES=3 CAIRN_BINARY="$cairn" vagrant status --machine-readable 2>&1)"; then
		machines="$(echo "$out" | awk -F, '$3 == "state" {print $2}' | tr '\n' ' ')"
		if [[ "$machines" == "n1 n2 n3 " ]]; then
			ok "vagrant status lists $machines"
		else
			fail "vagrant status lists '$machines', want n1 n2 n3"
		fi
	else
		# Without a provider (no VirtualBox or libvirt), status cannot run.
		why="$(echo "$out" | grep -o 'No usable default provider could be found' | head -1)"
		skip "vagrant status: ${why:-$(echo "$out" | head -c 200)} (no VirtualBox or libvirt here)"
	fi
	if CAIRN_NODES=0 CAIRN_BINARY="$cairn" vagrant validate --ignore-provider >/dev/null 2>&1; then
		fail "vagrant validate accepted CAIRN_NODES=0"
	else
		ok "CAIRN_NODES=0 refused"
	fi
else
	skip "vagrant is not installed (set CI=true to install it from apt)"
fi

# ---------------------------------------------------------------------------
step "4. provision.sh into scratch roots"
urls() { # urls N EXCEPT: the Vagrant HTTP URLs of members 1..N but EXCEPT
	local j out=""
	for ((j = 1; j <= $1; j++)); do
		[[ $j -eq $2 ]] || out+="${out:+,}http://192.168.56.$((10 + j)):8001"
	done
	echo "$out"
}
# expect FILE LINE: FILE has the exact line.
expect() {
	grep -qxF -- "$2" "$1" || fail "$1 lacks the line: $2"
}
mode() { stat -c %a "$1"; }

for i in 1 2 3; do
	root="$work/root-n$i"
	role=(--bootstrap)
	[[ $i -eq 1 ]] || role=(--join "$(urls 3 "$i")")
	if [[ $i -eq 2 ]]; then
		# DESTDIR works like --root.
		DESTDIR="$root" bash deploy/provision.sh --id "n$i" --address "192.168.56.$((10 + i))" \
			--binary "$cairn" "${role[@]}" >"$work/prov-n$i.log" 2>&1 || { cat "$work/prov-n$i.log"; fail "provision n$i (DESTDIR)"; continue; }
	else
		bash deploy/provision.sh --root "$root" --id "n$i" --address "192.168.56.$((10 + i))" \
			--binary "$cairn" "${role[@]}" >"$work/prov-n$i.log" 2>&1 || { cat "$work/prov-n$i.log"; fail "provision n$i"; continue; }
	fi
	conf="$root/etc/cairn/cairn.yaml"
	if ! [[ -x "$root/usr/local/bin/cairn" ]] || ! cmp -s "$cairn" "$root/usr/local/bin/cairn"; then
		fail "n$i: binary not installed"
	fi
	[[ "$(mode "$root/usr/local/bin/cairn")" == 755 ]] || fail "n$i: binary mode $(mode "$root/usr/local/bin/cairn")"
	cmp -s deploy/cairn.service "$root/etc/systemd/system/cairn.service" || fail "n$i: unit not installed"
	[[ "$(mode "$root/etc/systemd/system/cairn.service")" == 644 ]] || fail "n$i: unit mode"
	[[ -f "$conf" ]] || { fail "n$i: no $conf"; continue; }
	[[ "$(mode "$conf")" == 640 ]] || fail "n$i: config mode $(mode "$conf")"
	[[ -d "$root/var/lib/cairn" && "$(mode "$root/var/lib/cairn")" == 750 ]] || fail "n$i: data dir missing or not 0750"
	expect "$conf" "id: \"n$i\""
	expect "$conf" 'data-dir: "/var/lib/cairn"'
	expect "$conf" "raft-addr: \"192.168.56.$((10 + i)):7001\""
	expect "$conf" "http-addr: \"192.168.56.$((10 + i)):8001\""
	if [[ $i -eq 1 ]]; then
		expect "$conf" "bootstrap: true"
		grep -q '^join:' "$conf" && fail "n1: config has join"
	else
		expect "$conf" "join: \"$(urls 3 "$i")\""
		grep -q '^bootstrap:' "$conf" && fail "n$i: config has bootstrap"
	fi
	cmp -s deploy/config/n$i.yaml "$conf" || {
		diff -u deploy/config/n$i.yaml "$conf" || true
		fail "deploy/config/n$i.yaml differs from what provision.sh writes"
	}
	expect "$root/etc/profile.d/cairn.sh" "export CAIRN_CLUSTER=\"http://192.168.56.$((10 + i)):8001${role[1]:+,${role[1]}}\""
	# Only the files above, nothing else.
	got="$(cd "$root" && find . -type f | sort | tr '\n' ' ')"
	want="./etc/cairn/cairn.yaml ./etc/profile.d/cairn.sh ./etc/systemd/system/cairn.service ./usr/local/bin/cairn "
	[[ "$got" == "$want" ]] || fail "n$i: files $got, want $want"
	# A second run changes nothing.
	bash deploy/provision.sh --root "$root" --id "n$i" --address "192.168.56.$((10 + i))" \
		--binary "$cairn" "${role[@]}" >"$work/prov2-n$i.log" 2>&1 || fail "n$i: second run failed"
	if grep -q "installed /" "$work/prov2-n$i.log"; then
		fail "n$i: second run rewrote files: $(cat "$work/prov2-n$i.log")"
	fi
	ok "n$i: binary, unit, config ($(grep -E '^(bootstrap|join):' "$conf")), profile, data dir"
done

refuse() { # refuse WHY ARGS...: provision.sh must fail and install nothing
	local why="$1" root="$work/refused"
	shift
	rm -rf "$root"
	if bash deploy/provision.sh --root "$root" --binary "$cairn" "$@" >"$work/refused.log" 2>&1; then
		fail "provision.sh accepted $why"
	elif [[ -e "$root/etc" ]]; then
		fail "provision.sh installed files despite $why"
	else
		ok "refused $why: $(tail -1 "$work/refused.log")"
	fi
}
refuse "no --id" --address 10.0.0.1 --bootstrap
refuse "no --address" --id n1 --bootstrap
refuse "no role" --id n1 --address 10.0.0.1
refuse "--bootstrap with --join" --id n1 --address 10.0.0.1 --bootstrap --join http://10.0.0.2:8001
refuse "a bad id" --id "n 1" --address 10.0.0.1 --bootstrap
refuse "a bad port" --id n1 --address 10.0.0.1 --bootstrap --http-port 70000
refuse "a missing binary" --id n1 --address 10.0.0.1 --bootstrap --binary "$work/nope"

# ---------------------------------------------------------------------------
step "5. the written configs run"
used=" "
# Ports come from below the kernel's ephemeral range: a port inside it can be
# taken between this check and the member's bind by any outgoing connection
# (the members' own joins and health checks among them).
read -r eph_low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph_low=32768
[[ "$eph_low" -gt 12000 ]] || eph_low=32768
port() { # a free loopback port not handed out before
	local p
	while :; do
		p=$((10000 + RANDOM % (eph_low - 10000)))
		[[ "$used" == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used+="$p "
			echo "$p"
			return
		fi
	done
}
# wait_ready URL SECONDS
wait_ready() {
	local deadline=$((SECONDS + $2))
	until "$cairn" --timeout 2s node health --endpoint "$1" >/dev/null 2>&1; do
		if [[ $SECONDS -ge $deadline ]]; then
			return 1
		fi
		sleep 0.2
	done
}
start() { # start NAME BINARY CONFIG ROOT: run a member from CONFIG, data under ROOT
	"$2" node run --config "$3" --data-dir "$4/var/lib/cairn" >"$work/$1.log" 2>&1 &
	pids+=($!)
}

declare -a http
for i in 1 2 3; do
	http[i]=$(port)
	raft=$(port)
	root="$work/run-n$i"
	role=(--bootstrap)
	[[ $i -eq 1 ]] || role=(--join "http://127.0.0.1:${http[1]}")
	bash deploy/provision.sh --root "$root" --id "n$i" --address 127.0.0.1 --raft-port "$raft" \
		--http-port "${http[i]}" --log-level warn --binary "$cairn" "${role[@]}" >/dev/null
	# The data dir in the config is /var/lib/cairn; the flag (which wins
	# over the file) moves it into the scratch root.
	start "n$i" "$root/usr/local/bin/cairn" "$root/etc/cairn/cairn.yaml" "$root"
done
cluster="http://127.0.0.1:${http[1]},http://127.0.0.1:${http[2]},http://127.0.0.1:${http[3]}"
ready=1
for i in 1 2 3; do
	if ! wait_ready "http://127.0.0.1:${http[i]}" 60; then
		ready=0
		fail "member n$i started from its provisioned config is not ready:"
		tail -20 "$work/n$i.log"
	fi
done
if [[ $ready -eq 1 ]]; then
	if "$cairn" --cluster "$cluster" --timeout 30s put provisioned yes >/dev/null &&
		[[ "$("$cairn" --cluster "$cluster" --timeout 30s get provisioned)" == yes ]]; then
		ok "three members from provisioned configs took a write"
	else
		fail "put/get through the provisioned cluster"
	fi
	members="$("$cairn" --cluster "$cluster" --timeout 30s node list --json)"
	voters="$(echo "$members" | grep -c '"role": "voter"' || true)"
	if [[ "$voters" == 3 ]]; then
		ok "3 voters: n1 bootstrapped, n2 and n3 joined"
	else
		fail "node list: $members"
	fi
fi

# The annotated example, with every tuning key uncommented.
ex="$work/example.yaml"
sed -E 's/^# ((heartbeat|election|leader-lease)-timeout|snapshot-threshold|snapshot-interval|trailing-logs|max-value-size|max-request-bytes|max-ops):/\1:/' \
	deploy/config/cairn.yaml.example >"$ex"
[[ "$(grep -cE '^(heartbeat-timeout|election-timeout|leader-lease-timeout|snapshot-threshold|snapshot-interval|trailing-logs|max-value-size|max-request-bytes|max-ops):' "$ex")" == 9 ]] ||
	fail "cairn.yaml.example: expected 9 commented tuning keys"
exhttp=$(port)
mkdir -p "$work/example/var/lib/cairn"
"$cairn" node run --config "$ex" --id example --raft-addr "127.0.0.1:$(port)" --http-addr "127.0.0.1:$exhttp" \
	--data-dir "$work/example/var/lib/cairn" --log-level warn >"$work/example.log" 2>&1 &
pids+=($!)
if wait_ready "http://127.0.0.1:$exhttp" 30; then
	ok "a member runs from deploy/config/cairn.yaml.example"
else
	fail "member from cairn.yaml.example not ready:"
	tail -20 "$work/example.log"
fi

# Stop them gracefully (SIGTERM, as systemd does) and check they exit 0.
for pid in "${pids[@]}"; do
	kill -TERM "$pid" 2>/dev/null || true
done
for pid in "${pids[@]}"; do
	if ! wait "$pid"; then
		fail "member pid $pid did not exit cleanly on SIGTERM"
	fi
done
pids=()

echo
if [[ $failures -gt 0 ]]; then
	echo "vagrant-check: $failures check(s) FAILED"
	exit 1
fi
echo "vagrant-check: all checks that could run here passed"
