#!/bin/bash
# Builds the docker compose CLI plugin (compose v2) from the Go module proxy
# at a pinned version and installs it at OUT, atomically. Used by the
# Makefile's `compose` target; the binary lives outside the work tree
# (default /var/cache/jevm/compose/VERSION/docker-compose), so it is built
# once per machine: minutes the first time, nothing after.
#
# `go install MODULE/cmd@VERSION` refuses compose because its go.mod has
# `exclude` directives, which only the main module may have; so the module
# is downloaded, copied and built as the main module, with its own go.sum.
#
# usage: hack/build-compose.sh MODULE VERSION OUT
set -euo pipefail
module=$1 version=$2 out=$3
: "${GO:=go}"

dir=$($GO mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -f "$dir/go.mod" ] || { echo "build-compose: $module@$version: no module directory" >&2; exit 1; }

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$dir" "$work/src"
chmod -R u+w "$work/src"

echo "building $module@$version (once per machine; takes minutes the first time)"
# nice: the build is long and CPU-bound; -mod=readonly: the module's go.sum
# is the pinned set, nothing is resolved anew.
(cd "$work/src" && GOFLAGS=-mod=readonly nice -n 19 $GO build ${COMPOSE_BUILD_FLAGS:-} -trimpath -buildvcs=false \
	-ldflags "-s -w -X $module/internal.Version=$version" -o "$work/docker-compose" ./cmd)

mkdir -p "$(dirname "$out")"
install -m 0755 "$work/docker-compose" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
"$out" version
