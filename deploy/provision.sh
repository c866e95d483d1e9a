#!/usr/bin/env bash
# deploy/provision.sh installs one cairn cluster member on a systemd host:
# the binary, a dedicated system user, the data directory, the member's TLS
# files, the systemd unit (deploy/cairn.service) and the member's config
# file, then enables and starts the service and waits until the member is
# ready. The Vagrantfile runs it on every VM; it works the same on any
# Debian-like host.
#
#   provision.sh --id n1 --address 192.168.56.11 --tls-dir tls --bootstrap
#   provision.sh --id n2 --address 192.168.56.12 --tls-dir tls --join https://192.168.56.11:8001
#
# --tls-dir names a directory holding what `cairn cert` wrote for this
# member: ca.pem, member-ID.pem and member-ID-key.pem (the CA's key is not
# needed and not installed). They go to /etc/cairn/tls, and the member runs
# with TLS for raft, for the other members and for clients (client
# certificates required). --insecure instead runs it without TLS, which
# nothing but a private test network should do.
#
# It is safe to run again: --bootstrap is ignored once the data directory
# holds raft state, and --join is a no-op for a current member. The service
# is restarted only when the binary, unit or config changed; new TLS files
# (a rotation) need no restart, the member reloads them within a second.
#
# With --root DIR (or DESTDIR=DIR) it lays the same files down under DIR and
# touches nothing outside it: no user is created, nothing is chowned, and
# systemctl is not run. scripts/vagrant-check.sh uses that to test it.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: provision.sh --id ID --address IP (--tls-dir DIR | --insecure)
                    (--bootstrap | --join URL[,URL...]) [options]

  --id ID            member id, unique in the cluster (n1, n2, ...)
  --address IP       this host's private address; raft listens on IP:RAFT_PORT,
                     HTTPS on IP:HTTP_PORT, and other members and clients dial those
  --tls-dir DIR      directory with this member's ca.pem, member-ID.pem and
                     member-ID-key.pem (from `cairn cert`), installed into
                     /etc/cairn/tls
  --insecure         no TLS (plain HTTP and raft): a private test network only
  --bootstrap        this is the first member of a new cluster
  --join URLS        comma-separated URLs of existing members to join through
                     (https://, or http:// with --insecure)
  --non-voter        join as a non-voting read replica
  --raft-port N      raft port (7001)
  --http-port N      HTTP port (8001)
  --log-level L      debug, info, warn or error (info)
  --binary PATH      cairn binary to install (default: cairn next to this
                     script, else bin/cairn of the repository)
  --unit PATH        systemd unit to install (default: cairn.service next to
                     this script)
  --root DIR         install under DIR instead of / (also: DESTDIR=DIR); no
                     user, chown or systemctl
  --no-start         install and enable, but do not start or restart
  --wait SECONDS     wait up to SECONDS for the member to be ready (120; 0: no wait)
  -h, --help         this text
EOF
}

die() {
	echo "provision.sh: $*" >&2
	exit 1
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

id="" address="" bootstrap=0 join="" nonvoter=0 tls_dir="" insecure=0
raft_port=7001 http_port=8001 log_level=info
binary="" unit="" root="${DESTDIR:-/}" start=1 wait_s=120

need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
	case "$1" in
	--id) need "$@"; id="$2"; shift 2 ;;
	--address) need "$@"; address="$2"; shift 2 ;;
	--bootstrap) bootstrap=1; shift ;;
	--join) need "$@"; join="$2"; shift 2 ;;
	--tls-dir) need "$@"; tls_dir="$2"; shift 2 ;;
	--insecure) insecure=1; shift ;;
	--non-voter) nonvoter=1; shift ;;
	--raft-port) need "$@"; raft_port="$2"; shift 2 ;;
	--http-port) need "$@"; http_port="$2"; shift 2 ;;
	--log-level) need "$@"; log_level="$2"; shift 2 ;;
	--binary) need "$@"; binary="$2"; shift 2 ;;
	--unit) need "$@"; unit="$2"; shift 2 ;;
	--root) need "$@"; root="$2"; shift 2 ;;
	--no-start) start=0; shift ;;
	--wait) need "$@"; wait_s="$2"; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

[[ -n "$id" ]] || die "--id is required"
[[ "$id" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--id $id: use letters, digits, '.', '_' and '-'"
[[ -n "$address" ]] || die "--address is required"
[[ "$address" =~ ^[A-Za-z0-9.:-]+$ ]] || die "--address $address: not a host name or IP address"
if [[ $bootstrap -eq 1 && -n "$join" ]]; then
	die "--bootstrap and --join are exclusive"
fi
if [[ $bootstrap -eq 0 && -z "$join" ]]; then
	die "give --bootstrap (first member) or --join URL (every other member)"
fi
if [[ -n "$tls_dir" && $insecure -eq 1 ]]; then
	die "--tls-dir and --insecure are exclusive"
fi
if [[ -z "$tls_dir" && $insecure -eq 0 ]]; then
	die "give --tls-dir DIR with the member's certificates from \`cairn cert\` (docs/deploy.md), or --insecure"
fi
scheme=https
if [[ $insecure -eq 1 ]]; then
	scheme=http
fi
if [[ -n "$join" ]]; then
	IFS=, read -r -a join_urls <<<"$join"
	for u in "${join_urls[@]}"; do
		[[ "$u" == "$scheme://"* ]] || die "--join $u: use $scheme:// URLs$([[ $scheme == https ]] && echo " (the members serve HTTPS)" || echo " with --insecure")"
	done
fi
# The member's TLS files, by the names `cairn cert` gives them.
tls_files=()
if [[ -n "$tls_dir" ]]; then
	[[ -d "$tls_dir" ]] || die "--tls-dir $tls_dir: not a directory"
	tls_files=(ca.pem "member-$id.pem" "member-$id-key.pem")
	for f in "${tls_files[@]}"; do
		[[ -f "$tls_dir/$f" && -r "$tls_dir/$f" ]] ||
			die "--tls-dir $tls_dir has no readable $f (cairn cert ca create / cairn cert member create --id $id --host ... --dir $tls_dir)"
	done
	grep -q -- "-----BEGIN CERTIFICATE-----" "$tls_dir/ca.pem" || die "$tls_dir/ca.pem: no PEM certificate"
	grep -q -- "-----BEGIN CERTIFICATE-----" "$tls_dir/member-$id.pem" || die "$tls_dir/member-$id.pem: no PEM certificate"
	grep -q -- "PRIVATE KEY-----" "$tls_dir/member-$id-key.pem" || die "$tls_dir/member-$id-key.pem: no PEM private key"
fi
for p in "$raft_port" "$http_port"; do
	[[ "$p" =~ ^[0-9]+$ && "$p" -ge 1 && "$p" -le 65535 ]] || die "port $p: not in 1..65535"
done
case "$log_level" in debug | info | warn | error) ;; *) die "--log-level $log_level: use debug, info, warn or error" ;; esac
[[ "$wait_s" =~ ^[0-9]+$ ]] || die "--wait $wait_s: not a number of seconds"

if [[ -z "$binary" ]]; then
	if [[ -x "$here/cairn" ]]; then
		binary="$here/cairn"
	else
		binary="$here/../bin/cairn"
	fi
fi
[[ -f "$binary" && -x "$binary" ]] || die "binary $binary not found or not executable (run make build, or give --binary)"
[[ -n "$unit" ]] || unit="$here/cairn.service"
[[ -f "$unit" ]] || die "unit $unit not found (give --unit)"

root="${root%/}"
real=1
if [[ -n "$root" ]]; then
	real=0
	mkdir -p "$root"
	root="$(cd "$root" && pwd)"
	[[ "$root" != "/" ]] || { root=""; real=1; }
fi
if [[ $real -eq 1 && $EUID -ne 0 ]]; then
	die "installing into / needs root (use sudo, or --root DIR for a scratch install)"
fi

# An IPv6 address needs brackets in host:port.
hostport() {
	if [[ "$1" == *:* ]]; then
		echo "[$1]:$2"
	else
		echo "$1:$2"
	fi
}
raft_addr="$(hostport "$address" "$raft_port")"
http_addr="$(hostport "$address" "$http_port")"
http_url="$scheme://$http_addr"

user=cairn
bin_path=/usr/local/bin/cairn
unit_path=/etc/systemd/system/cairn.service
conf_dir=/etc/cairn
conf_path=$conf_dir/cairn.yaml
data_dir=/var/lib/cairn
profile_path=/etc/profile.d/cairn.sh
tls_path=$conf_dir/tls
ca_path=$tls_path/ca.pem
cert_path=$tls_path/member-$id.pem
key_path=$tls_path/member-$id-key.pem

changed=0
# install_file SRC DEST MODE [GROUP]: copies when the content differs, by a
# rename, so a reader sees the old file or the new one, never a part. With
# GROUP (and a real install) the file is root:GROUP before it appears.
# Sets copied=1 if it copied, copied=0 if DEST was already the same.
copied=0
install_file() {
	local src="$1" dest="$root$2" mode="$3" group="${4:-}"
	mkdir -p "$(dirname "$dest")"
	if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then
		chmod "$mode" "$dest"
		if [[ -n "$group" && $real -eq 1 ]]; then
			chown "root:$group" "$dest"
		fi
		copied=0
		return
	fi
	local tmp
	tmp="$(mktemp "$dest.XXXXXX")"
	cat "$src" >"$tmp"
	chmod "$mode" "$tmp"
	if [[ -n "$group" && $real -eq 1 ]]; then
		chown "root:$group" "$tmp"
	fi
	mv -f "$tmp" "$dest"
	copied=1
	echo "provision.sh: installed $dest"
}

# The member's configuration: keys are `cairn node run` flag names.
conf="$(mktemp)"
profile="$(mktemp)"
trap 'rm -f "$conf" "$profile"' EXIT
{
	echo "# cairn member $id, written by deploy/provision.sh."
	echo "# Keys are \`cairn node run\` flag names (cairn node run --help); command-line"
	echo "# flags and CAIRN_* environment variables override them."
	echo "id: \"$id\""
	echo "data-dir: \"$data_dir\""
	echo "raft-addr: \"$raft_addr\""
	echo "http-addr: \"$http_addr\""
	if [[ $bootstrap -eq 1 ]]; then
		echo "# First member of a new cluster; ignored once $data_dir holds raft state."
		echo "bootstrap: true"
	else
		echo "# Members to ask to add this one (retried until one accepts; a no-op once a member)."
		echo "join: \"$join\""
	fi
	if [[ $nonvoter -eq 1 ]]; then
		echo "non-voter: true"
	fi
	if [[ $insecure -eq 1 ]]; then
		echo "# No TLS: anyone who reaches the ports can read, write and disrupt the cluster."
		echo "insecure: true"
	else
		echo "# TLS for raft, between members and for clients (client certificates"
		echo "# required), from \`cairn cert\` files; rewritten files are reloaded within a second."
		echo "peer-cert-file: \"$cert_path\""
		echo "peer-key-file: \"$key_path\""
		echo "peer-trusted-ca-file: \"$ca_path\""
	fi
	echo "log-level: \"$log_level\""
} >"$conf"

# The CLI's defaults for login shells on this host: the cluster, and with
# TLS the CA and this member's certificate (readable by root and the cairn
# group only: `sudo -i cairn ...`).
cluster="$http_url"
if [[ -n "$join" ]]; then
	cluster="$cluster,$join"
fi
{
	echo "export CAIRN_CLUSTER=\"$cluster\""
	if [[ $insecure -eq 0 ]]; then
		echo "export CAIRN_CACERT=\"$ca_path\" CAIRN_CERT=\"$cert_path\" CAIRN_KEY=\"$key_path\""
	fi
} >"$profile"

if [[ $real -eq 1 ]]; then
	if ! getent group "$user" >/dev/null; then
		groupadd --system "$user"
		echo "provision.sh: created group $user"
	fi
	if ! getent passwd "$user" >/dev/null; then
		useradd --system --gid "$user" --home-dir "$data_dir" --no-create-home \
			--shell /usr/sbin/nologin --comment "cairn cluster member" "$user"
		echo "provision.sh: created user $user"
	fi
fi

mkdir -p "$root$conf_dir"
chmod 0750 "$root$conf_dir"
if [[ $real -eq 1 ]]; then
	chown root:"$user" "$conf_dir"
fi
# The TLS files first: a member (re)started below finds them in place. A
# change of these alone needs no restart.
if [[ ${#tls_files[@]} -gt 0 ]]; then
	mkdir -p "$root$tls_path"
	chmod 0750 "$root$tls_path"
	if [[ $real -eq 1 ]]; then
		chown root:"$user" "$tls_path"
	fi
	tls_changed=0
	install_file "$tls_dir/ca.pem" "$ca_path" 0644 "$user"
	tls_changed=$((tls_changed | copied))
	install_file "$tls_dir/member-$id.pem" "$cert_path" 0644 "$user"
	tls_changed=$((tls_changed | copied))
	install_file "$tls_dir/member-$id-key.pem" "$key_path" 0640 "$user"
	tls_changed=$((tls_changed | copied))
	if [[ $tls_changed -eq 1 ]]; then
		echo "provision.sh: TLS files installed; a running member reloads them within a second"
	fi
fi
install_file "$binary" "$bin_path" 0755
changed=$((changed | copied))
install_file "$unit" "$unit_path" 0644
changed=$((changed | copied))
install_file "$conf" "$conf_path" 0640 "$user"
changed=$((changed | copied))
install_file "$profile" "$profile_path" 0644
mkdir -p "$root$data_dir"
chmod 0750 "$root$data_dir"
if [[ $real -eq 1 ]]; then
	chown "$user:$user" "$data_dir"
fi

if [[ $real -eq 0 ]]; then
	echo "provision.sh: installed member $id under $root (no user, chown or systemctl under --root)"
	exit 0
fi

command -v systemctl >/dev/null || die "systemctl not found: this script needs systemd"
systemctl daemon-reload
systemctl enable cairn.service
if [[ $start -eq 0 ]]; then
	echo "provision.sh: member $id installed and enabled, not started (--no-start)"
	exit 0
fi
if [[ $changed -eq 1 ]] && systemctl is-active --quiet cairn.service; then
	systemctl restart cairn.service
else
	systemctl start cairn.service
fi

if [[ $wait_s -eq 0 ]]; then
	echo "provision.sh: member $id started"
	exit 0
fi
deadline=$((SECONDS + wait_s))
health=("$bin_path" --timeout 5s)
if [[ $insecure -eq 0 ]]; then
	health+=(--cacert "$ca_path" --cert "$cert_path" --key "$key_path")
fi
health+=(node health --endpoint "$http_url")
until "${health[@]}" >/dev/null 2>&1; do
	if [[ $SECONDS -ge $deadline ]]; then
		systemctl --no-pager status cairn.service || true
		journalctl --no-pager -u cairn.service -n 30 || true
		die "member $id is not ready after ${wait_s}s (${health[*]})"
	fi
	sleep 2
done
echo "provision.sh: member $id ready at $http_url (raft $raft_addr)"
