#!/usr/bin/env bash
# install-tools.sh installs the pinned Go developer tools into
# $(go env GOPATH)/bin. It is idempotent: a tool already installed at the
# pinned version, built by the Go toolchain in use, is left alone.
#
#   scripts/install-tools.sh                  # tools CI needs (staticcheck)
#   scripts/install-tools.sh protoc-gen-go    # named tools only
#   scripts/install-tools.sh --print-bin      # print the install directory
#
# It needs only Go and the module proxy. The versions below are the single
# place tools are pinned; go.mod does not list them.
set -euo pipefail

# name | package | module (as `go version -m` reports it) | version
TOOLS=(
	"staticcheck|honnef.co/go/tools/cmd/staticcheck|honnef.co/go/tools|v0.8.2"
	"protoc-gen-go|google.golang.org/protobuf/cmd/protoc-gen-go|google.golang.org/protobuf|v1.36.12"
)
DEFAULT_TOOLS=(staticcheck)

gopath="$(go env GOPATH)"
bindir="${gopath%%:*}/bin" # the first GOPATH entry
exe="$(go env GOEXE)"
goversion="$(go env GOVERSION)"

if [[ "${1:-}" == "--print-bin" ]]; then
	echo "$bindir"
	exit 0
fi

want=("$@")
if [[ ${#want[@]} -eq 0 ]]; then
	want=("${DEFAULT_TOOLS[@]}")
fi

install_one() {
	local name="$1" spec="" entry
	for entry in "${TOOLS[@]}"; do
		if [[ "${entry%%|*}" == "$name" ]]; then
			spec="$entry"
		fi
	done
	if [[ -z "$spec" ]]; then
		echo "install-tools: unknown tool '$name' (known: $(printf '%s ' "${TOOLS[@]%%|*}"))" >&2
		return 1
	fi
	local pkg module version
	IFS='|' read -r _ pkg module version <<<"$spec"
	local bin="$bindir/$name$exe"

	if [[ -x "$bin" ]]; then
		local info have_go have_mod
		info="$(go version -m "$bin" 2>/dev/null || true)"
		have_go="$(awk 'NR==1 {print $2}' <<<"$info")"
		have_mod="$(awk -v m="$module" '$1 == "mod" && $2 == m {print $3}' <<<"$info")"
		if [[ "$have_mod" == "$version" && "$have_go" == "$goversion" ]]; then
			echo "install-tools: $name $version already installed at $bin"
			return 0
		fi
		echo "install-tools: $name at $bin is ${have_mod:-unknown version} built by ${have_go:-unknown Go}; want $version built by $goversion"
	fi

	echo "install-tools: installing $pkg@$version into $bindir"
	# Outside any module's flags: GOFLAGS such as -mod=vendor do not apply
	# to `go install pkg@version`.
	GOFLAGS= GOBIN="$bindir" go install "$pkg@$version"
	echo "install-tools: installed $name $version"
}

for t in "${want[@]}"; do
	install_one "$t"
done
