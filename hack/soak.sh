#!/bin/bash
# Soak test (issue 16; `make soak`, not part of `make test`): a private
# jevmd runs SOAK_RUNS `docker run --rm` cycles, then SOAK_CYCLES cycles of
# network create, volume create, create (with both), start, exec, stop, rm,
# volume rm, network rm. Before and after, it counts what a jevmd can leak
# on the host (QEMU processes, taps, bridges, iptables rules, files under
# its exec root, containers, volumes, networks) and in itself (open file
# descriptors, goroutines, RSS), prints both and fails if anything was left
# behind or grew past a small margin.
#
# Needs: `make build images guest` (the Makefile's soak target does it),
# root, the docker CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${SOAK_RUNS:-1000}
CYCLES=${SOAK_CYCLES:-200}
BIN=${JEVM_BIN:-$PWD/bin}
GUEST=${JEVM_GUEST:-$PWD/build/guest}
ROOT=$(mktemp -d /tmp/jevm-soak.XXXXXX)
SOCK=$ROOT/docker.sock
REG_ADDR=127.0.0.1:${SOAK_REGISTRY_PORT:-5098}

"$BIN/jevm-testimages" serve --addr "$REG_ADDR" --dir "$PWD/build/registry" >"$ROOT/registry.log" 2>&1 &
REG=$!
"$BIN/jevmd" -H "unix://$SOCK" --data-root "$ROOT/data" --exec-root "$ROOT/run" --config-file /dev/null \
	--registry-mirror "http://$REG_ADDR" --insecure-registry "$REG_ADDR" \
	--guest-dir "$GUEST" --agent "$BIN/jevm-agent" --debug >"$ROOT/jevmd.log" 2>&1 &
D=$!
cleanup() {
	kill "$D" "$REG" 2>/dev/null || true
	wait "$D" 2>/dev/null || true
	rm -rf "$ROOT"
}
trap cleanup EXIT
export DOCKER_HOST=unix://$SOCK DOCKER_CONFIG=$ROOT/docker-config
for _ in $(seq 1 200); do docker version >/dev/null 2>&1 && break; sleep 0.3; done
docker pull -q busybox >/dev/null
docker run --rm busybox true >/dev/null # the template, warm

# snapshot prints one "name value" line per thing counted.
snapshot() {
	echo "qemu_processes $(pgrep -c -f "qemu-system.*$ROOT" || true)"
	echo "taps $(ip -o link show type tun 2>/dev/null | wc -l)"
	echo "bridges $(ip -o link show type bridge 2>/dev/null | grep -c ' jevm' || true)"
	echo "iptables_rules $( (iptables-save 2>/dev/null; ip6tables-save 2>/dev/null) | grep -c -i jevm || true)"
	echo "exec_root_files $(find "$ROOT/run" -mindepth 1 2>/dev/null | wc -l)"
	echo "mounts_under_root $(grep -c " $ROOT" /proc/self/mountinfo || true)"
	echo "containers $(docker ps -aq | wc -l)"
	echo "volumes $(docker volume ls -q | wc -l)"
	echo "networks $(docker network ls -q | wc -l)"
	echo "jevmd_fds $(ls /proc/$D/fd | wc -l)"
	echo "jevmd_goroutines $(docker info --format '{{.NGoroutines}}')"
	echo "jevmd_rss_mib $(awk '/^VmRSS:/ {print int($2/1024)}' /proc/$D/status)"
}

sleep 2
before=$(snapshot)
start=$(date +%s)
for i in $(seq 1 "$RUNS"); do
	docker run --rm busybox true
	if ((i % 100 == 0)); then echo "run --rm: $i/$RUNS ($(($(date +%s) - start)) s)"; fi
done
runs_s=$(($(date +%s) - start))
start=$(date +%s)
for i in $(seq 1 "$CYCLES"); do
	docker network create "soak-net-$i" >/dev/null
	docker volume create "soak-vol-$i" >/dev/null
	docker create --name "soak-$i" --network "soak-net-$i" -v "soak-vol-$i:/data" busybox sh -c 'echo x > /data/f; exec sleep 1000' >/dev/null
	docker start "soak-$i" >/dev/null
	[ "$(docker exec "soak-$i" cat /etc/hostname)" != "" ]
	docker stop -t 1 "soak-$i" >/dev/null
	docker rm "soak-$i" >/dev/null
	docker volume rm "soak-vol-$i" >/dev/null
	docker network rm "soak-net-$i" >/dev/null
	if ((i % 20 == 0)); then echo "cycles: $i/$CYCLES ($(($(date +%s) - start)) s)"; fi
done
cycles_s=$(($(date +%s) - start))
sleep 5
after=$(snapshot)

echo
echo "soak: $RUNS x docker run --rm in ${runs_s} s, $CYCLES x network/volume/create/start/exec/stop/rm in ${cycles_s} s"
printf "%-20s %10s %10s\n" what before after
fail=0
while read -r name b; do
	a=$(echo "$after" | awk -v n="$name" '$1 == n {print $2}')
	printf "%-20s %10s %10s\n" "$name" "$b" "$a"
	case $name in
	jevmd_fds | jevmd_goroutines) limit=$((b + b / 10 + 5)) ;; # pools and caches settle
	jevmd_rss_mib) limit=$((b * 2 + 32)) ;;
	*) limit=$b ;;
	esac
	if ((a > limit)); then
		echo "  LEAK: $name grew from $b to $a (limit $limit)"
		fail=1
	fi
done <<<"$before"
exit $fail
