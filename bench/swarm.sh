#!/usr/bin/env bash
# Swarm mode over three hosts (issue 17): jevm against dockerd+runc, in
# the same run, on the same three "hosts": network namespaces of their
# own (with their own hostname), hanging off a bridge this script makes,
# as the integration test's hosts do (integration/hosts_test.go).
#
#   make bench-swarm                  # or: bench/swarm.sh
#   REPLICAS=30 ENGINES="runc runc-offline jevm" RUNS=1 bench/swarm.sh
#   REPLICAS_BENCH=0 ENGINES="runc-offline jevm" bench/swarm.sh   # overlay only
#
# runc is dockerd as installed; runc-offline is dockerd with
# DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1, which skips the pull dockerd does
# before every task even when it has the image (jevm pulls only a missing
# image).
#
# For each engine: start three engines, `swarm init` on the first, join
# the second as a manager and the third as a worker, pull busybox on all
# three (so that pulls are not timed), then time
#   replicas<N>   `service create --replicas N` until `service ls` says N/N
#   reschedule    kill -9 of the third host's engine until N tasks run on
#                 the other two (includes SwarmKit's detection of the lost
#                 node, the same heartbeat settings for both engines)
# and, first, an overlay network across h1 and h2 (overlay_bench below:
# request latency by service name and a 32 MiB download; OVERLAY=0 skips
# it), and tear everything down. Results: bench/results/swarm-<UTC time>/raw.csv
# (engine,metric,run,value in ms) and a summary on stdout; docs/BENCHMARKS.md
# is edited by hand with them.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${JEVM_BIN:-$ROOT/bin}
GUEST=${JEVM_GUEST:-$ROOT/build/guest}
REPLICAS=${REPLICAS:-30}
RUNS=${RUNS:-1}
ENGINES=${ENGINES:-"runc runc-offline jevm"}
NET=10.214.7          # /24: .1 the bridge, .11-.13 the hosts
BR=jvbenchbr0
NS=jevm-bench-

. "$ROOT/bench/lib/engine.sh" # find_docker_cli, reap_dir
DOCKER=${DOCKER:-$(find_docker_cli)}
[ -n "$DOCKER" ] || { echo "no docker CLI found" >&2; exit 1; }
export PATH=$PATH:/usr/sbin:/sbin

stamp=$(date -u +%Y%m%dT%H%M%SZ)
res="$ROOT/bench/results/swarm-$stamp"
mkdir -p "$res"
raw="$res/raw.csv"
echo "engine,metric,run,value" >"$raw"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
ms() { date +%s%N; }
elapsed_ms() { echo $((($(ms) - $1) / 1000000)); }
rec() { echo "$1,$2,$3,$4" >>"$raw"; log "$1 $2 run $3: $4 ms"; }

if ! command -v dockerd >/dev/null && [[ " $ENGINES " == *" runc"* ]]; then
	log "installing docker.io (dockerd)"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io; } >"$res/apt.log" 2>&1 ||
		log "apt-get install failed (see $res/apt.log)"
fi

had_run_docker=0; [ -d /run/docker ] && had_run_docker=1
work=$(mktemp -d /tmp/jevm-swarm-XXXXXX)
chmod 755 "$work"
export DOCKER_CONFIG=$work/docker-config
mkdir -p "$DOCKER_CONFIG"
pids=()

net_down() {
	for i in 1 2 3; do ip netns del "$NS$i" 2>/dev/null; ip link del "jvbenchv$i" 2>/dev/null; done
	ip link del "$BR" 2>/dev/null
	while iptables -D FORWARD -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null; do :; done
}
stop_hosts() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$p" 2>/dev/null
	done
	pids=()
	reap_dir "$work"
}
cleanup() {
	stop_hosts
	[ -n "${registry:-}" ] && kill "$registry" 2>/dev/null && wait "$registry" 2>/dev/null
	net_down
	# dockerd makes /run/docker/plugins even with its own exec root.
	[ "$had_run_docker" = 0 ] && { rmdir /run/docker/plugins /run/docker 2>/dev/null || true; }
	rm -rf "$work" "${regdir:-}" 2>/dev/null || { sleep 2; rm -rf "$work" "${regdir:-}"; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

net_down
ip link add "$BR" type bridge && ip addr add "$NET.1/24" dev "$BR" && ip link set "$BR" up || exit 1
iptables -I FORWARD -i "$BR" -o "$BR" -j ACCEPT
for i in 1 2 3; do
	ip netns add "$NS$i"
	ip link add "jvbenchv$i" type veth peer name eth0 netns "$NS$i"
	ip link set "jvbenchv$i" master "$BR" up
	ip -n "$NS$i" addr add "$NET.1$i/24" dev eth0
	ip -n "$NS$i" link set eth0 up
	ip -n "$NS$i" link set lo up
	ip -n "$NS$i" route add default via "$NET.1"
done

# The offline test images, on the bridge, as every host's Docker Hub mirror.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("'"$NET"'.1",0)); print(s.getsockname()[1])')
REG=$NET.1:$port
# (Outside $work: reap_dir kills whatever names it.)
regdir=$(mktemp -d /tmp/jevm-swreg-XXXXXX)
"${TESTIMAGES:-$BIN/jevm-testimages}" serve --addr "$REG" --dir "$regdir/registry" >"$regdir/registry.log" 2>&1 &
registry=$!
for _ in $(seq 1 600); do grep -q serving "$regdir/registry.log" && break; sleep 0.2; done
grep -q serving "$regdir/registry.log" || { log "registry not serving: $(tail -3 "$regdir/registry.log")"; exit 1; }

H() { # H N docker args...: the docker CLI against host N of the current engine
	local n=$1
	shift
	DOCKER_HOST=unix://$work/$engine-h$n/docker.sock "$DOCKER" "$@"
}

# start_host N: the current engine on host N, in its namespaces.
start_host() {
	local n=$1 d="$work/$engine-h$n"
	mkdir -p "$d"
	local cmd
	case $engine in
	jevm) cmd=("$BIN/jevmd" -H "unix://$d/docker.sock" --config-file /dev/null --data-root "$d/data" --exec-root "$d/run"
		--guest-dir "$GUEST" --agent "$BIN/jevm-agent" --registry-mirror "http://$REG" --insecure-registry "$REG" --vm-pool-size 0) ;;
	runc | runc-offline) echo '{}' >"$d/daemon.json"
		# dockerd pulls a task's image before every task unless told to
		# prefer the local one (jevm pulls only a missing image).
		local offline=0
		[ "$engine" = runc-offline ] && offline=1
		cmd=(env DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=$offline dockerd --config-file "$d/daemon.json" -H "unix://$d/docker.sock" --data-root "$d/data" --exec-root "$d/run"
		--pidfile "$d/docker.pid" --registry-mirror "http://$REG" --insecure-registry "$REG") ;;
	esac
	# nsenter enters the network namespace only: `ip netns exec` would
	# also mount a /sys of its own, without the cgroup hierarchy dockerd
	# needs.
	nsenter --net="/run/netns/$NS$n" unshare --uts sh -c 'hostname "$0" && exec "$@"' "h$n" "${cmd[@]}" >"$d/engine.log" 2>&1 &
	pids[$n]=$!
	for _ in $(seq 1 600); do H "$n" version >/dev/null 2>&1 && break; sleep 0.2; done
	H "$n" version >/dev/null 2>&1 || { log "$engine h$n did not answer: $(tail -3 "$d/engine.log" | tr '\n' ' ')"; return 1; }
	if [ "$engine" = jevm ]; then
		for _ in $(seq 1 1500); do grep -q "default VM template ready" "$d/engine.log" && return 0; sleep 0.2; done
		log "jevm h$n: no template after 300 s"
		return 1
	fi
}

# running_elsewhere: tasks of bench running on hosts 1 and 2.
running_elsewhere() {
	H 1 service ps bench --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' 2>/dev/null |
		awk '$1 != "h3" && $2 == "Running"' | wc -l
}

# wait_service NAME: until it runs all its replicas (120 s at most).
wait_service() {
	local want
	for _ in $(seq 1 480); do
		want=$(H 1 service ls --filter "name=$1" --format '{{.Replicas}}')
		case $want in "1/1") return 0 ;; esac
		sleep 0.25
	done
	log "$engine: service $1 not running: $want"
	return 1
}

# overlay_bench RUN NET [create options]: a web service on h1 and a
# client on h2 on a new overlay network NET; timed inside the client (one
# docker exec each, so the exec's own cost is in the time once): 50
# sequential requests by service name (through the VIP; ENDPOINT_MODE=dnsrr:
# to the task's address), then one 32 MiB download.
overlay_bench() {
	local run=$1 net=$2 t client
	shift 2
	H 1 network create -d overlay "$@" "$net" >/dev/null || return 1
	H 1 service create --detach --quiet --no-resolve-image --name "$net-web" --network "$net" --constraint node.hostname==h1 \
		--endpoint-mode "${ENDPOINT_MODE:-vip}" \
		busybox sh -c 'mkdir -p /www && dd if=/dev/zero of=/www/big bs=1M count=32 2>/dev/null && echo hi >/www/index.html && exec httpd -f -p 80 -h /www' >/dev/null || return 1
	H 1 service create --detach --quiet --no-resolve-image --name "$net-client" --network "$net" --constraint node.hostname==h2 \
		busybox sleep 3600 >/dev/null || return 1
	wait_service "$net-web" && wait_service "$net-client" || return 1
	client=$(H 2 ps -q --filter "label=com.docker.swarm.service.name=$net-client")
	for _ in $(seq 1 120); do H 2 exec "$client" wget -qO- "http://$net-web/" >/dev/null 2>&1 && break; sleep 0.5; done
	t=$(ms)
	H 2 exec "$client" sh -c "for i in \$(seq 50); do wget -qO- http://$net-web/ >/dev/null || exit 1; done" &&
		rec "$engine" "$net-50req" "$run" "$(elapsed_ms "$t")"
	t=$(ms)
	H 2 exec "$client" sh -c "wget -qO- http://$net-web/big >/dev/null" && rec "$engine" "$net-32MiB" "$run" "$(elapsed_ms "$t")"
	H 1 service rm "$net-web" "$net-client" >/dev/null
	for n in 1 2; do
		for _ in $(seq 1 240); do [ -z "$(H "$n" ps -aq)" ] && break; sleep 0.25; done
	done
	for _ in $(seq 1 40); do H 1 network rm "$net" >/dev/null 2>&1 && break; sleep 0.5; done
}

bench_engine() {
	local run=$1 t n ok
	for n in 1 2 3; do start_host "$n" || return 1; done
	H 1 swarm init --advertise-addr "$NET.11" >/dev/null || return 1
	H 2 swarm join --token "$(H 1 swarm join-token -q manager)" --advertise-addr "$NET.12" "$NET.11:2377" >/dev/null || return 1
	H 3 swarm join --token "$(H 1 swarm join-token -q worker)" --advertise-addr "$NET.13" "$NET.11:2377" >/dev/null || return 1
	for n in 1 2 3; do H "$n" pull -q busybox >/dev/null || return 1; done
	sleep 3

	if [ "${OVERLAY:-1}" = 1 ]; then
		log "$engine: overlay network across h1 and h2"
		overlay_bench "$run" ovplain || log "$engine: overlay bench failed"
		# dockerd encrypts with kernel IPsec, which these kernels lack
		# (no ESP, no GCM): jevm alone.
		if [ "$engine" = jevm ]; then
			overlay_bench "$run" ovsealed --opt encrypted || log "$engine: encrypted overlay bench failed"
		fi
	fi
	if [ "${REPLICAS_BENCH:-1}" = 0 ]; then
		H 2 swarm leave --force >/dev/null
		H 1 swarm leave --force >/dev/null
		stop_hosts
		return 0
	fi

	log "$engine: service create --replicas $REPLICAS"
	t=$(ms)
	H 1 service create --detach --quiet --no-resolve-image --name bench --replicas "$REPLICAS" --stop-grace-period 1s \
		busybox sh -c 'trap "exit 0" TERM; sleep 3600 & wait' >/dev/null || return 1
	ok=0
	for _ in $(seq 1 2400); do
		[ "$(H 1 service ls --filter name=bench --format '{{.Replicas}}')" = "$REPLICAS/$REPLICAS" ] && { ok=1; break; }
		sleep 0.25
	done
	[ $ok = 1 ] && rec "$engine" "replicas$REPLICAS" "$run" "$(elapsed_ms "$t")" || { log "$engine: not $REPLICAS/$REPLICAS after 600 s"; return 1; }
	log "$engine: spread $(for n in 1 2 3; do printf 'h%s=%s ' "$n" "$(H "$n" ps -q | wc -l)"; done)"

	log "$engine: kill -9 of h3's engine"
	t=$(ms)
	kill -KILL "${pids[3]}"
	ok=0
	for _ in $(seq 1 2400); do
		[ "$(running_elsewhere)" -ge "$REPLICAS" ] && { ok=1; break; }
		sleep 0.25
	done
	[ $ok = 1 ] && rec "$engine" reschedule "$run" "$(elapsed_ms "$t")" || log "$engine: tasks not rescheduled after 600 s"
	H 1 service rm bench >/dev/null
	for n in 1 2; do
		for _ in $(seq 1 240); do [ -z "$(H "$n" ps -aq)" ] && break; sleep 0.25; done
	done
	H 2 swarm leave --force >/dev/null
	H 1 swarm leave --force >/dev/null
	stop_hosts
}

for run in $(seq 1 "$RUNS"); do
	for engine in $ENGINES; do
		log "== $engine, run $run"
		bench_engine "$run" || log "$engine run $run failed (logs: $work/$engine-h*/engine.log)"
		stop_hosts
		rm -rf "$work/$engine"-h*
	done
done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC')"
python3 - "$raw" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault((r["metric"], r["engine"]), []).append(int(r["value"]))
for (metric, engine), v in sorted(by.items()):
    print(f"{metric:14} {engine:6} median {statistics.median(v)/1000:7.1f} s  ({len(v)} runs: {', '.join(f'{x/1000:.1f}' for x in v)})")
EOF
