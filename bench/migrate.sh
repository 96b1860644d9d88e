#!/usr/bin/env bash
# Live migration (issue 18): a container moved between two jevmd hosts
# while it runs, back and forth RUNS times, for an idle container and a
# busy one. The hosts are network namespaces of their own hanging off a
# bridge this script makes (as integration/hosts_test.go's), each with
# its TLS API on tcp://IP:2376 and a certificate of one CA made here.
#
#   make bench-migrate                # or: bench/migrate.sh
#   RUNS=5 CASES="idle busy" bench/migrate.sh
#
# Cases (256 MiB VMs, busybox):
#   idle   `sleep` (its memory is the guest kernel's and a shell's)
#   busy   copies a 64 MiB file of random bytes in /dev/shm over another
#          without pause: 64 MiB dirtied again and again while the
#          memory is copied (QEMU's auto-converge slows its vCPU until
#          the rest fits the pause); after each migration `docker exec`
#          must still work in it
# Measured per migration: total (`docker jevm migrate`, the CLI's whole
# time: connect, offer, the copy, the handover, the source's removal),
# copy (QEMU's pre-copy and last pass), pause (the guest stopped: QEMU's
# downtime for the last pass, then until the target resumed it), memory
# sent and passes. jevm alone: dockerd has no live
# migration (it checkpoints with CRIU, which does not run on this
# kernel: bench/checkpoint.sh).
#
# Results: bench/results/migrate-<UTC time>/raw.csv (case,metric,run,
# value) and a markdown table on stdout for docs/BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${JEVM_BIN:-$ROOT/bin}
GUEST=${JEVM_GUEST:-$ROOT/build/guest}
RUNS=${RUNS:-3}
CASES=${CASES:-"idle busy"}
NET=10.215.7 # /24: .1 the bridge, .11 and .12 the hosts
BR=jvmigbr0
NS=jevm-migb-

. "$ROOT/bench/lib/engine.sh" # find_docker_cli, reap_dir
DOCKER=${DOCKER:-$(find_docker_cli)}
[ -n "$DOCKER" ] || { echo "no docker CLI found" >&2; exit 1; }
export PATH=$PATH:/usr/sbin:/sbin

stamp=$(date -u +%Y%m%dT%H%M%SZ)
res="$ROOT/bench/results/migrate-$stamp"
mkdir -p "$res"
raw="$res/raw.csv"
echo "case,metric,run,value" >"$raw"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
ms() { date +%s%N; }

work=$(mktemp -d /tmp/jevm-migbench-XXXXXX)
chmod 755 "$work"
export DOCKER_CONFIG=$work/docker-config
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$BIN/docker-jevm" "$DOCKER_CONFIG/cli-plugins/docker-jevm"
pids=()

net_down() {
	for i in 1 2; do ip netns del "$NS$i" 2>/dev/null; ip link del "jvmigv$i" 2>/dev/null; done
	ip link del "$BR" 2>/dev/null
	while iptables -D FORWARD -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null; do :; done
}
cleanup() {
	local p
	for n in 1 2; do H "$n" ps -aq 2>/dev/null | xargs -r "$DOCKER" -H "unix://$work/h$n/docker.sock" rm -f >/dev/null 2>&1; done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$p" 2>/dev/null
	done
	reap_dir "$work"
	for n in 1 2; do cp "$work/h$n/jevmd.log" "$res/h$n-jevmd.log" 2>/dev/null; done
	[ -n "${registry:-}" ] && kill "$registry" 2>/dev/null && wait "$registry" 2>/dev/null
	net_down
	find /sys/fs/cgroup -mindepth 2 -depth -type d -name 'jevm-migbench-h[12]' -exec rmdir {} \; 2>/dev/null
	rm -rf "$work" "${regdir:-}" 2>/dev/null || { sleep 2; rm -rf "$work" "${regdir:-}"; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

net_down
ip link add "$BR" type bridge && ip addr add "$NET.1/24" dev "$BR" && ip link set "$BR" up || exit 1
iptables -I FORWARD -i "$BR" -o "$BR" -j ACCEPT
for i in 1 2; do
	ip netns add "$NS$i"
	ip link add "jvmigv$i" type veth peer name eth0 netns "$NS$i"
	ip link set "jvmigv$i" master "$BR" up
	ip -n "$NS$i" addr add "$NET.1$i/24" dev eth0
	ip -n "$NS$i" link set eth0 up
	ip -n "$NS$i" link set lo up
	ip -n "$NS$i" route add default via "$NET.1"
done

# One CA; each host's certificate serves its API and is its client
# certificate towards the other.
certs=$work/certs
mkdir -p "$certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=jevm bench CA" \
	-keyout "$certs/ca-key.pem" -out "$certs/ca.pem" 2>/dev/null || exit 1
for i in 1 2; do
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=h$i" \
		-keyout "$certs/h$i-key.pem" -out "$certs/h$i.csr" 2>/dev/null &&
		openssl x509 -req -in "$certs/h$i.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca-key.pem" -CAcreateserial -days 1 \
			-extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$NET.1$i") \
			-out "$certs/h$i.pem" 2>/dev/null || exit 1
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("'"$NET"'.1",0)); print(s.getsockname()[1])')
REG=$NET.1:$port
regdir=$(mktemp -d /tmp/jevm-migreg-XXXXXX)
"${TESTIMAGES:-$BIN/jevm-testimages}" serve --addr "$REG" --dir "$regdir/registry" >"$regdir/registry.log" 2>&1 &
registry=$!
for _ in $(seq 1 600); do grep -q serving "$regdir/registry.log" && break; sleep 0.2; done
grep -q serving "$regdir/registry.log" || { log "registry not serving"; exit 1; }

H() { # H N docker args...: the docker CLI against host N
	local n=$1
	shift
	DOCKER_HOST=unix://$work/h$n/docker.sock "$DOCKER" "$@"
}
for n in 1 2; do
	d=$work/h$n
	mkdir -p "$d"
	nsenter --net="/run/netns/$NS$n" unshare --uts sh -c 'hostname "$0" && exec "$@"' "h$n" \
		"$BIN/jevmd" -H "unix://$d/docker.sock" -H "tcp://$NET.1$n:2376" --tlsverify --tlscacert "$certs/ca.pem" \
		--tlscert "$certs/h$n.pem" --tlskey "$certs/h$n-key.pem" --config-file /dev/null --data-root "$d/data" --exec-root "$d/run" \
		--guest-dir "$GUEST" --agent "$BIN/jevm-agent" --registry-mirror "http://$REG" --insecure-registry "$REG" --vm-pool-size 0 \
		--cgroup-parent "jevm-migbench-h$n" >"$d/jevmd.log" 2>&1 &
	pids[$n]=$!
done
for n in 1 2; do
	for _ in $(seq 1 1500); do grep -q "default VM template ready" "$work/h$n/jevmd.log" && break; sleep 0.2; done
	grep -q "default VM template ready" "$work/h$n/jevmd.log" || { log "h$n: no template: $(tail -3 "$work/h$n/jevmd.log")"; exit 1; }
done
H 1 pull -q busybox >/dev/null || exit 1
accel=$(H 1 info --format '{{range .Labels}}{{println .}}{{end}}' | sed -n 's/^com.jevm.accelerator=//p')

for case in $CASES; do
	case $case in
	idle) H 1 run -d --name "m-$case" busybox sleep 1d >/dev/null ;;
	busy) H 1 run -d --name "m-$case" --shm-size 160m busybox sh -c \
		'head -c 67108864 /dev/urandom >/dev/shm/a && while :; do cp /dev/shm/a /dev/shm/b; done' >/dev/null ;;
	*) log "unknown case $case"; continue ;;
	esac
	sleep 5 # the busy one has its file by then
	src=1
	for run in $(seq 1 "$RUNS"); do
		dst=$((3 - src))
		t0=$(ms)
		out=$(H "$src" jevm migrate "m-$case" "tcp://$NET.1$dst:2376" 2>&1) || { log "$case run $run: $out"; break; }
		total=$((($(ms) - t0) / 1000000))
		line=$(echo "$out" | grep '^Migrated')
		python3 - "$case" "$run" "$total" "$line" >>"$raw" <<'PY'
import re, sys
case, run, total, line = sys.argv[1:]
def ms(d):
    m = re.fullmatch(r'([0-9.]+)(ms|s|µs)', d)
    return float(m.group(1)) * {'ms': 1, 's': 1000, 'µs': 0.001}[m.group(2)]
m = re.search(r'\(copy ([0-9.]+[µm]?s), paused ([0-9.]+[µm]?s); (\d+) MiB of memory sent in (\d+) passes', line)
print(f"{case},total,{run},{total}")
print(f"{case},copy,{run},{ms(m.group(1)):.0f}")
print(f"{case},pause,{run},{ms(m.group(2)):.0f}")
print(f"{case},memory_mib,{run},{m.group(3)}")
print(f"{case},passes,{run},{m.group(4)}")
PY
		log "$case run $run: h$src -> h$dst $total ms: $line"
		# The guest is whole there (a lost write shows as a panicked
		# guest kernel sooner or later).
		H "$dst" exec "m-$case" true || { log "$case run $run: the container does not answer on h$dst"; exit 1; }
		src=$dst
	done
	H "$src" rm -f "m-$case" >/dev/null
done

python3 - "$raw" "$accel" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cases = list(dict.fromkeys(r["case"] for r in rows))
metrics = ["total", "copy", "pause", "memory_mib", "passes"]
print(f"accelerator: {sys.argv[2]}; medians of {max(int(r['run']) for r in rows) if rows else 0} migrations")
print("| container | total (CLI) | copy | pause | memory sent | passes |")
print("|---|---|---|---|---|---|")
for c in cases:
    med = {m: statistics.median(float(r["value"]) for r in rows if r["case"] == c and r["metric"] == m) for m in metrics}
    print(f"| {c} | {med['total']:.0f} ms | {med['copy']:.0f} ms | {med['pause']:.0f} ms | {med['memory_mib']:.0f} MiB | {med['passes']:.0f} |")
PY
