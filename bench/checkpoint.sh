#!/usr/bin/env bash
# Checkpoint, restore and fork times (issue 18) against the memory the
# container uses: for each size, a 512 MiB container (with a 300 MiB
# /dev/shm: docker's default is 64 MiB) that fills that much of its
# /dev/shm with random bytes (which do not compress) and then counts, then RUNS times each:
#   checkpoint   `docker checkpoint create` (the container stops)
#   restore      `docker start --checkpoint` of it
#   leave        `docker checkpoint create --leave-running`
#   fork         `docker start --checkpoint --checkpoint-dir` of a new
#                container (created before, not timed)
# and the checkpoint's state size. jevm alone: dockerd checkpoints with
# CRIU, and Debian 12's CRIU (3.17) does not run on these machines' kernel
# (`criu check`: "vdso: Unexpected rt vDSO area bounds"), so there is no
# dockerd column to put beside it here.
#
#   make bench-checkpoint             # or: bench/checkpoint.sh
#   SIZES="0 64 192" RUNS=3 bench/checkpoint.sh
#
# Results: bench/results/checkpoint-<UTC time>/raw.csv (size_mib,metric,
# run,value) and a markdown table on stdout for docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${JEVM_BIN:-$ROOT/bin}
GUEST=${JEVM_GUEST:-$ROOT/build/guest}
SIZES=${SIZES:-"0 64 192"}
RUNS=${RUNS:-3}
work=$(mktemp -d /tmp/jevm-ckbench-XXXXXX)
res="$ROOT/bench/results/checkpoint-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$res"
raw="$res/raw.csv"
echo "size_mib,metric,run,value" >"$raw"
export DOCKER_CONFIG=$work/docker-config

cleanup() { stop_jevm_bench "$work"; }
trap cleanup EXIT

. "$ROOT/bench/lib/jevm.sh"
start_registry "$work"
start_jevmd "$work" "$work/jevmd.log" --experimental --registry-mirror "http://$REG" --insecure-registry "$REG"
accel=$(docker info --format '{{range .Labels}}{{println .}}{{end}}' | sed -n 's/^com.jevm.accelerator=//p')
docker pull -q busybox >/dev/null

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
ms() { date +%s%N; }
timed() { # timed SIZE METRIC RUN cmd...: records the command's time
	local t0 size=$1 metric=$2 run=$3
	shift 3
	t0=$(ms)
	"$@" >/dev/null
	local v=$((($(ms) - t0) / 1000000))
	echo "$size,$metric,$run,$v" >>"$raw"
	log "$size MiB $metric run $run: $v ms"
}
wait_count() { # wait_count NAME: until the counter logged a line more
	local before
	before=$(docker logs "$1" 2>/dev/null | wc -l)
	for _ in $(seq 1 300); do
		[ "$(docker logs "$1" 2>/dev/null | wc -l)" -gt "$before" ] && return 0
		sleep 0.2
	done
	echo "$1: the counter stopped" >&2
	return 1
}

for size in $SIZES; do
	name=ck$size
	docker run -d --name "$name" -m 512m --shm-size 300m busybox sh -c \
		"dd if=/dev/urandom of=/dev/shm/fill bs=1M count=$size 2>/dev/null; echo filled; i=0; while true; do i=\$((i+1)); echo \$i; sleep 1; done" >/dev/null
	for _ in $(seq 1 600); do docker logs "$name" 2>/dev/null | grep -q filled && break; sleep 0.5; done
	for run in $(seq 1 "$RUNS"); do
		timed "$size" checkpoint "$run" docker checkpoint create "$name" "c$run"
		st=$(stat -c %s "$work/data/containers/$(docker inspect --format '{{.Id}}' "$name")/checkpoints/c$run/vm.state")
		echo "$size,state_mib,$run,$((st >> 20))" >>"$raw"
		timed "$size" restore "$run" docker start --checkpoint "c$run" "$name"
		wait_count "$name"
		timed "$size" leave "$run" docker checkpoint create --leave-running --checkpoint-dir "$work/forks" "$name" "l$run"
		docker create --name "fork$size-$run" -m 512m busybox true >/dev/null
		timed "$size" fork "$run" docker start --checkpoint "l$run" --checkpoint-dir "$work/forks" "fork$size-$run"
		wait_count "fork$size-$run"
		docker rm -f "fork$size-$run" >/dev/null
		docker checkpoint rm "$name" "c$run"
		rm -rf "$work/forks/l$run"
	done
	docker rm -f "$name" >/dev/null
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
{
	echo "### $(date -u '+%Y-%m-%d %H:%M') UTC: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r); accelerator: $accel; medians of $RUNS runs, 512 MiB VMs"
	echo
	echo "| memory filled | state | checkpoint (stops) | restore | checkpoint --leave-running | fork |"
	echo "|---|---|---|---|---|---|"
	for size in $SIZES; do
		m() { awk -F, -v s="$size" -v k="$1" '$1==s && $2==k {print $4}' "$raw" | median; }
		echo "| $size MiB | $(m state_mib) MiB | $(m checkpoint) ms | $(m restore) ms | $(m leave) ms | $(m fork) ms |"
	done
} | tee "$res/summary.md"
