#!/usr/bin/env bash
# scripts/vagrant-check.sh checks the VM/systemd deployment (Vagrantfile,
# deploy/) as far as a machine that cannot boot the VMs allows:
#
#   1. deploy/provision.sh: bash -n, and shellcheck when installed
#   2. deploy/cairn.service: systemd-analyze verify, and its offline security
#      score (skipped without systemd-analyze)
#   3. Vagrantfile: vagrant validate for 3 and 5 members and a refused
#      CAIRN_NODES (vagrant is installed from apt when CI=true and missing;
#      skipped otherwise); then, with Ruby and Vagrant stubbed, its
#      certificate step as `vagrant up` runs it (files and modes, kept on a
#      second run, a certificate made for another subnet refused) and the
#      provisioners it defines (each VM gets ca.pem and its own certificate
#      and key, never the CA key; --tls-dir, https:// joins)
#   4. provision.sh against scratch roots (--root and DESTDIR): the binary,
#      unit, TLS files, config (id, addresses, bootstrap/join, TLS keys;
#      equal to deploy/config/n*.yaml for the Vagrant addresses), modes, a
#      no-op second run, a TLS-only change that rewrites nothing else,
#      --insecure, and refused bad arguments
#   5. the configs it writes really run: three members started on loopback
#      from three scratch roots' cairn.yaml files form a cluster over TLS
#      that takes a write and refuses plaintext and certificate-less
#      clients; a member certificate installed again by provision.sh is
#      served without a restart; one member started from
#      deploy/config/cairn.yaml.example with every tuning key set becomes
#      ready; all are stopped again
#   6. docs/deploy.md: every shell block is marked as run by a test or says
#      why not, and the blocks marked `<!-- test: vagrant-check -->` run, in
#      order, as one shell session in a scratch directory (DESTDIR set, so
#      provision.sh installs under it)
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
urls() { # urls N EXCEPT: the Vagrant HTTPS URLs of members 1..N but EXCEPT
	local j out=""
	for ((j = 1; j <= $1; j++)); do
		[[ $j -eq $2 ]] || out+="${out:+,}https://192.168.56.$((10 + j)):8001"
	done
	echo "$out"
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
step "3b. the Vagrantfile's certificates and provisioners (Vagrant stubbed)"
# vagrant_stub COMMAND: evaluates the Vagrantfile as `vagrant COMMAND` would,
# with Vagrant.configure recording the provisioners, one line each:
#   MACHINE file SOURCE DESTINATION
#   MACHINE shell NAME ARGS... (or INLINE)
cat >"$work/vagrant-stub.rb" <<'RUBY'
module Vagrant
  class Recorder
    def initialize(machine = "-")
      @machine = machine
    end

    def vm = self

    def define(name, **)
      yield Recorder.new(name)
    end

    def provider(*)
      yield Recorder.new(@machine)
    end

    def provision(type, **opts)
      line = case type
             when "file" then [opts[:source], opts[:destination]]
             else [opts[:name], *(opts[:args] || [opts[:inline]])]
             end
      $provisions << [@machine, type, *line].join(" ")
    end

    def method_missing(*) = self
    def respond_to_missing?(*) = true
  end

  def self.configure(_version)
    yield Recorder.new
  end
end
$provisions = []
ARGV.replace([ENV.fetch("STUB_COMMAND")])
load ENV.fetch("STUB_VAGRANTFILE")
puts $provisions
RUBY
vagrant_stub() {
	STUB_COMMAND="$1" STUB_VAGRANTFILE="$PWD/Vagrantfile" ruby "$work/vagrant-stub.rb"
}
vtls="$work/vagrant-tls"
export CAIRN_TLS_DIR="$vtls" CAIRN_BINARY="$cairn" CAIRN_NODES=3
unset CAIRN_CLI CAIRN_SUBNET
stubbed=0
if ! command -v ruby >/dev/null; then
	skip "ruby is not installed (it comes with vagrant)"
elif ! vagrant_stub up >"$work/stub-up.txt" 2>"$work/stub-up.err"; then
	cat "$work/stub-up.err"
	fail "the Vagrantfile's certificate step (as vagrant up)"
else
	stubbed=1
	for f in ca.pem member-n1.pem member-n2.pem member-n3.pem client-admin.pem; do
		[[ -f "$vtls/$f" && "$(stat -c %a "$vtls/$f")" == 644 ]] || fail "Vagrantfile: $vtls/$f missing or not 0644"
		key="${f%.pem}-key.pem"
		[[ -f "$vtls/$key" && "$(stat -c %a "$vtls/$key")" == 600 ]] || fail "Vagrantfile: $vtls/$key missing or not 0600"
	done
	if command -v openssl >/dev/null; then
		for i in 1 2 3; do
			sans="$(openssl x509 -in "$vtls/member-n$i.pem" -noout -ext subjectAltName)"
			for want in "DNS:n$i" "IP Address:192.168.56.$((10 + i))" "URI:cairn://member/n$i"; do
				[[ "$sans" == *"$want"* ]] || fail "member-n$i.pem does not name $want: $sans"
			done
		done
	fi
	sums="$(cd "$vtls" && sha256sum ./*)"
	# A second run makes nothing.
	if ! vagrant_stub provision >"$work/stub-prov.txt" 2>&1; then
		cat "$work/stub-prov.txt"
		fail "the Vagrantfile's second certificate step"
	elif grep -q "cairn cert: wrote" "$work/stub-prov.txt" || [[ "$(cd "$vtls" && sha256sum ./*)" != "$sums" ]]; then
		fail "the Vagrantfile's second run rewrote certificates: $(cat "$work/stub-prov.txt")"
	fi
	# validate and status make none.
	rm -rf "$work/vagrant-tls-none"
	CAIRN_TLS_DIR="$work/vagrant-tls-none" vagrant_stub validate >/dev/null 2>&1 || fail "the Vagrantfile under vagrant validate (stubbed)"
	[[ ! -e "$work/vagrant-tls-none" ]] || fail "vagrant validate made certificates"
	# Certificates made for another subnet do not fit.
	if out="$(CAIRN_SUBNET=10.9.9 vagrant_stub up 2>&1)"; then
		fail "the Vagrantfile accepted member certificates made for another subnet"
	elif [[ "$out" != *"does not name 10.9.9.11"* ]]; then
		fail "the Vagrantfile refused another subnet's certificates for another reason: $out"
	fi
	ok "Vagrantfile makes the CA, member and admin certificates once, with modes 0644/0600 ($(grep -c 'cairn cert: wrote' "$work/stub-up.txt") files)"

	# What each VM gets.
	prov="$work/stub-up.txt"
	for i in 1 2 3; do
		for f in ca.pem "member-n$i.pem" "member-n$i-key.pem"; do
			grep -qxF "n$i file $vtls/$f /tmp/cairn-deploy/tls/$f" "$prov" || fail "n$i: no file provisioner for $f"
		done
		others="$(grep "^n$i file " "$prov" | grep -v -e "/cairn " -e "/cairn.service " -e "/ca.pem " -e "/member-n$i.pem " -e "/member-n$i-key.pem " || true)"
		[[ -z "$others" ]] || fail "n$i gets more files than its own: $others"
		line="$(grep "^n$i shell cairn " "$prov" || true)"
		[[ "$line" == *" --tls-dir /tmp/cairn-deploy/tls "* ]] || fail "n$i: provision.sh without --tls-dir: $line"
		if [[ $i -eq 1 ]]; then
			[[ "$line" == *" --bootstrap" ]] || fail "n1: not --bootstrap: $line"
		else
			[[ "$line" == *" --join $(urls 3 "$i")" ]] || fail "n$i: join is not $(urls 3 "$i"): $line"
		fi
		[[ "$(grep "^n$i shell" "$prov" | tail -1)" == "n$i shell cleanup rm -rf /tmp/cairn-deploy" ]] ||
			fail "n$i: the uploads are not removed after provisioning"
	done
	if grep -E "^n[0-9]+ (file|shell) " "$prov" | grep -q "ca-key.pem"; then
		fail "a VM gets the CA key: $(grep -E "^n[0-9]+ (file|shell) " "$prov" | grep ca-key.pem)"
	fi
	ok "each VM gets ca.pem and its own certificate and key (no CA key), provision.sh --tls-dir and https:// joins"
fi
unset CAIRN_TLS_DIR CAIRN_BINARY CAIRN_NODES

# ---------------------------------------------------------------------------
step "4. provision.sh into scratch roots"
# expect FILE LINE: FILE has the exact line.
expect() {
	grep -qxF -- "$2" "$1" || fail "$1 lacks the line: $2"
}
mode() { stat -c %a "$1"; }

# The certificates for the Vagrant addresses: the Vagrantfile's (step 3b),
# or made here the same way without Ruby.
if [[ $stubbed -eq 0 ]]; then
	"$cairn" cert ca create --dir "$vtls" >/dev/null
	for i in 1 2 3; do
		"$cairn" cert member create --id "n$i" --host "n$i,192.168.56.$((10 + i))" --dir "$vtls" >/dev/null
	done
fi

for i in 1 2 3; do
	root="$work/root-n$i"
	role=(--bootstrap)
	[[ $i -eq 1 ]] || role=(--join "$(urls 3 "$i")")
	if [[ $i -eq 2 ]]; then
		# DESTDIR works like --root.
		DESTDIR="$root" bash deploy/provision.sh --id "n$i" --address "192.168.56.$((10 + i))" --tls-dir "$vtls" \
			--binary "$cairn" "${role[@]}" >"$work/prov-n$i.log" 2>&1 || { cat "$work/prov-n$i.log"; fail "provision n$i (DESTDIR)"; continue; }
	else
		bash deploy/provision.sh --root "$root" --id "n$i" --address "192.168.56.$((10 + i))" --tls-dir "$vtls" \
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
	[[ "$(mode "$root/etc/cairn")" == 750 ]] || fail "n$i: /etc/cairn mode $(mode "$root/etc/cairn")"
	[[ -d "$root/var/lib/cairn" && "$(mode "$root/var/lib/cairn")" == 750 ]] || fail "n$i: data dir missing or not 0750"
	# The TLS files: the member's own, with their modes; no CA key.
	tls="$root/etc/cairn/tls"
	[[ -d "$tls" && "$(mode "$tls")" == 750 ]] || fail "n$i: $tls missing or not 0750"
	for f in ca.pem:644 "member-n$i.pem:644" "member-n$i-key.pem:640"; do
		name="${f%:*}" want="${f#*:}"
		cmp -s "$vtls/$name" "$tls/$name" || fail "n$i: $name not installed"
		[[ "$(mode "$tls/$name")" == "$want" ]] || fail "n$i: $name mode $(mode "$tls/$name"), want $want"
	done
	expect "$conf" "id: \"n$i\""
	expect "$conf" 'data-dir: "/var/lib/cairn"'
	expect "$conf" "raft-addr: \"192.168.56.$((10 + i)):7001\""
	expect "$conf" "http-addr: \"192.168.56.$((10 + i)):8001\""
	expect "$conf" "peer-cert-file: \"/etc/cairn/tls/member-n$i.pem\""
	expect "$conf" "peer-key-file: \"/etc/cairn/tls/member-n$i-key.pem\""
	expect "$conf" 'peer-trusted-ca-file: "/etc/cairn/tls/ca.pem"'
	grep -q '^insecure:' "$conf" && fail "n$i: config has insecure"
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
	profile="$root/etc/profile.d/cairn.sh"
	expect "$profile" "export CAIRN_CLUSTER=\"https://192.168.56.$((10 + i)):8001${role[1]:+,${role[1]}}\""
	expect "$profile" "export CAIRN_CACERT=\"/etc/cairn/tls/ca.pem\" CAIRN_CERT=\"/etc/cairn/tls/member-n$i.pem\" CAIRN_KEY=\"/etc/cairn/tls/member-n$i-key.pem\""
	# Only the files above, nothing else.
	got="$(cd "$root" && find . -type f | sort | tr '\n' ' ')"
	want="./etc/cairn/cairn.yaml ./etc/cairn/tls/ca.pem ./etc/cairn/tls/member-n$i-key.pem ./etc/cairn/tls/member-n$i.pem ./etc/profile.d/cairn.sh ./etc/systemd/system/cairn.service ./usr/local/bin/cairn "
	[[ "$got" == "$want" ]] || fail "n$i: files $got, want $want"
	# A second run changes nothing.
	bash deploy/provision.sh --root "$root" --id "n$i" --address "192.168.56.$((10 + i))" --tls-dir "$vtls" \
		--binary "$cairn" "${role[@]}" >"$work/prov2-n$i.log" 2>&1 || fail "n$i: second run failed"
	if grep -q "installed /" "$work/prov2-n$i.log"; then
		fail "n$i: second run rewrote files: $(cat "$work/prov2-n$i.log")"
	fi
	ok "n$i: binary, unit, TLS files, config ($(grep -E '^(bootstrap|join):' "$conf")), profile, data dir"
done

# New TLS files (a rotation) are installed, and nothing else is.
renew="$work/renew-n1"
"$cairn" cert member create --id n1 --host n1,192.168.56.11 --dir "$renew" --ca "$vtls/ca.pem" --ca-key "$vtls/ca-key.pem" >/dev/null
cp "$vtls/ca.pem" "$renew/"
if bash deploy/provision.sh --root "$work/root-n1" --id n1 --address 192.168.56.11 --tls-dir "$renew" \
	--binary "$cairn" --bootstrap >"$work/prov3-n1.log" 2>&1; then
	installed="$(grep -o 'installed /[^ ]*' "$work/prov3-n1.log" | sed "s#installed $work/root-n1##" | tr '\n' ' ')"
	if [[ "$installed" != "/etc/cairn/tls/member-n1.pem /etc/cairn/tls/member-n1-key.pem " ]]; then
		fail "a new certificate installed $installed, want the certificate and key only"
	elif ! cmp -s "$renew/member-n1.pem" "$work/root-n1/etc/cairn/tls/member-n1.pem" ||
		! cmp -s "$renew/member-n1-key.pem" "$work/root-n1/etc/cairn/tls/member-n1-key.pem"; then
		fail "the new certificate of n1 is not in place"
	elif ! grep -q "reloads them" "$work/prov3-n1.log"; then
		fail "provision.sh does not say the member reloads new TLS files: $(cat "$work/prov3-n1.log")"
	else
		ok "a new member certificate: only it and its key are installed (no restart needed)"
	fi
else
	cat "$work/prov3-n1.log"
	fail "provision.sh with a new certificate"
fi

# --insecure: no TLS files, plain URLs, the config says so.
root="$work/root-insecure"
if bash deploy/provision.sh --root "$root" --id n2 --address 10.0.0.2 --insecure --join http://10.0.0.1:8001 \
	--binary "$cairn" >"$work/prov-insecure.log" 2>&1; then
	expect "$root/etc/cairn/cairn.yaml" "insecure: true"
	grep -q '^peer-' "$root/etc/cairn/cairn.yaml" && fail "--insecure: config has TLS keys"
	[[ ! -e "$root/etc/cairn/tls" ]] || fail "--insecure: /etc/cairn/tls installed"
	expect "$root/etc/profile.d/cairn.sh" 'export CAIRN_CLUSTER="http://10.0.0.2:8001,http://10.0.0.1:8001"'
	grep -q CAIRN_CACERT "$root/etc/profile.d/cairn.sh" && fail "--insecure: profile has TLS files"
	ok "--insecure: plain URLs, insecure: true, no TLS files"
else
	cat "$work/prov-insecure.log"
	fail "provision.sh --insecure"
fi

refuse() { # refuse WHY WANT ARGS...: provision.sh must fail saying WANT and install nothing
	local why="$1" want="$2" root="$work/refused"
	shift 2
	rm -rf "$root"
	if bash deploy/provision.sh --root "$root" --binary "$cairn" "$@" >"$work/refused.log" 2>&1; then
		fail "provision.sh accepted $why"
	elif [[ -e "$root/etc" ]]; then
		fail "provision.sh installed files despite $why"
	elif ! grep -qF -- "$want" "$work/refused.log"; then
		fail "provision.sh refused $why without saying '$want': $(tail -1 "$work/refused.log")"
	else
		ok "refused $why: $(tail -1 "$work/refused.log")"
	fi
}
refuse "no --id" "--id is required" --address 10.0.0.1 --insecure --bootstrap
refuse "no --address" "--address is required" --id n1 --insecure --bootstrap
refuse "no role" "give --bootstrap" --id n1 --address 10.0.0.1 --insecure
refuse "--bootstrap with --join" "exclusive" --id n1 --address 10.0.0.1 --insecure --bootstrap --join http://10.0.0.2:8001
refuse "a bad id" "--id n 1" --id "n 1" --address 10.0.0.1 --insecure --bootstrap
refuse "a bad port" "port 70000" --id n1 --address 10.0.0.1 --insecure --bootstrap --http-port 70000
refuse "a missing binary" "not found" --id n1 --address 10.0.0.1 --insecure --bootstrap --binary "$work/nope"
refuse "neither --tls-dir nor --insecure" "give --tls-dir" --id n1 --address 10.0.0.1 --bootstrap
refuse "--tls-dir with --insecure" "exclusive" --id n1 --address 10.0.0.1 --tls-dir "$vtls" --insecure --bootstrap
refuse "a missing --tls-dir" "not a directory" --id n1 --address 10.0.0.1 --tls-dir "$work/nope" --bootstrap
refuse "a --tls-dir without the member's files" "no readable member-n7.pem" --id n7 --address 10.0.0.7 --tls-dir "$vtls" --bootstrap
mkdir -p "$work/nokey" && cp "$vtls/ca.pem" "$vtls/member-n1.pem" "$work/nokey/"
refuse "a --tls-dir without the key" "no readable member-n1-key.pem" --id n1 --address 10.0.0.1 --tls-dir "$work/nokey" --bootstrap
refuse "http:// joins with TLS" "use https:// URLs" --id n2 --address 10.0.0.2 --tls-dir "$vtls" --join https://10.0.0.1:8001,http://10.0.0.3:8001
refuse "https:// joins with --insecure" "use http:// URLs" --id n2 --address 10.0.0.2 --insecure --join https://10.0.0.1:8001

# ---------------------------------------------------------------------------
step "5. the written configs run, over TLS"
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
# The cluster's certificates (127.0.0.1 is in every member certificate) and
# the CLI's: the admin client's.
rtls="$work/run-tls"
"$cairn" cert ca create --dir "$rtls" >/dev/null
for id in n1 n2 n3 example; do
	"$cairn" cert member create --id "$id" --dir "$rtls" >/dev/null
done
"$cairn" cert client create --name admin --dir "$rtls" >/dev/null
admin=(--cacert "$rtls/ca.pem" --cert "$rtls/client-admin.pem" --key "$rtls/client-admin-key.pem")
cli() { "$cairn" "${admin[@]}" "$@"; }
# wait_ready URL SECONDS
wait_ready() {
	local deadline=$((SECONDS + $2))
	until cli --timeout 2s node health --endpoint "$1" >/dev/null 2>&1; do
		if [[ $SECONDS -ge $deadline ]]; then
			return 1
		fi
		sleep 0.2
	done
}
start() { # start NAME BINARY CONFIG ROOT ID: run a member from CONFIG, data and TLS files under ROOT
	local tls="$4/etc/cairn/tls"
	"$2" node run --config "$3" --data-dir "$4/var/lib/cairn" --peer-cert-file "$tls/member-$5.pem" \
		--peer-key-file "$tls/member-$5-key.pem" --peer-trusted-ca-file "$tls/ca.pem" >"$work/$1.log" 2>&1 &
	pids+=($!)
}
# served_serial PORT: the serial number of the certificate a member serves
# (needs openssl).
served_serial() {
	openssl s_client -connect "127.0.0.1:$1" -CAfile "$rtls/ca.pem" -cert "$rtls/client-admin.pem" \
		-key "$rtls/client-admin-key.pem" </dev/null 2>/dev/null | openssl x509 -noout -serial 2>/dev/null
}

declare -a http raftp
for i in 1 2 3; do
	http[i]=$(port)
	raftp[i]=$(port)
	raft=${raftp[i]}
	root="$work/run-n$i"
	role=(--bootstrap)
	[[ $i -eq 1 ]] || role=(--join "https://127.0.0.1:${http[1]}")
	bash deploy/provision.sh --root "$root" --id "n$i" --address 127.0.0.1 --raft-port "$raft" --tls-dir "$rtls" \
		--http-port "${http[i]}" --log-level warn --binary "$cairn" "${role[@]}" >/dev/null
	# The data dir and TLS files in the config are under /var/lib/cairn and
	# /etc/cairn/tls; the flags (which win over the file) move them into the
	# scratch root.
	start "n$i" "$root/usr/local/bin/cairn" "$root/etc/cairn/cairn.yaml" "$root" "n$i"
done
cluster="https://127.0.0.1:${http[1]},https://127.0.0.1:${http[2]},https://127.0.0.1:${http[3]}"
ready=1
for i in 1 2 3; do
	if ! wait_ready "https://127.0.0.1:${http[i]}" 60; then
		ready=0
		fail "member n$i started from its provisioned config is not ready:"
		tail -20 "$work/n$i.log"
	fi
done
if [[ $ready -eq 1 ]]; then
	if cli --cluster "$cluster" --timeout 30s put provisioned yes >/dev/null &&
		[[ "$(cli --cluster "$cluster" --timeout 30s get provisioned)" == yes ]]; then
		ok "three members from provisioned configs took a write over TLS"
	else
		fail "put/get through the provisioned cluster"
	fi
	members="$(cli --cluster "$cluster" --timeout 30s node list --json)"
	voters="$(echo "$members" | grep -c '"role": "voter"' || true)"
	if [[ "$voters" == 3 ]]; then
		ok "3 voters: n1 bootstrapped, n2 and n3 joined"
	else
		fail "node list: $members"
	fi
	st="$(cli --cluster "$cluster" --timeout 30s node status --endpoint "https://127.0.0.1:${http[2]}" --json)"
	if [[ "$st" == *'"tls": true'* && "$st" == *'"insecure": false'* ]]; then
		ok "node status: tls true, insecure false"
	else
		fail "node status of n2: $st"
	fi

	# Refused: plaintext, no client certificate, a certificate of another CA.
	"$cairn" cert ca create --dir "$work/other-ca" >/dev/null
	"$cairn" cert client create --name admin --dir "$work/other-ca" >/dev/null
	refused() { # refused WHY ARGS...: the CLI must exit 5 (a TLS failure)
		local why="$1" rc=0
		shift
		"$cairn" --timeout 20s "$@" get provisioned >"$work/refused-cli.log" 2>&1 || rc=$?
		if [[ $rc -eq 5 ]]; then
			ok "refused $why (exit 5): $(head -c 200 "$work/refused-cli.log")"
		else
			fail "$why: exit $rc, want 5: $(cat "$work/refused-cli.log")"
		fi
	}
	refused "a plaintext client" --cluster "http://127.0.0.1:${http[1]}"
	refused "a client without a certificate" --cluster "https://127.0.0.1:${http[1]}" --cacert "$rtls/ca.pem"
	refused "a client certificate of another CA" --cluster "https://127.0.0.1:${http[1]}" --cacert "$rtls/ca.pem" \
		--cert "$work/other-ca/client-admin.pem" --key "$work/other-ca/client-admin-key.pem"
	refused "a server not signed by the client's CA" --cluster "https://127.0.0.1:${http[1]}" --cacert "$work/other-ca/ca.pem" \
		--cert "$rtls/client-admin.pem" --key "$rtls/client-admin-key.pem"

	# Rotation: a new certificate for n1, installed by provision.sh, is
	# served without a restart.
	rrenew="$work/run-renew"
	"$cairn" cert member create --id n1 --dir "$rrenew" --ca "$rtls/ca.pem" --ca-key "$rtls/ca-key.pem" >/dev/null
	cp "$rtls/ca.pem" "$rrenew/"
	n1pid="${pids[0]}"
	if ! bash deploy/provision.sh --root "$work/run-n1" --id n1 --address 127.0.0.1 --raft-port "${raftp[1]}" --tls-dir "$rrenew" \
		--http-port "${http[1]}" --log-level warn --binary "$cairn" --bootstrap >"$work/run-renew.log" 2>&1; then
		cat "$work/run-renew.log"
		fail "provision.sh with n1's new certificate"
	elif grep -q "installed .*/cairn.yaml" "$work/run-renew.log"; then
		fail "provision.sh with n1's new certificate rewrote its config: $(cat "$work/run-renew.log")"
	elif ! command -v openssl >/dev/null; then
		skip "openssl is not installed: not checking which certificate n1 serves"
	else
		want="$(openssl x509 -in "$rrenew/member-n1.pem" -noout -serial)"
		deadline=$((SECONDS + 15))
		until [[ "$(served_serial "${http[1]}")" == "$want" ]]; do
			if [[ $SECONDS -ge $deadline ]]; then
				fail "n1 serves $(served_serial "${http[1]}") 15 s after the new certificate ($want) was installed"
				break
			fi
			sleep 0.2
		done
		if [[ $SECONDS -lt $deadline ]]; then
			ok "n1 serves its new certificate ($want) without a restart"
		fi
	fi
	kill -0 "$n1pid" 2>/dev/null || fail "n1 (pid $n1pid) is gone after the rotation"
	if cli --cluster "$cluster" --timeout 30s put rotated yes >/dev/null &&
		[[ "$(cli --cluster "https://127.0.0.1:${http[1]}" --timeout 30s get rotated)" == yes ]]; then
		ok "the cluster takes writes after the rotation, through n1"
	else
		fail "put/get after the rotation"
	fi
fi

# The annotated example, with every tuning key uncommented.
ex="$work/example.yaml"
sed -E 's/^# ((heartbeat|election|leader-lease)-timeout|snapshot-threshold|snapshot-interval|trailing-logs|max-value-size|max-request-bytes|max-ops):/\1:/' \
	deploy/config/cairn.yaml.example >"$ex"
[[ "$(grep -cE '^(heartbeat-timeout|election-timeout|leader-lease-timeout|snapshot-threshold|snapshot-interval|trailing-logs|max-value-size|max-request-bytes|max-ops):' "$ex")" == 9 ]] ||
	fail "cairn.yaml.example: expected 9 commented tuning keys"
for key in peer-cert-file peer-key-file peer-trusted-ca-file; do
	grep -qE "^$key: \"/etc/cairn/tls/" "$ex" || fail "cairn.yaml.example: no $key"
done
for key in cert-file key-file trusted-ca-file client-cert-auth insecure; do
	grep -qE "^# $key: " "$ex" || fail "cairn.yaml.example: no commented $key"
done
exhttp=$(port)
mkdir -p "$work/example/var/lib/cairn"
"$cairn" node run --config "$ex" --id example --raft-addr "127.0.0.1:$(port)" --http-addr "127.0.0.1:$exhttp" \
	--data-dir "$work/example/var/lib/cairn" --log-level warn --peer-cert-file "$rtls/member-example.pem" \
	--peer-key-file "$rtls/member-example-key.pem" --peer-trusted-ca-file "$rtls/ca.pem" >"$work/example.log" 2>&1 &
pids+=($!)
if wait_ready "https://127.0.0.1:$exhttp" 30; then
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

# ---------------------------------------------------------------------------
step "6. docs/deploy.md examples"
doc=docs/deploy.md
# Every shell block is marked: run by a test, or why not.
unmarked="$(awk '
	/^[ \t]*```sh[ \t]*$/ {
		if (prev !~ /^[ \t]*<!-- (test: (docker|vagrant-check)|not tested: .+) -->[ \t]*$/) print FILENAME ":" NR ": " $0
	}
	{ prev = $0 }' "$doc")"
if [[ -n "$unmarked" ]]; then
	fail "shell blocks in $doc without <!-- test: ... --> or <!-- not tested: why -->:"
	echo "$unmarked"
else
	ok "every shell block in $doc is marked ($(grep -cE '^[[:space:]]*<!-- test: docker -->[[:space:]]*$' "$doc") run by docker_test.go, $(grep -cE '^[[:space:]]*<!-- test: vagrant-check -->[[:space:]]*$' "$doc") here, $(grep -cE '^[[:space:]]*<!-- not tested: .+ -->[[:space:]]*$' "$doc") not run, with the reason)"
fi
# The blocks marked for this script, in order, as one shell session.
doc_blocks() { # doc_blocks MARKER: the blocks after MARKER, unindented, each after a "# block N" line
	awk -v marker="<!-- test: $1 -->" '
		inblock && $0 ~ "^" indent "```[ \t]*$" { inblock = 0; next }
		inblock { sub("^" indent, ""); print; next }
		armed && /^[ \t]*```sh[ \t]*$/ { inblock = 1; indent = $0; sub(/```sh.*/, "", indent); n++; print "# block " n ", line " NR; armed = 0; next }
		{ t = $0; gsub(/^[ \t]+|[ \t]+$/, "", t); armed = (t == marker) }' "$doc"
}
dd="$work/docs"
mkdir -p "$dd/bin"
cp "$cairn" "$dd/bin/cairn"
cp "$cairn" "$dd/cairn"
cp deploy/provision.sh deploy/cairn.service "$dd/"
doc_blocks vagrant-check >"$dd/examples.sh"
nblocks="$(grep -c '^# block ' "$dd/examples.sh" || true)"
if [[ "$nblocks" -lt 3 ]]; then
	fail "found $nblocks blocks marked <!-- test: vagrant-check --> in $doc, want at least 3"
elif (cd "$dd" && DESTDIR="$dd/root" PATH="$dd/bin:$PATH" timeout 120 bash -euo pipefail -x examples.sh) >"$work/docs.log" 2>&1; then
	r="$dd/root/etc/cairn"
	if [[ -f "$r/tls/member-n2.pem" && -f "$r/tls/member-n3-key.pem" ]] &&
		cmp -s "$dd/renew/member-n1.pem" "$r/tls/member-n1.pem" && cmp -s "$dd/tls/ca.pem" "$r/tls/ca.pem" &&
		grep -qxF 'peer-cert-file: "/etc/cairn/tls/member-n1.pem"' "$r/cairn.yaml" && [[ ! -e "$r/tls/ca-key.pem" ]]; then
		ok "the $nblocks examples marked for vagrant-check ran: certificates made, installed by provision.sh, n1's renewed"
	else
		fail "the examples ran but did not install what they say: $(cd "$dd/root" && find . -type f | sort | tr '\n' ' ')"
	fi
else
	cat "$work/docs.log"
	fail "the examples of $doc marked <!-- test: vagrant-check --> (script: $dd/examples.sh)"
fi

echo
if [[ $failures -gt 0 ]]; then
	echo "vagrant-check: $failures check(s) FAILED"
	exit 1
fi
echo "vagrant-check: all checks that could run here passed"
