#!/usr/bin/env bash
# scripts/bench-cluster.sh puts cairn and etcd side by side on this machine
# (issue 8): a 3-member cluster of each on loopback, fsync on (both
# systems' defaults), closed-loop clients, 256-byte values, keys uniform
# over 100,000, requests rotated over all three members (followers forward
# writes to the leader), the same workloads for both, and a markdown table
# at the end. Beside throughput and latency the table shows the CPU the
# three members of each system used per operation (from /proc/PID/stat),
# which the machine's noise disturbs far less than ops/s.
#
# It also puts variants of cairn side by side, each its own 3-member
# cluster: the working tree against a git revision (--cairn-baseline), or
# against itself with extra node flags (--cairn-variant), with or without
# etcd (--no-etcd). Every system is measured in turn in each round, and the
# table gives each variant's ops/s and CPU per op over the working tree's.
#
#   scripts/bench-cluster.sh [options]        (or: make bench-cluster BENCH_DURATION=2s ...)
#
# Options (and the environment variables that set them):
#   --duration D      BENCH_DURATION    measured time per run (default 10s)
#   --warmup D        BENCH_WARMUP      unmeasured time before each run (default 1s)
#   --rounds N        BENCH_ROUNDS      runs per workload and system, alternating
#                                       over the systems: cairn, baselines,
#                                       variants, etcd, cairn ... (default 1);
#                                       the table shows medians
#   --workloads LIST  BENCH_WORKLOADS   comma-separated, from: put1 put64 put256
#                                       get64 stale64 (default: all, in that order)
#   --keys N          BENCH_KEYS        distinct keys (default 100000)
#   --value-size N    BENCH_VALUE_SIZE  value bytes (default 256)
#   --raw-dir DIR     BENCH_RAW_DIR     keep every run's JSON (and the table) in DIR
#   --data-dir DIR    BENCH_DATA_DIR    where the temporary directory with all
#                                       clusters' data goes (default $TMPDIR or
#                                       /tmp; put it on the disk to measure)
#   --cairn-flags S   BENCH_CAIRN_FLAGS extra `cairn node run` flags for every
#                                       cairn cluster, e.g. "--fsm-sync"
#   --etcd-flags S    BENCH_ETCD_FLAGS  extra etcd flags
#   --keep-work       BENCH_KEEP_WORK=1 keep the temporary directory (logs, data)
#   --cairn-routing R BENCH_CAIRN_ROUTING rotate (default: every request to the
#                                       next member, as etcd's client does) or
#                                       client (the Go client's own routing:
#                                       writes and linearizable reads to the leader)
#   --cairn-baseline REV  BENCH_CAIRN_BASELINE (space-separated REVs)
#                                       also run cairn built from git revision
#                                       REV (git archive, then go build), as the
#                                       system cairn@<short hash>; repeatable
#   --cairn-variant LABEL=FLAGS  BENCH_CAIRN_VARIANTS (';'-separated)
#                                       also run the working tree's cairn with
#                                       FLAGS (split at spaces) added to its node
#                                       flags, as the system LABEL; repeatable.
#                                       An empty FLAGS ("again=") runs a second
#                                       copy, which shows the noise
#   --no-etcd         BENCH_NO_ETCD=1   leave etcd out (it need not be installed)
#   --cairn-tls       BENCH_CAIRN_TLS=1 also run the working tree's cairn over TLS
#                                       (raft, member-to-member and client
#                                       traffic; certificates from `cairn cert`),
#                                       as the system tls, driven over HTTPS with
#                                       a client certificate
#   --cairn-auth      BENCH_CAIRN_AUTH=1 also run it over TLS with access control
#                                       on, as the system tls-auth, driven by a
#                                       user with readwrite on every key (bearer
#                                       tokens, checked on every request and at
#                                       apply)
#   --cairn-mirror    BENCH_CAIRN_MIRROR=1 also run the working tree's cairn with a
#                                       standby following it (issue 18), as the
#                                       system cairn+standby (and tls+standby
#                                       with --cairn-tls): see "Standbys" below
#   --mirror-members N  BENCH_MIRROR_MEMBERS  the standby's members (1 or 3,
#                                       default 1)
#   --mirror-nice N   BENCH_MIRROR_NICE   run the standby's members under
#                                       `nice -n N` (1-19; default none): on a
#                                       machine shared with the source, the
#                                       standby then takes mostly the CPU the
#                                       source leaves idle, the nearest this
#                                       machine comes to a standby of its own
#                                       (the disk stays shared)
#   --mirror-data-dir DIR  BENCH_MIRROR_DATA_DIR  the standby's data
#                                       directories under DIR (default: with
#                                       the others): another disk, or a tmpfs
#                                       (/dev/shm), so that its fsyncs do not
#                                       queue behind the source's
#
# Standbys (--cairn-mirror): the system cairn+standby is a second 3-member
# cluster with the same binary and node flags as cairn, measured right
# after it in every round, so that the rounds alternate between a source
# without and one with a standby. Its standby is a cluster of its own (1
# or 3 members, own data directories, the same node flags) made a standby
# of it with `cairn mirror start` when the clusters start; it follows the
# fill, and before each run of cairn+standby the script waits until it has
# caught up. During the run the standby's GET /v1/mirror/status and the
# source members' GET /v1/status are polled every 250 ms (curl): the lag
# is the source's highest revision minus the standby's head (an upper
# bound: the source is read after the standby), beside the lag in
# revisions and in seconds that the standby reports itself. The source
# members of cairn answer the same polls during its runs (the standby's
# part aside). After the run the script waits (up to 120 s) until the
# standby's head reaches the source's. The standby's CPU is measured apart
# from the source members': the table's CPU/op of cairn+standby is the
# source's alone, and a summary per workload gives the source's ops/s and
# CPU/op with and without a standby (medians and their ratio), the
# standby's CPU per source op, the largest lag and the catch-up after each
# round. Every process shares this machine's CPUs and disk: the ops/s
# ratio includes what the standby (and the poller's standby part) take
# from the source, while the source members' CPU/op with and without a
# standby is what carries over to a standby on its own machine. With
# --cairn-tls, tls+standby does the same over TLS (the standby trusts the
# source with --mirror-ca-file and presents the client certificate);
# tls-auth gets no standby.
#
# A flag given on the command line replaces its variable; the first
# --cairn-baseline or --cairn-variant replaces the variable's list.
#
# Workloads: putN is N clients writing; get64 is 64 clients reading
# linearizably; stale64 is 64 clients reading each member's local state
# (cairn's consistency=stale, etcd's serializable). Before the first get
# workload every cluster gets every key written once (64 clients), and the
# fill rate is printed too. Loads come from `cairn bench --rotate` and from
# bench/etcdbench (etcd's official Go client over gRPC, its own Go module),
# which share flags and the JSON output. Every cairn system, a baseline's
# too, is driven by the working tree's `cairn bench`, so that only the
# members differ.
#
# etcd comes from Debian's etcd-server package (3.4), installed with apt-get
# when `etcd` is not on PATH (with sudo unless root). Every process this
# script starts is stopped on exit, by pid, also on failure or Ctrl-C, and
# the temporary directory (baselines' sources and binaries included) is
# removed unless --keep-work.
# Exit status: 0 when every run succeeded without errors, 1 otherwise.
set -euo pipefail

duration="${BENCH_DURATION:-10s}"
warmup="${BENCH_WARMUP:-1s}"
rounds="${BENCH_ROUNDS:-1}"
workloads="${BENCH_WORKLOADS:-put1,put64,put256,get64,stale64}"
keys="${BENCH_KEYS:-100000}"
vsize="${BENCH_VALUE_SIZE:-256}"
raw_dir="${BENCH_RAW_DIR:-}"
data_dir="${BENCH_DATA_DIR:-${TMPDIR:-/tmp}}"
cairn_flags="${BENCH_CAIRN_FLAGS:-}"
etcd_flags="${BENCH_ETCD_FLAGS:-}"
keep_work="${BENCH_KEEP_WORK:-0}"
cairn_routing="${BENCH_CAIRN_ROUTING:-rotate}"
no_etcd="${BENCH_NO_ETCD:-0}"
cairn_tls="${BENCH_CAIRN_TLS:-0}"
cairn_auth="${BENCH_CAIRN_AUTH:-0}"
cairn_mirror="${BENCH_CAIRN_MIRROR:-0}"
mirror_members="${BENCH_MIRROR_MEMBERS:-1}"
mirror_nice="${BENCH_MIRROR_NICE:-}"
mirror_data_dir="${BENCH_MIRROR_DATA_DIR:-}"
read -r -a baselines <<<"${BENCH_CAIRN_BASELINE:-}"
variants=()
if [[ -n "${BENCH_CAIRN_VARIANTS:-}" ]]; then
	IFS=';' read -r -a variants <<<"$BENCH_CAIRN_VARIANTS"
fi
baselines_given=0
variants_given=0

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-2}"
}
while [[ $# -gt 0 ]]; do
	opt="${1%%=*}"
	case "$opt" in
	--keep-work | --no-etcd | --cairn-tls | --cairn-auth | --cairn-mirror | -h | --help) ;;
	--duration | --warmup | --rounds | --workloads | --keys | --value-size | --raw-dir | --data-dir | --cairn-flags | --etcd-flags | --cairn-routing | --cairn-baseline | --cairn-variant | --mirror-members | --mirror-nice | --mirror-data-dir)
		if [[ "$1" == *=* ]]; then
			val="${1#*=}"
		elif [[ $# -ge 2 ]]; then
			val="$2"
			shift
		else
			echo "bench-cluster: $opt needs a value" >&2
			usage
		fi
		;;
	esac
	shift
	case "$opt" in
	--duration) duration="$val" ;;
	--warmup) warmup="$val" ;;
	--rounds) rounds="$val" ;;
	--workloads) workloads="$val" ;;
	--keys) keys="$val" ;;
	--value-size) vsize="$val" ;;
	--raw-dir) raw_dir="$val" ;;
	--data-dir) data_dir="$val" ;;
	--cairn-flags) cairn_flags="$val" ;;
	--etcd-flags) etcd_flags="$val" ;;
	--keep-work) keep_work=1 ;;
	--cairn-routing) cairn_routing="$val" ;;
	--no-etcd) no_etcd=1 ;;
	--cairn-tls) cairn_tls=1 ;;
	--cairn-auth) cairn_auth=1 ;;
	--cairn-mirror) cairn_mirror=1 ;;
	--mirror-members) mirror_members="$val" ;;
	--mirror-nice) mirror_nice="$val" ;;
	--mirror-data-dir) mirror_data_dir="$val" ;;
	--cairn-baseline)
		[[ $baselines_given -eq 1 ]] || baselines=()
		baselines_given=1
		baselines+=("$val")
		;;
	--cairn-variant)
		[[ $variants_given -eq 1 ]] || variants=()
		variants_given=1
		variants+=("$val")
		;;
	-h | --help) usage 0 ;;
	*)
		echo "bench-cluster: unknown option $opt" >&2
		usage
		;;
	esac
done

die() {
	echo "bench-cluster: $*" >&2
	exit 1
}
# Directories given relative to where the script was started from.
[[ -z "$raw_dir" || "$raw_dir" == /* ]] || raw_dir="$PWD/$raw_dir"
[[ "$data_dir" == /* ]] || data_dir="$PWD/$data_dir"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds $rounds: want a positive integer"
[[ "$keys" =~ ^[1-9][0-9]*$ ]] || die "--keys $keys: want a positive integer"
[[ "$vsize" =~ ^[0-9]+$ ]] || die "--value-size $vsize: want a number"
[[ "$cairn_routing" == rotate || "$cairn_routing" == client ]] || die "--cairn-routing $cairn_routing: want rotate or client"
[[ "$no_etcd" == 0 || "$no_etcd" == 1 ]] || die "BENCH_NO_ETCD=$no_etcd: want 0 or 1"
[[ "$cairn_tls" == 0 || "$cairn_tls" == 1 ]] || die "BENCH_CAIRN_TLS=$cairn_tls: want 0 or 1"
[[ "$cairn_auth" == 0 || "$cairn_auth" == 1 ]] || die "BENCH_CAIRN_AUTH=$cairn_auth: want 0 or 1"
[[ "$cairn_mirror" == 0 || "$cairn_mirror" == 1 ]] || die "BENCH_CAIRN_MIRROR=$cairn_mirror: want 0 or 1"
[[ "$mirror_members" == 1 || "$mirror_members" == 3 ]] || die "--mirror-members $mirror_members: want 1 or 3"
[[ -z "$mirror_nice" || ( "$mirror_nice" =~ ^[0-9]+$ && "$mirror_nice" -ge 1 && "$mirror_nice" -le 19 ) ]] || die "--mirror-nice $mirror_nice: want 1 to 19"

# ---------------------------------------------------------------------------
# The systems, in the order each round runs them: the working tree's cairn
# ("cairn"), the baselines, the flag variants, etcd. A cairn system has a
# binary (a baseline's is built further down) and node flags.
commit="$(git describe --always --dirty 2>/dev/null || echo unknown)"
systems=(cairn)
declare -A sys_kind=([cairn]=cairn) sys_flags=([cairn]="$cairn_flags") sys_desc=()
declare -A sys_rev=() sys_bin=() sys_eps=() sys_tls=() sys_client=() sys_auth=()
# A system with a standby: sys_standby[S] is the system measured without one
# (cairn+standby's is cairn), sys_polled[that system] is 1; sys_standby_eps[S]
# the standby's members.
declare -A sys_standby=() sys_standby_eps=() sys_polled=()
add_system() { # add_system NAME KIND
	[[ -z "${sys_kind[$1]:-}" ]] || die "two systems named $1"
	systems+=("$1")
	sys_kind[$1]="$2"
}
standby_desc="a standby of $mirror_members member$([[ $mirror_members -eq 1 ]] || echo s) following it${mirror_nice:+ (under nice -n $mirror_nice)}${mirror_data_dir:+ (data in $mirror_data_dir)}"
if [[ $cairn_mirror -eq 1 ]]; then
	add_system cairn+standby cairn
	sys_flags[cairn+standby]="$cairn_flags"
	sys_standby[cairn+standby]=cairn
	sys_polled[cairn]=1
	sys_desc[cairn+standby]="the working tree's cairn with $standby_desc"
fi
for rev in "${baselines[@]}"; do
	full="$(git rev-parse --verify --quiet "$rev^{commit}")" || die "--cairn-baseline $rev: not a commit in this repository"
	name="cairn@$(git rev-parse --short "$full")"
	add_system "$name" cairn
	sys_rev[$name]="$full"
	sys_flags[$name]="$cairn_flags"
	sys_desc[$name]="cairn built from $rev ($full)"
done
for v in "${variants[@]}"; do
	[[ "$v" == *=* ]] || die "--cairn-variant $v: want LABEL=FLAGS"
	name="${v%%=*}"
	[[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._@+-]*$ ]] || die "--cairn-variant $v: the label may hold letters, digits and ._@+- only"
	[[ "$name" != etcd ]] || die "--cairn-variant $v: etcd is taken"
	add_system "$name" cairn
	sys_flags[$name]="${cairn_flags:+$cairn_flags }${v#*=}"
	sys_desc[$name]="the working tree's cairn with ${v#*=}"
	[[ -n "${v#*=}" ]] || sys_desc[$name]="the working tree's cairn again"
done
if [[ $cairn_tls -eq 1 ]]; then
	add_system tls cairn
	sys_flags[tls]="$cairn_flags"
	sys_tls[tls]=1
	sys_desc[tls]="the working tree's cairn over TLS (members and clients)"
	if [[ $cairn_mirror -eq 1 ]]; then
		add_system tls+standby cairn
		sys_flags[tls+standby]="$cairn_flags"
		sys_tls[tls+standby]=1
		sys_standby[tls+standby]=tls
		sys_polled[tls]=1
		sys_desc[tls+standby]="the working tree's cairn over TLS with $standby_desc over TLS"
	fi
fi
if [[ $cairn_auth -eq 1 ]]; then
	add_system tls-auth cairn
	sys_flags[tls-auth]="$cairn_flags"
	sys_tls[tls-auth]=1
	sys_auth[tls-auth]=1
	sys_desc[tls-auth]="the working tree's cairn over TLS with access control on (a user with readwrite on every key)"
fi
[[ $no_etcd -eq 1 ]] || add_system etcd etcd
width=0
for s in "${systems[@]}"; do
	[[ ${#s} -le $width ]] || width=${#s}
done

# secs D: a Go duration (1h2m3.5s, 500ms) in whole seconds, rounded up.
secs() {
	local d="$1" total=0 n u
	[[ "$d" =~ ^([0-9]+(\.[0-9]+)?(h|m|s|ms|us|ns))+$ ]] || die "bad duration $1 (use e.g. 10s, 500ms, 1m)"
	while [[ -n "$d" ]]; do
		[[ "$d" =~ ^([0-9]+(\.[0-9]+)?)(ms|us|ns|h|m|s)(.*)$ ]]
		n="${BASH_REMATCH[1]}" u="${BASH_REMATCH[3]}" d="${BASH_REMATCH[4]}"
		total=$(awk -v t="$total" -v n="$n" -v u="$u" 'BEGIN {
			f = (u == "h") ? 3600 : (u == "m") ? 60 : (u == "s") ? 1 : (u == "ms") ? 1e-3 : (u == "ns") ? 1e-9 : 1e-6
			print t + n * f }')
	done
	awk -v t="$total" 'BEGIN { s = int(t); if (s < t) s++; print s }'
}
duration_s=$(secs "$duration")
warmup_s=$(secs "$warmup")
[[ $duration_s -gt 0 ]] || die "--duration must be positive"
# Time limits of one run and of a fill, past which the tool is killed.
run_limit=$((warmup_s + duration_s + 120))
fill_limit=3600

# workload name -> op:clients:consistency
declare -A spec=(
	[put1]="put:1:linearizable"
	[put64]="put:64:linearizable"
	[put256]="put:256:linearizable"
	[get64]="get:64:linearizable"
	[stale64]="get:64:stale"
)
declare -A label=(
	[put1]="put, 1 client"
	[put64]="put, 64 clients"
	[put256]="put, 256 clients"
	[get64]="linearizable get, 64 clients"
	[stale64]="stale get, 64 clients"
)
IFS=',' read -r -a wls <<<"$workloads"
[[ ${#wls[@]} -gt 0 ]] || die "--workloads is empty"
for w in "${wls[@]}"; do
	[[ -n "${spec[$w]:-}" ]] || die "unknown workload '$w' (use put1, put64, put256, get64, stale64)"
done

# ---------------------------------------------------------------------------
# etcd, installed from apt when missing (and only when it is measured).
etcd_version=""
if [[ $no_etcd -eq 0 ]]; then
	if ! command -v etcd >/dev/null; then
		command -v apt-get >/dev/null || die "etcd is not installed and there is no apt-get: install etcd 3.4 yourself"
		sudo=()
		if [[ $EUID -ne 0 ]]; then
			sudo=(sudo)
		fi
		echo "etcd not found: installing Debian's etcd-server with apt-get" >&2
		"${sudo[@]}" apt-get update -qq >&2
		# Where systemd runs, the package may start its own etcd on 2379/2380;
		# the clusters here use other ports.
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >&2
		command -v etcd >/dev/null || die "apt-get installed etcd-server but etcd is not on PATH"
	fi
	etcd_bin="$(command -v etcd)"
	etcd_version="$(etcd --version 2>/dev/null | awk '/^etcd Version:/ {print $3}')"
	[[ "$etcd_version" == 3.4.* ]] || echo "bench-cluster: note: etcd $etcd_version, not the 3.4 the comparison is meant for" >&2
fi

# ---------------------------------------------------------------------------
mkdir -p "$data_dir"
work="$(mktemp -d "$data_dir/cairn-bench-cluster.XXXXXX")"
if [[ "$(stat -f -c %T "$work")" == tmpfs ]]; then
	echo "bench-cluster: warning: $work is on tmpfs, where fsync costs nothing; use --data-dir on a disk" >&2
fi
mirror_work=""
if [[ -n "$mirror_data_dir" ]]; then
	mkdir -p "$mirror_data_dir"
	mirror_work="$(mktemp -d "$mirror_data_dir/cairn-bench-standby.XXXXXX")"
fi
pids=()
names=()
members_of=() # the system each pid in pids belongs to
bench_pid=""
poll_pid=""
# cleanup runs from the EXIT trap: it stops only the processes this script
# started, by pid (TERM, then KILL after 15 s): the members, the load
# generator when a run is under way, and a standby's lag poller.
# shellcheck disable=SC2317
cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	if [[ -n "$poll_pid" ]]; then
		kill -TERM "$poll_pid" 2>/dev/null || true
		wait "$poll_pid" 2>/dev/null || true
	fi
	if [[ -n "$bench_pid" ]]; then
		# timeout passes the TERM on to the load generator.
		kill -TERM "$bench_pid" 2>/dev/null || true
		wait "$bench_pid" 2>/dev/null || true
	fi
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for _ in $(seq 150); do
		local alive=0
		for pid in "${pids[@]}"; do
			if kill -0 "$pid" 2>/dev/null; then
				alive=1
			fi
		done
		[[ $alive -eq 1 ]] || break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			echo "bench-cluster: pid $pid did not stop on SIGTERM: killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ $keep_work -eq 1 ]]; then
		echo "bench-cluster: kept $work${mirror_work:+ and $mirror_work}" >&2
	else
		rm -rf "$work"
		[[ -z "$mirror_work" ]] || rm -rf "$mirror_work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

raw="$work/raw"
if [[ -n "$raw_dir" ]]; then
	mkdir -p "$raw_dir"
	raw="$(cd "$raw_dir" && pwd)"
fi
mkdir -p "$raw"

echo "building cairn$([[ $no_etcd -eq 1 ]] || echo " and bench/etcdbench")" >&2
CGO_ENABLED=0 go build -trimpath -o "$work/cairn" ./cmd/cairn
cairn="$work/cairn"
sys_bin[cairn]="$cairn"
if [[ $no_etcd -eq 0 ]]; then
	(cd bench/etcdbench && CGO_ENABLED=0 go build -trimpath -o "$work/etcdbench" .)
fi
etcdbench="$work/etcdbench"
# A baseline's source comes from git archive (which touches neither the
# repository nor its worktrees) into the temporary directory, is built
# there and removed again; the binary stays until the exit.
for s in "${systems[@]}"; do
	[[ "${sys_kind[$s]}" == cairn ]] || continue
	if [[ -z "${sys_rev[$s]:-}" ]]; then
		sys_bin[$s]="$cairn"
		continue
	fi
	echo "building $s from ${sys_rev[$s]}" >&2
	src="$work/src-$s"
	mkdir -p "$src"
	git archive --format=tar "${sys_rev[$s]}" | tar -x -C "$src"
	(cd "$src" && CGO_ENABLED=0 go build -trimpath -o "$work/bin-$s" ./cmd/cairn) || die "building $s failed"
	rm -rf "$src"
	sys_bin[$s]="$work/bin-$s"
done

# Ports come from below the kernel's ephemeral range: a port inside it can be
# taken between this check and the bind by any outgoing connection.
read -r eph_low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph_low=32768
[[ "$eph_low" -gt 12000 ]] || eph_low=32768
used=" "
# port: sets $port to a free loopback port not handed out before. (Not
# called as $(port): the list of ports handed out must survive the call.)
port() {
	local p
	while :; do
		p=$((10000 + RANDOM % (eph_low - 10000)))
		[[ "$used" == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used+="$p "
			port=$p
			return
		fi
	done
}

start() { # start SYSTEM NAME CMD...: run CMD in the background, output to $work/NAME.log
	local system="$1" name="$2"
	shift 2
	"$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
	members_of+=("$system")
}

# fail_logs: the last lines of every member's log, for a failure.
fail_logs() {
	local n
	for n in "${names[@]}"; do
		echo "--- $n ($work/$n.log)" >&2
		tail -15 "$work/$n.log" >&2 || true
	done
}

# wait_for WHAT SECONDS CMD...: run CMD until it succeeds; fail when a
# member has exited.
wait_for() {
	local what="$1" limit="$2" i
	local deadline=$((SECONDS + limit))
	shift 2
	until "$@" >/dev/null 2>&1; do
		for i in "${!pids[@]}"; do
			if ! kill -0 "${pids[i]}" 2>/dev/null; then
				fail_logs
				die "${names[i]} exited while waiting for $what"
			fi
		done
		if [[ $SECONDS -ge $deadline ]]; then
			fail_logs
			die "$what not ready after $limit s"
		fi
		sleep 0.2
	done
}

# --- TLS: one CA, members n1..n3 (a standby's s1..s3) and the client
# "bench", shared by every TLS system (made by `cairn cert` on first use).
tls_certs() {
	local certs="$work/certs" i
	[[ ! -f "$certs/ca.pem" ]] || return 0
	"$cairn" cert ca create --dir "$certs" >/dev/null
	for i in 1 2 3; do
		"$cairn" cert member create --dir "$certs" --id "n$i" --host 127.0.0.1 >/dev/null
		"$cairn" cert member create --dir "$certs" --id "s$i" --host 127.0.0.1 >/dev/null
	done
	"$cairn" cert client create --dir "$certs" --name bench >/dev/null
}

# --- cairn: n1 bootstraps, n2 and n3 join.
start_cairn() { # start_cairn SYSTEM: its three members; sets sys_eps[SYSTEM]
	local system="$1" i craft role flags scheme=http certs="$work/certs"
	local -a http tlsflags client=()
	read -r -a flags <<<"${sys_flags[$system]}"
	if [[ -n "${sys_tls[$system]:-}" ]]; then
		tls_certs
		scheme=https
		client=(--cacert "$certs/ca.pem" --cert "$certs/client-bench.pem" --key "$certs/client-bench-key.pem")
	fi
	sys_client[$system]="${client[*]}"
	for i in 1 2 3; do
		port
		http[i]=$port
		port
		craft=$port
		role=(--bootstrap)
		[[ $i -eq 1 ]] || role=(--join "$scheme://127.0.0.1:${http[1]}")
		tlsflags=()
		[[ $scheme == http ]] || tlsflags=(--peer-cert-file "$certs/member-n$i.pem" --peer-key-file "$certs/member-n$i-key.pem" --peer-trusted-ca-file "$certs/ca.pem")
		mkdir -p "$work/$system-n$i"
		start "$system" "$system-n$i" "${sys_bin[$system]}" node run --id "n$i" --data-dir "$work/$system-n$i" \
			--raft-addr "127.0.0.1:$craft" --http-addr "127.0.0.1:${http[i]}" --log-level warn \
			"${role[@]}" "${tlsflags[@]}" "${flags[@]}"
	done
	sys_eps[$system]="$scheme://127.0.0.1:${http[1]},$scheme://127.0.0.1:${http[2]},$scheme://127.0.0.1:${http[3]}"
	for i in 1 2 3; do
		wait_for "$system n$i" 60 "$cairn" "${client[@]}" --timeout 2s node health --endpoint "$scheme://127.0.0.1:${http[i]}"
	done
	if [[ -n "${sys_auth[$system]:-}" ]]; then
		# Access control on: root to enable it, and the user the load runs as.
		local -a admin=("$cairn" "${client[@]}" --cluster "${sys_eps[$system]}" --timeout 30s)
		"${admin[@]}" user add root --password-stdin <<<"bench-root" >/dev/null
		"${admin[@]}" user grant root root >/dev/null
		"${admin[@]}" auth enable >/dev/null
		admin=(env CAIRN_USER=root CAIRN_PASSWORD=bench-root "${admin[@]}")
		"${admin[@]}" role add bench >/dev/null
		"${admin[@]}" role grant bench --prefix "" --access readwrite >/dev/null
		"${admin[@]}" user add bench --password-stdin <<<"bench-pass" >/dev/null
		"${admin[@]}" user grant bench bench >/dev/null
		sys_client[$system]="${client[*]} --user bench"
	fi
}

# --- a standby: s1 bootstraps, s2 and s3 join (with --mirror-members 3);
# then `mirror start` makes the cluster a standby of SYSTEM. Its members
# count as the system SYSTEM/standby (cpu_ticks), apart from the source's.
start_standby() { # start_standby SYSTEM: sets sys_standby_eps[SYSTEM]
	local system="$1" i craft role flags scheme=http certs="$work/certs" eps=""
	local sdir
	local -a http tlsflags client nicecmd
	read -r -a flags <<<"${sys_flags[$system]}"
	read -r -a client <<<"${sys_client[$system]}"
	[[ -z "${sys_tls[$system]:-}" ]] || scheme=https
	for ((i = 1; i <= mirror_members; i++)); do
		port
		http[i]=$port
		port
		craft=$port
		role=(--bootstrap)
		[[ $i -eq 1 ]] || role=(--join "$scheme://127.0.0.1:${http[1]}")
		tlsflags=()
		[[ $scheme == http ]] || tlsflags=(--peer-cert-file "$certs/member-s$i.pem" --peer-key-file "$certs/member-s$i-key.pem" --peer-trusted-ca-file "$certs/ca.pem"
			--mirror-ca-file "$certs/ca.pem" --mirror-cert-file "$certs/client-bench.pem" --mirror-key-file "$certs/client-bench-key.pem")
		sdir="$work/$system-s$i"
		[[ -z "$mirror_data_dir" ]] || sdir="$mirror_work/$system-s$i"
		mkdir -p "$sdir"
		nicecmd=()
		[[ -z "$mirror_nice" ]] || nicecmd=(nice -n "$mirror_nice")
		start "$system/standby" "$system-s$i" "${nicecmd[@]}" "${sys_bin[$system]}" node run --id "s$i" --data-dir "$sdir" \
			--raft-addr "127.0.0.1:$craft" --http-addr "127.0.0.1:${http[i]}" --log-level warn \
			"${role[@]}" "${tlsflags[@]}" "${flags[@]}"
		eps+="${eps:+,}$scheme://127.0.0.1:${http[i]}"
	done
	sys_standby_eps[$system]="$eps"
	for ((i = 1; i <= mirror_members; i++)); do
		wait_for "$system's standby s$i" 60 "$cairn" "${client[@]}" --timeout 2s node health --endpoint "$scheme://127.0.0.1:${http[i]}"
	done
	"$cairn" "${client[@]}" --cluster "$eps" --timeout 30s mirror start --source "${sys_eps[$system]}" >/dev/null ||
		die "$system: mirror start on its standby failed"
	wait_for "$system's standby to follow" 60 "$cairn" "${client[@]}" --cluster "$eps" --timeout 5s mirror status --caught-up
}

# mirror_poll SYSTEM: one look at SYSTEM's standby (its first member's GET
# /v1/mirror/status) and then at the source (every member's GET /v1/status),
# in one curl. Prints "state head reported_lag_revisions reported_lag_seconds
# source_revision", the last the highest of the source members' revisions
# (a member that did not answer is left out; "-" when none did). With
# source-only, the source's part alone (for the system without a standby,
# so that its members answer the same requests).
mirror_poll() { # mirror_poll SYSTEM [source-only]
	local system="$1" line state="-" head="-" lrev="-" lsec="-" src="-" first=1 u
	local -a tlsopt=() urls=() eps
	[[ -z "${sys_tls[$system]:-}" ]] || tlsopt=(--cacert "$work/certs/ca.pem" --cert "$work/certs/client-bench.pem" --key "$work/certs/client-bench-key.pem")
	if [[ "${2:-}" == source-only ]]; then
		first=0
	else
		urls=("${sys_standby_eps[$system]%%,*}/v1/mirror/status")
	fi
	IFS=',' read -r -a eps <<<"${sys_eps[$system]}"
	for u in "${eps[@]}"; do urls+=("$u/v1/status"); done
	while IFS= read -r line; do
		if [[ $first -eq 1 ]]; then
			first=0
			[[ "$line" =~ \"state\":\"([a-z]+)\" ]] && state="${BASH_REMATCH[1]}"
			[[ "$line" =~ \"head\":([0-9]+) ]] && head="${BASH_REMATCH[1]}"
			[[ "$line" =~ \"lag_revisions\":([0-9]+) ]] && lrev="${BASH_REMATCH[1]}"
			[[ "$line" =~ \"lag_seconds\":([0-9.e+-]+) ]] && lsec="${BASH_REMATCH[1]}"
		elif [[ "${line%%\"mirror\":*}" =~ \"revision\":([0-9]+) ]]; then
			if [[ "$src" == - || ${BASH_REMATCH[1]} -gt $src ]]; then src="${BASH_REMATCH[1]}"; fi
		fi
	done < <(curl -s --max-time 1 "${tlsopt[@]}" -w '\n' "${urls[@]}" 2>/dev/null)
	echo "$state $head $lrev $lsec $src"
}

# mirror_caught_up SYSTEM: the standby follows and its head is the source's.
# shellcheck disable=SC2317 # called by wait_for
mirror_caught_up() {
	local state head lrev lsec src
	read -r state head lrev lsec src < <(mirror_poll "$1")
	[[ "$state" == following && "$head" != - && "$src" != - && $head -ge $src && "$lrev" == 0 ]]
}

# mirror_follow SYSTEM FILE [source-only]: poll the standby every 250 ms
# until killed, one line "unix_time state head reported_lag_revisions
# reported_lag_seconds source_revision" a poll into FILE.
mirror_follow() {
	while :; do
		echo "$EPOCHREALTIME $(mirror_poll "$1" "${3:-}")"
		sleep 0.25
	done >"$2"
}

# --- etcd: three members of a new cluster. ETCD_* variables would clash
# with the flags (etcd refuses both), so none reach it.
# shellcheck disable=SC2317 # etcd_health is called by wait_for
etcd_health() { # etcd_health PORT: /health says true (a leader, and a quorum read works)
	local body
	body="$(exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && timeout 2 cat <&3)" || return 1
	[[ "$body" == *'"health":"true"'* ]]
}
start_etcd() { # start_etcd: the three members of etcd; sets sys_eps[etcd]
	local i initial eflags etcd_env
	local -a eclient epeer
	for i in 1 2 3; do
		port
		eclient[i]=$port
		port
		epeer[i]=$port
	done
	initial="e1=http://127.0.0.1:${epeer[1]},e2=http://127.0.0.1:${epeer[2]},e3=http://127.0.0.1:${epeer[3]}"
	read -r -a eflags <<<"$etcd_flags"
	mapfile -t etcd_env < <(compgen -e | grep '^ETCD_' || true)
	for i in 1 2 3; do
		start etcd "etcd-e$i" env "${etcd_env[@]/#/--unset=}" "$etcd_bin" --name "e$i" --data-dir "$work/etcd-e$i" \
			--listen-client-urls "http://127.0.0.1:${eclient[i]}" --advertise-client-urls "http://127.0.0.1:${eclient[i]}" \
			--listen-peer-urls "http://127.0.0.1:${epeer[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${epeer[i]}" \
			--initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token cairn-bench-cluster \
			--logger zap --log-outputs stderr --log-level warn "${eflags[@]}"
	done
	sys_eps[etcd]="http://127.0.0.1:${eclient[1]},http://127.0.0.1:${eclient[2]},http://127.0.0.1:${eclient[3]}"
	for i in 1 2 3; do
		wait_for "etcd e$i" 60 etcd_health "${eclient[i]}"
	done
}

for s in "${systems[@]}"; do
	if [[ "${sys_kind[$s]}" == cairn ]]; then
		start_cairn "$s"
		[[ -z "${sys_standby[$s]:-}" ]] || start_standby "$s"
	else
		start_etcd
	fi
done

# ---------------------------------------------------------------------------
# bench SYSTEM LIMIT ARGS...: one run, killed after LIMIT seconds; its
# JSON goes to stdout.
bench() {
	local system="$1" limit="$2"
	shift 2
	local common=(--keys "$keys" --value-size "$vsize" --json)
	# In the background, so that a signal interrupts the wait and the
	# cleanup stops the run too.
	if [[ "${sys_kind[$system]}" == cairn ]]; then
		local routing=() client=()
		[[ "$cairn_routing" == rotate ]] && routing=(--rotate)
		read -r -a client <<<"${sys_client[$system]}"
		timeout --kill-after=10 "$limit" env CAIRN_PASSWORD=bench-pass "$cairn" --cluster "${sys_eps[$system]}" "${client[@]}" bench "${routing[@]}" "${common[@]}" "$@" &
	else
		timeout --kill-after=10 "$limit" "$etcdbench" --endpoints "${sys_eps[$system]}" "${common[@]}" "$@" &
	fi
	bench_pid=$!
	local rc=0
	wait "$bench_pid" || rc=$?
	bench_pid=""
	return "$rc"
}

# field FILE NAME: a number or plain string from a result's JSON (indented,
# one field a line).
field() {
	sed -n "s/^ *\"$2\": *\"\\{0,1\\}\\([^\",]*\\)\"\\{0,1\\},\\{0,1\\}\$/\\1/p" "$1" | head -1
}

# cpu_ticks SYSTEM: the CPU time (user and system, in clock ticks) that
# SYSTEM's three members have used so far, from /proc/PID/stat.
cpu_ticks() {
	local i t=0
	for i in "${!pids[@]}"; do
		[[ "${members_of[i]}" == "$1" ]] || continue
		t=$((t + $(awk '{print $14 + $15}' "/proc/${pids[i]}/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
clk_tck="$(getconf CLK_TCK)"

failed=0
# run_one SYSTEM LIMIT FILE ARGS...: one run into FILE, reported on stderr.
# The members' CPU over the run goes to FILE.cpu: the cores they used on
# average (CPU time over wall time, warm-up included) and that divided by
# the measured throughput, the members' CPU per operation in µs. For a
# system with a standby, the standby's CPU goes there too (per source
# operation), and its lag to FILE.mirror (see mirror_report).
run_one() {
	local system="$1" limit="$2" file="$3"
	shift 3
	local t0 w0 t1 w1 s0=0 s1=0 standby="${sys_standby[$system]:-}"
	if [[ -n "$standby" ]]; then
		# The fill, or the previous run, may still be on its way.
		wait_for "$system's standby to catch up" 600 mirror_caught_up "$system"
		s0="$(cpu_ticks "$system/standby")"
		mirror_follow "$system" "$file.lag" &
		poll_pid=$!
	elif [[ -n "${sys_polled[$system]:-}" ]]; then
		# The same polls of the source as with a standby (the standby's
		# part aside): the comparison leaves the poller out.
		mirror_follow "$system" /dev/null source-only &
		poll_pid=$!
	fi
	t0="$(cpu_ticks "$system")"
	w0="$EPOCHREALTIME"
	if ! bench "$system" "$limit" "$@" >"$file" 2>"$file.err"; then
		echo "bench-cluster: $system run $(basename "$file") failed: $(tail -3 "$file.err")" >&2
		failed=1
	fi
	t1="$(cpu_ticks "$system")"
	w1="$EPOCHREALTIME"
	[[ -z "$standby" ]] || s1="$(cpu_ticks "$system/standby")"
	if [[ -n "$poll_pid" ]]; then
		kill -TERM "$poll_pid" 2>/dev/null || true
		wait "$poll_pid" 2>/dev/null || true
		poll_pid=""
	fi
	rm -f "$file.err"
	if ! [[ -s "$file" ]]; then
		rm -f "$file" "$file.lag"
		return 0
	fi
	awk -v t="$((t1 - t0))" -v st="$((s1 - s0))" -v sb="${standby:+1}" -v hz="$clk_tck" -v w0="$w0" -v w1="$w1" -v r="$(field "$file" ops_per_sec)" 'BEGIN {
		cores = (w1 > w0) ? t / hz / (w1 - w0) : 0
		printf "{\n  \"member_cores\": %.3f,\n  \"member_cpu_us_per_op\": %.1f", cores, (r > 0) ? cores * 1e6 / r : 0
		if (sb) {
			scores = (w1 > w0) ? st / hz / (w1 - w0) : 0
			printf ",\n  \"standby_cores\": %.3f,\n  \"standby_cpu_us_per_op\": %.1f", scores, (r > 0) ? scores * 1e6 / r : 0
		}
		printf "\n}\n" }' >"$file.cpu"
	local mirror_note=""
	if [[ -n "$standby" ]]; then
		mirror_report "$system" "$file"
		mirror_note="$(awk -v c="$(field "$file.cpu" standby_cpu_us_per_op)" -v m="$(field "$file.mirror" max_lag_revisions)" \
			-v mt="$(field "$file.mirror" max_lag_ms_at_rate)" -v nf="$(field "$file.mirror" polls_not_following)" \
			-v rm="$(field "$file.mirror" max_reported_lag_revisions)" -v ms="$(field "$file.mirror" max_reported_lag_seconds)" \
			-v cu="$(field "$file.mirror" caught_up_after_s)" 'BEGIN {
			printf "standby %6.0f µs CPU/source op  lag max %s revisions (~%.0f ms; standby says %s, %.3f s)  caught up %s%s",
				c, m, mt, rm, ms, (cu == "-") ? "NOT within 120 s" : sprintf("%.2f s after the run", cu),
				(nf > 0) ? sprintf("  NOT following at %d polls", nf) : "" }')"
	fi
	if [[ "$(field "$file" errors)" != 0 ]]; then
		echo "bench-cluster: $system run $(basename "$file"): $(field "$file" errors) errors, first: $(sed -n 's/^ *"first_error": *//p' "$file")" >&2
		failed=1
	fi
	awk -v w="$width" -v s="$system" -v o="$(field "$file" op)" -v r="$(field "$file" ops_per_sec)" -v p50="$(field "$file" p50_ms)" \
		-v p99="$(field "$file" p99_ms)" -v e="$(field "$file" errors)" -v cpu="$(field "$file.cpu" member_cpu_us_per_op)" 'BEGIN {
		if (o == "fill") printf "  %-" w "s %8.0f puts/s\n", s, r
		else printf "  %-" w "s %8.0f ops/s  p50 %7.2f ms  p99 %7.2f ms  errors %s  members %6.0f µs CPU/op\n", s, r, p50, p99, e, cpu }' >&2
	[[ -z "$mirror_note" ]] || printf '  %*s %s\n' "$width" "" "$mirror_note" >&2
}

# mirror_report SYSTEM FILE: after a run with a standby, wait (up to 120 s)
# until the standby has caught up, and write FILE.mirror: the polls made
# during the run (and how many found it not following), the largest lag
# seen (the source's highest revision minus the standby's head, as polled;
# in ms, that over the run's ops/s), the largest lag in revisions and
# seconds the standby reported itself, and how long after the run's end it
# caught up ("-" when it did not).
mirror_report() {
	local system="$1" file="$2" end="$EPOCHREALTIME" after="-" deadline=$((SECONDS + 120))
	while [[ $SECONDS -lt $deadline ]]; do
		if mirror_caught_up "$system"; then
			after="$(awk -v a="$end" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')"
			break
		fi
		sleep 0.05
	done
	if [[ "$after" == - ]]; then
		echo "bench-cluster: $system's standby did not catch up within 120 s of $(basename "$file"): $(mirror_poll "$system")" >&2
		failed=1
	fi
	awk -v after="$after" -v r="$(field "$file" ops_per_sec)" '
		{ n++ }
		$3 ~ /^[0-9]+$/ && $6 ~ /^[0-9]+$/ { l = $6 - $3; if (l > m) m = l }
		$2 != "following" { bad++ }
		$4 ~ /^[0-9]+$/ && $4 + 0 > rm { rm = $4 + 0 }
		$5 ~ /^[0-9.e+-]+$/ && $5 + 0 > rs { rs = $5 + 0 }
		END { printf "{\n  \"polls\": %d,\n  \"polls_not_following\": %d,\n  \"max_lag_revisions\": %d,\n  \"max_lag_ms_at_rate\": %.1f,\n  \"max_reported_lag_revisions\": %d,\n  \"max_reported_lag_seconds\": %.3f,\n  \"caught_up_after_s\": \"%s\"\n}\n", n, bad, m, (r > 0) ? m * 1000 / r : 0, rm, rs, after }' "$file.lag" >"$file.mirror"
}

# who: the systems in a line ("cairn 6efbba0 vs cairn@cca5404 vs etcd 3.4.23").
who="cairn $commit"
for s in "${systems[@]:1}"; do
	who+=" vs $s"
	[[ $s != etcd ]] || who+=" $etcd_version"
done
{
	echo "$who; $(nproc) CPUs, $(uname -sr), $(go env GOVERSION)"
	echo "duration $duration after warmup $warmup, $rounds round(s), $keys keys, $vsize-byte values, workloads: ${wls[*]}"
	echo "cairn node flags: ${cairn_flags:-none}$([[ $no_etcd -eq 1 ]] || echo "; etcd flags: ${etcd_flags:-none}"); data in $work"
	for s in "${systems[@]:1}"; do
		[[ $s == etcd ]] || echo "$s: ${sys_desc[$s]}; node flags: ${sys_flags[$s]:-none}"
	done
} >&2

filled=0
fill_note=""
for w in "${wls[@]}"; do
	IFS=: read -r op clients cons <<<"${spec[$w]}"
	args=(--op "$op" --clients "$clients" --duration "$duration" --warmup "$warmup")
	if [[ "$op" == get ]]; then
		if [[ $filled -eq 0 ]]; then
			echo "filling $keys keys in every cluster (64 clients)" >&2
			fill_note="Fill (every key written once, 64 clients, not measured closed-loop):"
			for system in "${systems[@]}"; do
				f="$raw/fill-$system.json"
				run_one "$system" "$fill_limit" "$f" --fill only --clients 64
				if [[ -s "$f" ]]; then
					fill_note+=" $system $(field "$f" ops_per_sec | awk '{printf "%.0f", $1}') puts/s,"
				else
					fill_note+=" $system failed,"
				fi
			done
			fill_note="${fill_note%,}."
			filled=1
		fi
		args+=(--consistency "$cons" --fill skip)
	fi
	for ((r = 1; r <= rounds; r++)); do
		echo "$w, round $r/$rounds" >&2
		for system in "${systems[@]}"; do
			run_one "$system" "$run_limit" "$raw/$w-$system-r$r.json" "${args[@]}"
		done
	done
done

# ---------------------------------------------------------------------------
# The table: medians over the rounds (with the range of ops/s when there
# are several).
# agg W SYSTEM FIELD [SUFFIX]: "median min max" of FIELD over the rounds'
# files (their .json, or .json.cpu with SUFFIX .cpu).
agg() {
	local r f
	for ((r = 1; r <= rounds; r++)); do
		f="$raw/$1-$2-r$r.json${4:-}"
		if [[ -s "$f" ]]; then field "$f" "$3"; fi
	done | sort -g | awk '{v[NR] = $1} END {
		if (NR == 0) { print "- - -"; exit }
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		print m, v[1], v[NR] }'
}
fmt_ops() { # fmt_ops "median min max"
	awk -v r="$rounds" '{ if ($1 == "-") { print "failed"; exit }
		if (r > 1) printf "%.0f (%.0f–%.0f)\n", $1, $2, $3; else printf "%.0f\n", $1 }' <<<"$1"
}
fmt_ms() { awk '{ if ($1 == "-") print "-"; else printf "%.2f ms\n", $1 }' <<<"$1"; }
fmt_us() { awk '{ if ($1 == "-") print "-"; else printf "%.0f µs\n", $1 }' <<<"$1"; }
sum_errors() {
	local r
	for ((r = 1; r <= rounds; r++)); do
		if [[ -s "$raw/$1-$2-r$r.json" ]]; then field "$raw/$1-$2-r$r.json" errors; fi
	done | awk '{s += $1} END {print s + 0}'
}
ratio() { # ratio "median ..." "median ...": the first median over the second
	awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }'
}
# The columns: each system's ops/s; each other cairn system's ops/s over
# the working tree's ("x/cairn") and, with etcd, cairn's over etcd's (issue
# 8's direction); each system's p50, p99 and CPU/op; each other cairn
# system's CPU/op over the working tree's; the errors. With cairn and etcd
# alone that is the table of earlier runs.
others=()
for s in "${systems[@]:1}"; do
	[[ "${sys_kind[$s]}" != cairn ]] || others+=("$s")
done
table="$raw/table.md"
{
	echo
	head="| workload |"
	sep="|---|"
	col() { head+=" $1 |" sep+="---:|"; }
	for s in "${systems[@]}"; do col "$s ops/s"; done
	for s in "${others[@]}"; do col "$s/cairn"; done
	[[ $no_etcd -eq 1 ]] || col "cairn/etcd"
	for s in "${systems[@]}"; do col "$s p50"; done
	for s in "${systems[@]}"; do col "$s p99"; done
	for s in "${systems[@]}"; do col "$s CPU/op"; done
	for s in "${others[@]}"; do col "$s/cairn CPU/op"; done
	col "errors $(
		IFS=/
		echo "${systems[*]}"
	)"
	echo "$head"
	echo "$sep"
	for w in "${wls[@]}"; do
		declare -A ops=() cpu=()
		for s in "${systems[@]}"; do
			ops[$s]="$(agg "$w" "$s" ops_per_sec)"
			cpu[$s]="$(agg "$w" "$s" member_cpu_us_per_op .cpu)"
		done
		row="| ${label[$w]} |"
		for s in "${systems[@]}"; do row+=" $(fmt_ops "${ops[$s]}") |"; done
		for s in "${others[@]}"; do row+=" $(ratio "${ops[$s]}" "${ops[cairn]}") |"; done
		[[ $no_etcd -eq 1 ]] || row+=" $(ratio "${ops[cairn]}" "${ops[etcd]}") |"
		for s in "${systems[@]}"; do row+=" $(fmt_ms "$(agg "$w" "$s" p50_ms)") |"; done
		for s in "${systems[@]}"; do row+=" $(fmt_ms "$(agg "$w" "$s" p99_ms)") |"; done
		for s in "${systems[@]}"; do row+=" $(fmt_us "${cpu[$s]}") |"; done
		for s in "${others[@]}"; do row+=" $(ratio "${cpu[$s]}" "${cpu[cairn]}") |"; done
		errs=""
		for s in "${systems[@]}"; do errs+="${errs:+/}$(sum_errors "$w" "$s")"; done
		echo "$row $errs |"
	done
	echo
	if [[ $no_etcd -eq 1 ]]; then
		routed="cairn's requests $([[ $cairn_routing == rotate ]] && echo "rotated over all members" || echo "routed by its client (writes and linearizable reads to the leader)")"
	else
		routed="etcd's requests rotated over all members, cairn's $([[ $cairn_routing == rotate ]] && echo "too" || echo "routed by its client (writes and linearizable reads to the leader)")"
	fi
	echo "$who, 3 members each on loopback, fsync on; $(nproc) CPUs; $duration per run after $warmup warm-up; $rounds round(s)$([[ $rounds -gt 1 ]] && echo ", medians (ops/s range)"); $keys keys, $vsize-byte values; $routed."
	[[ -z "$cairn_flags$etcd_flags" ]] || echo "Extra flags: cairn node run ${cairn_flags:-(none)}$([[ $no_etcd -eq 1 ]] || echo "; etcd ${etcd_flags:-(none)}")."
	for s in "${others[@]}"; do
		echo "$s: ${sys_desc[$s]}; node flags: ${sys_flags[$s]:-none}."
	done
	[[ ${#others[@]} -eq 0 ]] || echo "x/cairn: system x's median over the working tree's (cairn), of ops/s and of CPU/op; every cairn system is driven by the working tree's cairn bench."
	[[ -z "$fill_note" ]] || echo "$fill_note"
	echo "CPU/op: the CPU time the three members used during a run (warm-up included) over its wall time, divided by the measured ops/s; the load generator's own CPU is not in it$([[ $cairn_mirror -eq 0 ]] || echo ", nor a standby's (a system with a standby: its source members alone)")."
	if [[ $cairn_mirror -eq 1 ]]; then
		echo
		for s in "${systems[@]}"; do
			b="${sys_standby[$s]:-}"
			[[ -n "$b" ]] || continue
			for w in "${wls[@]}"; do
				nc=0
				for ((r = 1; r <= rounds; r++)); do
					f="$raw/$w-$s-r$r.json.mirror"
					if [[ ! -s "$f" || "$(field "$f" caught_up_after_s)" == - ]]; then nc=$((nc + 1)); fi
				done
				awk -v lbl="${label[$w]}" -v s="$s" -v b="$b" -v n="$rounds" -v nc="$nc" \
					-v o0="$(agg "$w" "$b" ops_per_sec)" -v o1="$(agg "$w" "$s" ops_per_sec)" \
					-v c0="$(agg "$w" "$b" member_cpu_us_per_op .cpu)" -v c1="$(agg "$w" "$s" member_cpu_us_per_op .cpu)" \
					-v sc="$(agg "$w" "$s" standby_cpu_us_per_op .cpu)" -v lag="$(agg "$w" "$s" max_lag_revisions .mirror)" \
					-v lt="$(agg "$w" "$s" max_lag_ms_at_rate .mirror)" \
					-v rl="$(agg "$w" "$s" max_reported_lag_revisions .mirror)" -v rs="$(agg "$w" "$s" max_reported_lag_seconds .mirror)" \
					-v cu="$(agg "$w" "$s" caught_up_after_s .mirror)" 'BEGIN {
					split(o0, O0, " "); split(o1, O1, " "); split(c0, C0, " "); split(c1, C1, " ")
					split(sc, SC, " "); split(lag, L, " "); split(rl, RL, " "); split(rs, RSEC, " "); split(cu, CU, " "); split(lt, LT, " ")
					med = (n > 1) ? "medians over " n " rounds" : "1 round"
					if (O0[1] == "-" || O1[1] == "-") { printf "Standby, %s (%s vs %s): failed runs, no figures.\n", lbl, s, b; exit }
					printf "Standby, %s (%s vs %s, %s): the source %.0f ops/s with a standby, %.0f without (ratio %.2f); ", lbl, s, b, med, O1[1], O0[1], (O0[1] > 0) ? O1[1] / O0[1] : 0
					printf "the source members %.0f µs CPU/op with, %.0f without (ratio %.2f); ", C1[1], C0[1], (C0[1] > 0) ? C1[1] / C0[1] : 0
					printf "the standby %.0f µs CPU per source op; ", SC[1]
					printf "lag at most %d revisions as polled (~%.0f ms of the source'"'"'s writes; the standby reported at most %d revisions, %.3f s); ", L[3], LT[3], RL[3], RSEC[3]
					if (nc == 0) printf "caught up at most %.2f s after the end of every round.\n", CU[3]
					else printf "NOT caught up within 120 s after %d of %d round(s).\n", nc, n }'
			done
		done
		echo "Standby: source, standby, load generator and the lag poller (curl every 250 ms) share this machine's $(nproc) CPUs and its disk, so the ops/s ratio includes the standby's own CPU and fsyncs taken from the source (the source is polled the same way without a standby); the source members' CPU/op with against without a standby is the figure that carries over to a standby on its own machine. Lag as polled: the source's highest revision minus the standby's head (the source read after the standby, so an upper bound), and in ms that over the round's ops/s. The lag the standby reports itself (its leader's GET /v1/mirror/status) is the highest source head its follower has received less what it has applied: it leaves out the writes the source has committed but not yet sent, so it reads below the polled lag."
	fi
} | tee "$table"
if [[ -n "$raw_dir" ]]; then
	echo "raw JSON and table.md in $raw" >&2
fi
exit "$failed"
