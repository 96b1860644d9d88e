#!/usr/bin/env bash
# jevm's own numbers (issue: core daemon): template cold boot, clone to
# entrypoint running, `docker run --rm busybox true` over N runs, and PSS per
# idle container with 10 running. Starts its own registry and jevmd on a
# temporary data root, and stops them at the end. Results are printed as a
# markdown section (append it to docs/BENCHMARKS.md) and kept in
# bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$ROOT/bin
GUEST=$ROOT/build/guest
RUNS=${RUNS:-20}
IDLE=${IDLE:-10}
work=$(mktemp -d /tmp/jevm-bench-XXXXXX)
mkdir -p "$ROOT/bench/results"
out="$ROOT/bench/results/core-$(date -u +%Y%m%dT%H%M%SZ).md"
export DOCKER_HOST=unix://$work/docker.sock
export DOCKER_CONFIG=$work/docker-config

cleanup() { stop_jevm_bench "$work"; }
trap cleanup EXIT

. "$ROOT/bench/lib/jevm.sh"
start_registry "$work"
start_jevmd "$work" "$work/jevmd.log" --registry-mirror "http://$REG" --insecure-registry "$REG"
template=$(grep -o 'default VM template ready.*elapsed=[^ ]*' "$work/jevmd.log" | sed 's/.*elapsed=//' | tr -d '"')
accel=$(docker info --format '{{range .Labels}}{{println .}}{{end}}' | sed -n 's/^com.jevm.accelerator=//p')
docker pull -q busybox >/dev/null

ms() { date +%s%N; }
pct() { # pct P < numbers
	sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if(i<1)i=1; printf "%.0f", a[i]}'
}
: >"$work/run.txt"
for i in $(seq 1 "$RUNS"); do
	t0=$(ms); docker run --rm busybox true; t1=$(ms)
	echo $(((t1 - t0) / 1000000)) >>"$work/run.txt"
done
# clone → process started, from the daemon's per-start log line.
grep -o 'container started.*' "$work/jevmd.log" | sed -n 's/.*clone=\([^ ]*\).*total=\([^ ]*\).*/\1 \2/p' | tail -n "$RUNS" >"$work/clone.txt" || true
to_ms() { awk '{v=$1; if (v ~ /ms$/) {sub(/ms/,"",v); print v} else if (v ~ /µs$/) {sub(/µs/,"",v); print v/1000} else {sub(/s$/,"",v); print v*1000}}'; }
clone_p50=$(awk '{print $1}' "$work/clone.txt" | to_ms | pct 50)
start_p50=$(awk '{print $2}' "$work/clone.txt" | to_ms | pct 50)
start_p95=$(awk '{print $2}' "$work/clone.txt" | to_ms | pct 95)

for i in $(seq 1 "$IDLE"); do docker run -d --name "idle$i" busybox sleep 3600 >/dev/null; done
sleep 5
pss_total=0
for i in $(seq 1 "$IDLE"); do
	pid=$(docker inspect --format '{{.State.Pid}}' "idle$i")
	kb=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
	pss_total=$((pss_total + kb))
done
rss_total=0
for i in $(seq 1 "$IDLE"); do
	pid=$(docker inspect --format '{{.State.Pid}}' "idle$i")
	kb=$(awk '/^Rss:/ {print $2}' "/proc/$pid/smaps_rollup")
	rss_total=$((rss_total + kb))
done
jevmd_pss=$(awk '/^Pss:/ {print $2}' "/proc/$jevmd/smaps_rollup")

{
	echo "### Core: $(date -u +%Y-%m-%d), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), accelerator: $accel"
	echo
	echo "| metric | value |"
	echo "| --- | --- |"
	echo "| template cold boot + snapshot (default shape) | $template |"
	echo "| clone restored (QEMU start → migration done), p50 | ${clone_p50} ms |"
	echo "| clone → entrypoint running (daemon's start), p50 / p95 | ${start_p50} / ${start_p95} ms |"
	echo "| \`docker run --rm busybox true\` over $RUNS runs, min / p50 / p95 / max | $(pct 0 <"$work/run.txt") / $(pct 50 <"$work/run.txt") / $(pct 95 <"$work/run.txt") / $(pct 100 <"$work/run.txt") ms |"
	echo "| PSS per idle container, $IDLE running (QEMU process) | $((pss_total / IDLE / 1024)) MiB (RSS $((rss_total / IDLE / 1024)) MiB) |"
	echo "| jevmd PSS with $IDLE running | $((jevmd_pss / 1024)) MiB |"
} | tee "$out"
