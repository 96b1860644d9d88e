#!/usr/bin/env bash
# jevm volume numbers (issue #6): sequential write and read throughput and
# small-file create/remove rate inside one container, on a bind mount, a
# named volume (both virtio-9p), the container's own root disk (qcow2 on
# virtio-blk) and the guest's tmpfs (a baseline for the shell loop under
# TCG); and what mounts add to `docker run` latency. Starts its own
# registry and jevmd on a temporary data root and stops them at the end.
# Results are printed as a markdown section (append it to
# docs/BENCHMARKS.md) and kept in bench/results/.
#
#   MB=64 FILES=2000 RUNS=5 bench/volumes.sh
#   JEVM_BIN=/tmp/mybin bench/volumes.sh     # jevmd, jevm-agent from there
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${JEVM_BIN:-$ROOT/bin}
TESTIMAGES=${JEVM_TESTIMAGES:-$ROOT/bin/jevm-testimages}
GUEST=${JEVM_GUEST:-$ROOT/build/guest}
MB=${MB:-64}
FILES=${FILES:-2000}
RUNS=${RUNS:-5}
work=$(mktemp -d /tmp/jevm-vbench-XXXXXX)
mkdir -p "$ROOT/bench/results"
out="$ROOT/bench/results/volumes-$(date -u +%Y%m%dT%H%M%SZ).md"
export DOCKER_HOST=unix://$work/docker.sock
export DOCKER_CONFIG=$work/docker-config

cleanup() {
	docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
	docker volume rm -f benchvol v1 v2 v3 v4 >/dev/null 2>&1 || true
	stop_jevm_bench "$work"
}
trap cleanup EXIT

. "$ROOT/bench/lib/jevm.sh"
start_registry "$work"
start_jevmd "$work" "$work/jevmd.log" --registry-mirror "http://$REG" --insecure-registry "$REG"
accel=$(docker info --format '{{range .Labels}}{{println .}}{{end}}' | sed -n 's/^com.jevm.accelerator=//p')
docker pull -q busybox >/dev/null

bind=$work/bind
mkdir -p "$bind"
docker volume create benchvol >/dev/null

# In the guest: busybox sh. Times come from the guest's clock.
cat >"$bind/bench.sh" <<'EOF'
# busybox date has no %N: the guest's uptime, in ms (10 ms resolution).
now() { read up _ < /proc/uptime; echo $(( ${up%.*} * 1000 + 1${up#*.} * 10 - 1000 )); }
ms() { echo $(( $2 - $1 )); }
run() { # label dir
	d=$2/jevm-bench
	rm -rf "$d"; mkdir -p "$d"
	sync; echo 3 > /proc/sys/vm/drop_caches
	t0=$(now); dd if=/dev/zero of="$d/big" bs=1M count=$MB conv=fsync 2>/dev/null; t1=$(now)
	sync; echo 3 > /proc/sys/vm/drop_caches
	t2=$(now); dd if="$d/big" of=/dev/null bs=1M 2>/dev/null; t3=$(now)
	mkdir "$d/small"
	t4=$(now)
	i=0; while [ $i -lt $FILES ]; do : > "$d/small/f$i"; i=$((i+1)); done
	t5=$(now); sync; t6=$(now)
	rm -rf "$d/small"; sync; t7=$(now)
	echo "RESULT $1 $(ms $t0 $t1) $(ms $t2 $t3) $(ms $t4 $t5) $(ms $t4 $t6) $(ms $t6 $t7)"
	rm -rf "$d"
}
run bind /bind
run volume /vol
run rootdisk ""
run tmpfs /tbench
EOF

# One container; each target measured three times, the median kept.
for rep in 1 2 3; do
	docker run --rm -m 512m -e MB="$MB" -e FILES="$FILES" -v "$bind:/bind" -v benchvol:/vol \
		--tmpfs /tbench:size=256m busybox sh /bind/bench.sh | grep '^RESULT' >>"$work/results.txt"
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
row() { # label name
	local wr rd cr crs rm
	wr=$(awk -v l="$1" '$2==l {print $3}' "$work/results.txt" | median)
	rd=$(awk -v l="$1" '$2==l {print $4}' "$work/results.txt" | median)
	cr=$(awk -v l="$1" '$2==l {print $5}' "$work/results.txt" | median)
	crs=$(awk -v l="$1" '$2==l {print $6}' "$work/results.txt" | median)
	rm=$(awk -v l="$1" '$2==l {print $7}' "$work/results.txt" | median)
	awk -v n="$2" -v mb="$MB" -v f="$FILES" -v wr="$wr" -v rd="$rd" -v cr="$cr" -v crs="$crs" -v rm="$rm" 'BEGIN {
		printf "| %s | %.1f MB/s (%d ms) | %.1f MB/s (%d ms) | %.0f files/s (%d ms; +sync %d ms) | %.0f files/s (%d ms) |\n",
			n, mb*1.048576/(wr/1000), wr, mb*1.048576/(rd/1000), rd, f/(cr/1000), cr, crs, f/(rm/1000), rm }'
}

# Start latency: `docker run --rm busybox true` with 0, 1 and 4 mounts.
for v in v1 v2 v3 v4; do docker volume create "$v" >/dev/null; done
lat() { # args...
	: >"$work/lat.txt"
	for _ in $(seq 1 "$RUNS"); do
		t0=$(date +%s%N); docker run --rm "$@" busybox true; t1=$(date +%s%N)
		echo $(((t1 - t0) / 1000000)) >>"$work/lat.txt"
	done
	median <"$work/lat.txt"
}
lat0=$(lat)
lat1=$(lat -v v1:/v1)
lat4=$(lat -v v1:/v1 -v v2:/v2 -v v3:/v3 -v "$bind:/b")
lat6=$(lat -v v1:/v1 -v v2:/v2 -v v3:/v3 -v v4:/v4 -v "$bind:/b" -v "$work:/w")
latt=$(lat --tmpfs /t1 --tmpfs /t2)

cpu=$(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//')
{
	echo "### Volumes: $(date -u +%Y-%m-%d), $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), accelerator: $accel, $(uname -r) host, QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}')"
	echo
	echo "One container (512 MiB, 1 vCPU), busybox, median of 3: \`dd bs=1M count=$MB conv=fsync\` then,"
	echo "after \`drop_caches\` in the guest, \`dd\` back to /dev/null (the host's page cache stays warm"
	echo "for every target); $FILES empty files created with a shell loop (\`: > f\$i\`, no fork per"
	echo "file), then \`rm -rf\` + \`sync\`. 9p: \`cache=mmap,access=client,msize=512000\`,"
	echo "\`security_model=passthrough\`; root disk: the container's qcow2 overlay on virtio-blk."
	echo
	echo "| target | seq write | seq read | create $FILES files | remove $FILES files |"
	echo "| --- | --- | --- | --- | --- |"
	row bind "bind mount (9p)"
	row volume "named volume (9p)"
	row rootdisk "container root disk (ext4 on qcow2)"
	row tmpfs "guest tmpfs (\`--tmpfs\`, loop baseline)"
	echo
	echo "| \`docker run --rm busybox true\`, median of $RUNS | ms |"
	echo "| --- | --- |"
	echo "| no mounts | $lat0 |"
	echo "| 1 named volume | $lat1 |"
	echo "| 3 named volumes + 1 bind mount (the template's 4 pre-plugged shares) | $lat4 |"
	echo "| 4 named volumes + 2 bind mounts (2 shares hot-plugged) | $lat6 |"
	echo "| 2 \`--tmpfs\` | $latt |"
} | tee "$out"
