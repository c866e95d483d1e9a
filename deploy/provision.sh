#!/usr/bin/env bash
# deploy/provision.sh installs one cairn cluster member on a systemd host:
# the binary, a dedicated system user, the data directory, the systemd unit
# (deploy/cairn.service) and the member's config file, then enables and
# starts the service and waits until the member is ready. The Vagrantfile
# runs it on every VM; it works the same on any Debian-like host.
#
#   provision.sh --id n1 --address 192.168.56.11 --bootstrap
#   provision.sh --id n2 --address 192.168.56.12 --join http://192.168.56.11:8001
#
# It is safe to run again: --bootstrap is ignored once the data directory
# holds raft state, and --join is a no-op for a current member. The service
# is restarted only when the binary, unit or config changed.
#
# With --root DIR (or DESTDIR=DIR) it lays the same files down under DIR and
# touches nothing outside it: no user is created, nothing is chowned, and
# systemctl is not run. scripts/vagrant-check.sh uses that to test it.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: provision.sh --id ID --address IP (--bootstrap | --join URL[,URL...]) [options]

  --id ID            member id, unique in the cluster (n1, n2, ...)
  --address IP       this host's private address; raft listens on IP:RAFT_PORT,
                     HTTP on IP:HTTP_PORT, and other members and clients dial those
  --bootstrap        this is the first member of a new cluster
  --join URLS        comma-separated HTTP URLs of existing members to join through
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

id="" address="" bootstrap=0 join="" nonvoter=0
raft_port=7001 http_port=8001 log_level=info
binary="" unit="" root="${DESTDIR:-/}" start=1 wait_s=120

need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
	case "$1" in
	--id) need "$@"; id="$2"; shift 2 ;;
	--address) need "$@"; address="$2"; shift 2 ;;
	--bootstrap) bootstrap=1; shift ;;
	--join) need "$@"; join="$2"; shift 2 ;;
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
http_url="http://$http_addr"

user=cairn
bin_path=/usr/local/bin/cairn
unit_path=/etc/systemd/system/cairn.service
conf_dir=/etc/cairn
conf_path=$conf_dir/cairn.yaml
data_dir=/var/lib/cairn
profile_path=/etc/profile.d/cairn.sh

changed=0
# install_file SRC DEST MODE: copies when the content differs.
install_file() {
	local src="$1" dest="$root$2" mode="$3"
	mkdir -p "$(dirname "$dest")"
	if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then
		chmod "$mode" "$dest"
		return
	fi
	local tmp
	tmp="$(mktemp "$dest.XXXXXX")"
	cat "$src" >"$tmp"
	chmod "$mode" "$tmp"
	mv -f "$tmp" "$dest"
	changed=1
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
	echo "log-level: \"$log_level\""
} >"$conf"

# The CLI's default cluster for shells on this host.
cluster="$http_url"
if [[ -n "$join" ]]; then
	cluster="$cluster,$join"
fi
echo "export CAIRN_CLUSTER=\"$cluster\"" >"$profile"

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

install_file "$binary" "$bin_path" 0755
install_file "$unit" "$unit_path" 0644
install_file "$conf" "$conf_path" 0640
install_file "$profile" "$profile_path" 0644
mkdir -p "$root$data_dir"
chmod 0750 "$root$data_dir" "$root$conf_dir"
if [[ $real -eq 1 ]]; then
	chown root:"$user" "$conf_dir" "$conf_path"
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
until "$bin_path" --timeout 5s node health --endpoint "$http_url" >/dev/null 2>&1; do
	if [[ $SECONDS -ge $deadline ]]; then
		systemctl --no-pager status cairn.service || true
		journalctl --no-pager -u cairn.service -n 30 || true
		die "member $id is not ready after ${wait_s}s (cairn node health --endpoint $http_url)"
	fi
	sleep 2
done
echo "provision.sh: member $id ready at $http_url (raft $raft_addr)"
