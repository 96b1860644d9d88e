#!/usr/bin/env bash
# dockerd conformance: moby's own integration suite as the ratchet.
#
#   make conformance MOBY_SRC=/path/to/moby-v28.3.3
#   CONFORMANCE_PKGS="volume system" CONFORMANCE_RUN='TestVolume' make conformance MOBY_SRC=...
#
# Builds moby's integration packages (MOBY_SRC, a moby source tree at the
# pinned release; never copied into this repository) as standalone test
# binaries with its vendored dependencies, then runs the same binaries with
# DOCKER_REMOTE_DAEMON=1 (tests that need to start their own dockerd skip
# themselves) against a private jevmd and a private Debian dockerd (apt
# package docker.io), one engine at a time, both using one local registry
# of the offline test images (bench/lib/jevm.sh) as their Docker Hub mirror.
# Every test binary's output is captured through test2json; the report
# (hack/conformance/report) writes OUT/results.json (per package and engine:
# pass/fail/skip counts and every test's outcome) and OUT/results.md.
#
# Variables:
#   MOBY_SRC             moby source tree (required)
#   MOBY_VERSION         the release it is expected to be at (v28.3.3)
#   CONFORMANCE_PKGS     packages under integration/ ("DIR/..." expands to the
#                        packages below DIR that have tests);
#                        default: container image network volume system build plugin/...
#   CONFORMANCE_RUN      -test.run regex (default: all tests)
#   CONFORMANCE_TIMEOUT  -test.timeout per package (default 20m)
#   CONFORMANCE_ENGINES  default "jevm dockerd"; also "moby-dockerd": dockerd and
#                        docker-proxy built from MOBY_SRC (with Debian's
#                        containerd and runc), an exact reference
#   CONFORMANCE_OUT      default build/conformance
#   CONFORMANCE_DOCKERD  the reference dockerd binary (default: Debian's, from PATH);
#                        a docker-proxy beside it is used as its userland proxy
#   CONFORMANCE_PARALLEL 1: run the engines at the same time (shorter wall
#                        time; the engines then share the CPUs)
#
# The engines: jevmd on bridge jevmcf0 (10.215.0.1/24), user networks from
# 10.216.0.0/16; dockerd (with the containerd it starts itself) on docker0
# (10.213.0.1/24, only if no docker0 exists), user networks from
# 10.217.0.0/16, --iptables=false so that it leaves no rules behind;
# moby-dockerd (optional) likewise on bridge dockercf1 (10.218.0.1/24). All
# get the frozen images the suite expects (busybox:latest, busybox:glibc,
# debian:bookworm-slim and three hello-world tags) by pulling busybox and
# debian from the registry and tagging them: hello-world:* are busybox, so
# tests that look inside hello-world (its platform, its /hello) fail on
# both engines alike. The moby client talks the engine's own API version
# (DOCKER_API_VERSION), so an older dockerd runs the tests its API allows.
# Nothing outlives the script: engines, the registry, QEMU, bridges, taps,
# iptables rules and the temp dir are removed on exit.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export PATH=/usr/local/go/bin:$PATH
BIN=${JEVM_BIN:-$ROOT/bin}
GUEST=${JEVM_GUEST:-$ROOT/build/guest}
MOBY_VERSION=${MOBY_VERSION:-v28.3.3}
PKGS=${CONFORMANCE_PKGS:-container image network volume system build plugin/...}
RUN=${CONFORMANCE_RUN:-}
TIMEOUT=${CONFORMANCE_TIMEOUT:-20m}
ENGINES=${CONFORMANCE_ENGINES:-jevm dockerd}
OUT=${CONFORMANCE_OUT:-$ROOT/build/conformance}
DOCKERD=${CONFORMANCE_DOCKERD:-dockerd}
T0=$(date +%s)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { echo "conformance: $*" >&2; exit 2; }

if [ -z "${MOBY_SRC:-}" ]; then
	die "MOBY_SRC is not set: give a moby source tree at $MOBY_VERSION, e.g.
  git -C /path/to/moby.git worktree add /tmp/moby-$MOBY_VERSION $MOBY_VERSION
  make conformance MOBY_SRC=/tmp/moby-$MOBY_VERSION"
fi
MOBY_SRC=$(cd "$MOBY_SRC" 2>/dev/null && pwd) || die "MOBY_SRC=$MOBY_SRC: no such directory"
[ -f "$MOBY_SRC/vendor.mod" ] && [ -d "$MOBY_SRC/vendor" ] && [ -d "$MOBY_SRC/integration" ] ||
	die "MOBY_SRC=$MOBY_SRC does not look like a moby source tree (vendor.mod, vendor/, integration/)"
if got=$(git -C "$MOBY_SRC" describe --tags --exact-match 2>/dev/null); then
	[ "$got" = "$MOBY_VERSION" ] || log "WARNING: MOBY_SRC is at $got, not the pinned $MOBY_VERSION"
	MOBY_VERSION=$got
else
	log "MOBY_SRC is not a git checkout: taking it to be $MOBY_VERSION (MOBY_VERSION=...)"
fi

. "$ROOT/bench/lib/engine.sh" # find_docker_cli, reap_dir, stop_engine
DOCKER=${DOCKER:-$(find_docker_cli)}
[ -n "$DOCKER" ] || die "no docker CLI found"

for e in $ENGINES; do
	case $e in
	jevm) [ -x "$BIN/jevmd" ] && [ -f "$GUEST/vmlinuz" ] || die "bin/jevmd or build/guest missing (make build guest images)" ;;
	moby-dockerd) ;;
	dockerd)
		if [ "$DOCKERD" = dockerd ] && ! command -v dockerd >/dev/null; then
			log "installing Debian's docker.io (policy-rc.d keeps its service from starting)"
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io; } >/dev/null ||
				die "apt-get install docker.io failed"
		fi ;;
	*) die "unknown engine $e (jevm, dockerd, moby-dockerd)" ;;
	esac
done

# --- build: go test -c per package, module mode over moby's vendor/ -------
# moby v28 has no go.mod; as its hack/with-go-mod.sh does, vendor.mod is
# put in place as go.mod for the build (and removed again).
mkdir -p "$OUT/bin"
made_gomod=0
if [ ! -e "$MOBY_SRC/go.mod" ]; then
	cp "$MOBY_SRC/vendor.mod" "$MOBY_SRC/go.mod" && made_gomod=1
	[ -e "$MOBY_SRC/go.sum" ] || { cp "$MOBY_SRC/vendor.sum" "$MOBY_SRC/go.sum" && made_gomod=2; }
fi
drop_gomod() {
	[ "$made_gomod" -ge 1 ] && rm -f "$MOBY_SRC/go.mod"
	[ "$made_gomod" -ge 2 ] && rm -f "$MOBY_SRC/go.sum"
	made_gomod=0
}
mgo() { (cd "$MOBY_SRC" && GO111MODULE=on GOTOOLCHAIN=local GOFLAGS=-mod=vendor GOWORK=off go "$@"); }

pkgs=()
for p in $PKGS; do
	case $p in
	*/...)
		# not the plugins' own main packages (DIR/cmd/NAME)
		while read -r ip; do [ -n "$ip" ] && pkgs+=("${ip#github.com/docker/docker/integration/}"); done < <(
			mgo list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' "./integration/$p" | grep -v '/cmd/') ;;
	*) pkgs+=("$p") ;;
	esac
done
[ "${#pkgs[@]}" -gt 0 ] || { drop_gomod; die "no packages in CONFORMANCE_PKGS=$PKGS"; }
log "moby $MOBY_VERSION at $MOBY_SRC; packages: ${pkgs[*]}"

tb=$(date +%s)
: >"$OUT/build.log"
built=()
for p in "${pkgs[@]}"; do
	f=${p//\//_}
	log "building integration/$p"
	if mgo test -c -o "$OUT/bin/$f.test" "./integration/$p" >>"$OUT/build.log" 2>&1 && [ -x "$OUT/bin/$f.test" ]; then
		built+=("$p")
	else
		log "build of integration/$p failed (see $OUT/build.log)"
	fi
done
if [[ " $ENGINES " == *" moby-dockerd "* ]]; then
	log "building dockerd and docker-proxy of $MOBY_VERSION (engine moby-dockerd)"
	mgo build -tags exclude_graphdriver_btrfs -ldflags "-X github.com/docker/docker/dockerversion.Version=${MOBY_VERSION#v}" -o "$OUT/bin/" ./cmd/dockerd ./cmd/docker-proxy >>"$OUT/build.log" 2>&1 ||
		{ drop_gomod; die "build of moby's dockerd failed (see $OUT/build.log)"; }
fi
drop_gomod
build_s=$(($(date +%s) - tb))
log "built ${#built[@]} of ${#pkgs[@]} packages in ${build_s} s"

# --- the engines -----------------------------------------------------------
work=$(mktemp -d /tmp/jevm-conformance-XXXXXX)
chmod 755 "$work"
export DOCKER_CONFIG=$work/docker-config
mkdir -p "$DOCKER_CONFIG"
links_before=$(ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | sort)
rules_before=$(iptables-save 2>/dev/null | grep -- '^-A' | sort)
# dockerd 20.10 writes /etc/docker/key.json and /run/docker/plugins
# whatever its data and exec roots are
had_key=0; [ -e /etc/docker/key.json ] && had_key=1
had_rundocker=0; [ -e /run/docker ] && had_rundocker=1
new_cgroups=""
for g in docker; do ls -d /sys/fs/cgroup/*/$g >/dev/null 2>&1 || new_cgroups="$new_cgroups $g"; done

engine_pid=""
engine_dir=""
registry=""
# Links and iptables rules that appeared during the run and are ours: the
# engines' bridges (jevmcf0, jevmN, docker0, br-*), taps and veths.
host_cleanup() {
	local l
	for l in $(ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | sort | comm -13 <(echo "$links_before") -); do
		case $l in jevm* | tap* | docker* | br-* | veth*) ip link del "$l" 2>/dev/null || true ;; esac
	done
	iptables-save 2>/dev/null | grep -- '^-A' | sort | comm -13 <(echo "$rules_before") - | grep -E 'jevm|docker|br-' |
		while read -r rule; do
			for t in filter nat mangle raw; do eval "iptables -t $t ${rule/-A/-D}" 2>/dev/null && break; done
		done
	for g in $new_cgroups; do for d in /sys/fs/cgroup/*/$g; do rmdir "$d" 2>/dev/null || true; done; done
}
cleanup() {
	local e
	stop_engine
	for e in $ENGINES; do reap_dir "$work/eng-$e"; done
	[ -n "$registry" ] && kill "$registry" 2>/dev/null && wait "$registry" 2>/dev/null
	registry=""
	host_cleanup
	drop_gomod
	[ "${had_dxr:-1}" = 0 ] && rm -rf /tmp/dxr
	[ "$had_key" = 0 ] && rm -f /etc/docker/key.json
	[ "$had_rundocker" = 0 ] && rm -rf /run/docker
	rm -rf "$work" 2>/dev/null || { sleep 2; rm -rf "$work" 2>/dev/null || true; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. "$ROOT/bench/lib/jevm.sh"
start_registry "$work" || exit 1
log "registry of the test images on $REG"

wait_api() {
	for _ in $(seq 1 "$1"); do
		"$DOCKER" version >/dev/null 2>&1 && return 0
		kill -0 "$engine_pid" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}
start_engine() { # $1 = jevm|dockerd; sets engine_pid, engine_dir, DOCKER_HOST
	local e=$1 d="$work/eng-$1"
	engine_dir=$d
	mkdir -p "$d"
	case $e in
	jevm)
		start_jevmd "$d" "$d/engine.log" --registry-mirror "http://$REG" --insecure-registry "$REG" \
			-b jevmcf0 --bip 10.215.0.1/24 --default-address-pool base=10.216.0.0/16,size=24
		local rc=$?
		engine_pid=$jevmd
		return $rc ;;
	dockerd | moby-dockerd)
		echo '{}' >"$d/daemon.json"
		export DOCKER_HOST=unix://$d/docker.sock
		local bin=$DOCKERD extra=(--bip 10.213.0.1/24 --default-address-pool base=10.217.0.0/16,size=24)
		if [ "$e" = moby-dockerd ]; then
			# built from MOBY_SRC, with its own docker-proxy; its own bridge
			# (dockercf1), so that it can run beside Debian's on docker0
			bin=$OUT/bin/dockerd
			ip link show dockercf1 >/dev/null 2>&1 || { ip link add dockercf1 type bridge && ip addr add 10.218.0.1/24 dev dockercf1 && ip link set dockercf1 up; }
			extra=(-b dockercf1 --default-address-pool base=10.219.0.0/16,size=24 --ip6tables=false
				--userland-proxy-path "$OUT/bin/docker-proxy")
		elif [ "$DOCKERD" != dockerd ]; then
			extra+=(--ip6tables=false)
			[ -x "$(dirname "$DOCKERD")/docker-proxy" ] && extra+=(--userland-proxy-path "$(dirname "$DOCKERD")/docker-proxy")
		fi
		"$bin" --config-file "$d/daemon.json" -H "$DOCKER_HOST" --data-root "$d/data" --exec-root "$d/run" \
			--pidfile "$d/docker.pid" --registry-mirror "http://$REG" --insecure-registry "$REG" \
			--iptables=false --ip-forward=false --ip-masq=false "${extra[@]}" >"$d/engine.log" 2>&1 &
		engine_pid=$!
		wait_api 300 || { echo "dockerd did not answer: $(tail -3 "$d/engine.log" | tr '\n' ' ')" >&2; return 1; } ;;
	esac
}

# The images the suite's TestMain insists on (testutil/environment).
frozen_images() {
	"$DOCKER" pull -q "$REG/busybox" >/dev/null && "$DOCKER" pull -q "$REG/debian" >/dev/null || return 1
	for t in busybox:latest busybox:glibc hello-world:frozen hello-world:amd64 hello-world:arm64; do
		"$DOCKER" tag "$REG/busybox" "$t" || return 1
	done
	"$DOCKER" tag "$REG/debian" debian:bookworm-slim || return 1
	"$DOCKER" rmi "$REG/busybox" "$REG/debian" >/dev/null
}

# Tests that start a dockerd of their own (testutil/daemon) do so even
# with DOCKER_REMOTE_DAEMON set: they find this stub first in PATH, fail at
# once, and the report counts them as "local" (not applicable here).
mkdir -p "$work/stub"
printf '#!/bin/sh\necho "conformance: a test tried to start its own dockerd (not with DOCKER_REMOTE_DAEMON)" >&2\nexit 1\n' >"$work/stub/dockerd"
chmod 755 "$work/stub/dockerd"
had_dxr=0; [ -e /tmp/dxr ] && had_dxr=1

run_pkg() { # $1 engine, $2 package
	local e=$1 p=$2 f=${2//\//_} t rc d before
	# such tests leave TestName/ directories in the package dir
	before=$(cd "$MOBY_SRC/integration/$p" && ls -d Test* 2>/dev/null)
	local args=(-test.v=test2json -test.timeout "$TIMEOUT")
	[ -n "$RUN" ] && args+=(-test.run "$RUN")
	t=$(date +%s)
	# the tests find their fixtures (testdata/) relative to the package dir
	(cd "$MOBY_SRC/integration/$p" &&
		PATH=$work/stub:$PATH DOCKER_REMOTE_DAEMON=1 timeout -k 30 "$(($(tosec "$TIMEOUT") + 120))" "$OUT/bin/$f.test" "${args[@]}" 2>&1 |
		go tool test2json -t -p "github.com/docker/docker/integration/$p" >"$OUT/$e/$f.json"
		exit "${PIPESTATUS[0]}")
	rc=$?
	echo "$rc $(($(date +%s) - t))" >"$OUT/$e/$f.status"
	log "$e: integration/$p: exit $rc in $(($(date +%s) - t)) s: $(grep -c '"Action":"pass","Package":"[^"]*","Test":"[^/"]*","Elapsed' "$OUT/$e/$f.json") pass, $(grep -c '"Action":"fail","Package":"[^"]*","Test":"[^/"]*","Elapsed' "$OUT/$e/$f.json") fail, $(grep -c '"Action":"skip","Package":"[^"]*","Test":"[^/"]*","Elapsed' "$OUT/$e/$f.json") skip"
	for d in $(cd "$MOBY_SRC/integration/$p" && ls -d Test* 2>/dev/null | comm -13 <(echo "$before") -); do
		rm -rf "${MOBY_SRC:?}/integration/$p/$d"
	done
	# what a test left behind must not change the next package's start
	"$DOCKER" ps -aq 2>/dev/null | xargs -r -n 10 "$DOCKER" rm -f >/dev/null 2>&1 || true
}
tosec() { case $1 in *h) echo $((${1%h} * 3600)) ;; *m) echo $((${1%m} * 60)) ;; *s) echo "${1%s}" ;; *) echo "$1" ;; esac; }

run_engine() { # $1 = engine: start it, run every package, stop it
	local e=$1 te api
	# results of packages not run now stay (a CONFORMANCE_PKGS=container
	# rerun completes an earlier run); report lists this run's packages
	mkdir -p "$OUT/$e"
	for p in "${pkgs[@]}"; do rm -f "$OUT/$e/${p//\//_}".{json,status}; done
	log "=== $e ==="
	te=$(date +%s)
	if ! start_engine "$e"; then
		log "$e did not start"
		cp "$engine_dir/engine.log" "$OUT/$e/engine.log" 2>/dev/null
		echo "did not start" >"$OUT/$e/engine.txt"
		stop_engine
		return 1
	fi
	api=$("$DOCKER" version --format '{{.Server.APIVersion}}')
	echo "$e $("$DOCKER" version --format '{{.Server.Version}}') (API $api)" >"$OUT/$e/engine.txt"
	export DOCKER_API_VERSION=$api
	if ! frozen_images; then
		log "$e: could not provide the frozen images"
	fi
	for p in "${built[@]}"; do run_pkg "$e" "$p"; done
	unset DOCKER_API_VERSION
	cp "$engine_dir/engine.log" "$OUT/$e/engine.log" 2>/dev/null || true
	log "$e: done in $(($(date +%s) - te)) s; stopping"
	stop_engine
}

if [ "${CONFORMANCE_PARALLEL:-0}" = 1 ]; then
	# one subshell per engine (its own DOCKER_HOST and engine_pid); the
	# parent's cleanup reaps whatever names the work dir
	cpids=()
	for e in $ENGINES; do
		(trap stop_engine EXIT; run_engine "$e") &
		cpids+=($!)
	done
	wait "${cpids[@]}"
else
	for e in $ENGINES; do run_engine "$e"; done
fi
trap - EXIT
cleanup

total_s=$(($(date +%s) - T0))
machine="$(nproc) cores, $(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 1024)) GiB, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
log "whole run ${total_s} s (build ${build_s} s)"
go run ./hack/conformance/report -dir "$OUT" -moby "$MOBY_VERSION" -engines "$ENGINES" -pkgs "${pkgs[*]}" \
	-run "$RUN" -timeout "$TIMEOUT" -machine "$machine; build ${build_s} s, whole run ${total_s} s"
