#!/usr/bin/env bash
# Side-by-side benchmarks (issue #7): jevm against dockerd+runc,
# dockerd+runsc (gVisor) and podman's Docker-compatible API, on the same
# machine, every engine driven by the same docker CLI over its own socket.
#
#   make bench                        # or: bench/compare.sh
#   RUNS=15 PAR=20 PAR_REPS=3 CAP_MAX=100 CAP_SECONDS=180 ENGINES="runc runsc podman jevm" bench/compare.sh
#   NO_DOC=1 bench/compare.sh         # don't rewrite docs/BENCHMARKS.md / docs/bench
#   BENCH_ONLY=build NO_DOC=1 ENGINES="runc jevm" bench/compare.sh   # build, push, pull only
#   BENCH_ONLY=compose NO_DOC=1 ENGINES="runc jevm" bench/compare.sh # compose up/down only
#
# It installs what is missing (apt: docker.io, podman, runsc, gnuplot-nox),
# starts one local registry (bin/jevm-testimages) and then, one engine at a
# time, starts the engine on a private temp dir, pulls 127.0.0.1:PORT/busybox
# and tags it busybox, measures, removes its containers and stops it. No
# engine outlives the script (trap), no global config file is written
# (dockerd gets --config-file, podman CONTAINERS_CONF/REGISTRIES_CONF).
#
# Raw and summary CSVs go to bench/results/compare-<UTC time>/; the summary
# CSV and PNG charts (gnuplot) to docs/bench/; the "Side by side (issue 7)"
# section of docs/BENCHMARKS.md is replaced with the new results.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${JEVM_BIN:-$ROOT/bin}
GUEST=${JEVM_GUEST:-$ROOT/build/guest}
RUNS=${RUNS:-15}               # latency samples per metric
PAR=${PAR:-20}                 # containers started in parallel
PAR_REPS=${PAR_REPS:-3}        # repetitions of the parallel start
CAP_MAX=${CAP_MAX:-100}        # capacity test: stop at this many containers
CAP_SECONDS=${CAP_SECONDS:-180} # ... or after this long (per engine)
ENGINES=${ENGINES:-"runc runsc podman jevm"}
BUILD_RUNS=${BUILD_RUNS:-5}    # samples per build, push and pull metric
BENCH_ONLY=${BENCH_ONLY:-}     # "build": only build/push/pull; "compose": only compose up/down (use with NO_DOC=1)
COMPOSE_RUNS=${COMPOSE_RUNS:-5} # samples of compose up and down
COMPOSE=${COMPOSE:-$(make -s compose-path 2>/dev/null)} # compose v2 (make compose builds it)
T0=$(date +%s)

. "$ROOT/bench/lib/engine.sh" # find_docker_cli, reap_dir, stop_engine
DOCKER=${DOCKER:-$(find_docker_cli)}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
res="$ROOT/bench/results/compare-$stamp"
mkdir -p "$res"
raw="$res/raw.csv"
summary="$res/summary.csv"
notes="$res/notes.txt"
echo "engine,metric,run,value" >"$raw"
: >"$notes"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
note() { echo "$1|$2" >>"$notes"; log "$1: $2"; }

# --- packages (only if missing; installing starts no service here) ---------
need=""
for p in docker.io podman runsc gnuplot-nox runc containerd; do
	dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
	log "installing:$need"
	{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need; } >"$res/apt.log" 2>&1 ||
		log "apt-get install failed (see $res/apt.log); engines that need it will be reported unavailable"
fi
[ -n "$DOCKER" ] || { echo "no docker CLI found" >&2; exit 1; }

work=$(mktemp -d /tmp/jevm-compare-XXXXXX)
chmod 755 "$work"
export DOCKER_CONFIG=$work/docker-config
mkdir -p "$DOCKER_CONFIG"
had_docker0=0; ip link show docker0 >/dev/null 2>&1 && had_docker0=1
had_cnipodman0=0; ip link show cni-podman0 >/dev/null 2>&1 && had_cnipodman0=1
# podman's CNI firewall plugin adds (empty) CNI-FORWARD/CNI-ADMIN chains and
# a FORWARD jump; remove them afterwards if they were not there before.
had_cnichain=0; iptables -S CNI-FORWARD >/dev/null 2>&1 && had_cnichain=1
# dockerd and podman leave empty parent cgroups (cgroup v1) behind.
new_cgroups=""
for g in docker libpod_parent; do ls -d /sys/fs/cgroup/*/$g >/dev/null 2>&1 || new_cgroups="$new_cgroups $g"; done

engine_pid=""
engine_dir=""
cleanup() {
	stop_engine
	[ -n "${registry:-}" ] && kill "$registry" 2>/dev/null && wait "$registry" 2>/dev/null || true
	[ "$had_docker0" = 0 ] && ip link del docker0 2>/dev/null || true
	[ "$had_cnipodman0" = 0 ] && ip link del cni-podman0 2>/dev/null || true
	if [ "$had_cnichain" = 0 ] && iptables -S CNI-FORWARD >/dev/null 2>&1; then
		iptables -D FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD 2>/dev/null || true
		iptables -F CNI-FORWARD 2>/dev/null; iptables -X CNI-FORWARD 2>/dev/null
		iptables -F CNI-ADMIN 2>/dev/null; iptables -X CNI-ADMIN 2>/dev/null
	fi
	for g in $new_cgroups; do for d in /sys/fs/cgroup/*/$g; do rmdir "$d"/conmon "$d" 2>/dev/null || true; done; done
	rm -rf "$work" 2>/dev/null || { sleep 2; rm -rf "$work" 2>/dev/null || true; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- registry with the offline test images --------------------------------
. "$ROOT/bench/lib/jevm.sh"
start_registry "$work" || exit 1

ms() { date +%s%N; }
elapsed_ms() { echo $((($(ms) - $1) / 1000000)); }
rec() { echo "$1,$2,$3,$4" >>"$raw"; }
D() { "$DOCKER" "$@"; }

wait_api() {
	for _ in $(seq 1 "$1"); do
		D version >/dev/null 2>&1 && return 0
		kill -0 "$engine_pid" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}

# --- engine start functions: set engine_pid, engine_dir, DOCKER_HOST -------
start_dockerd() { # $1 = runc|runsc
	local e=$1 d="$work/eng-$1"
	engine_dir=$d
	mkdir -p "$d"
	command -v dockerd >/dev/null || { echo "dockerd not installed"; return 1; }
	if [ "$e" = runsc ]; then
		command -v runsc >/dev/null || { echo "runsc not installed"; return 1; }
		cat >"$d/daemon.json" <<-EOF
		{"runtimes": {"runsc": {"path": "$(command -v runsc)", "runtimeArgs": ["--network=host"]}},
		 "default-runtime": "runsc"}
		EOF
	else
		echo '{}' >"$d/daemon.json"
	fi
	export DOCKER_HOST=unix://$d/docker.sock
	dockerd --config-file "$d/daemon.json" -H "$DOCKER_HOST" --data-root "$d/data" --exec-root "$d/run" \
		--pidfile "$d/docker.pid" --insecure-registry "$REG" --bip 10.213.0.1/24 \
		--iptables=false --ip-forward=false --ip-masq=false --userland-proxy=false \
		>"$d/engine.log" 2>&1 &
	engine_pid=$!
	wait_api 300 || { echo "dockerd did not answer: $(tail -3 "$d/engine.log" | tr '\n' ' ')"; return 1; }
}
start_podman() {
	local d="$work/eng-podman"
	engine_dir=$d
	mkdir -p "$d/tmp" "$d/net"
	command -v podman >/dev/null || { echo "podman not installed"; return 1; }
	cat >"$d/containers.conf" <<-EOF
	[containers]
	default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
	[network]
	network_backend = "cni"
	network_config_dir = "$d/net"
	[engine]
	runtime = "runc"
	cgroup_manager = "cgroupfs"
	events_logger = "file"
	events_logfile_path = "$d/events.log"
	tmp_dir = "$d/tmp"
	EOF
	cat >"$d/registries.conf" <<-EOF
	unqualified-search-registries = ["docker.io"]
	[[registry]]
	location = "$REG"
	insecure = true
	EOF
	export CONTAINERS_CONF=$d/containers.conf CONTAINERS_REGISTRIES_CONF=$d/registries.conf
	export DOCKER_HOST=unix://$d/podman.sock
	podman --root "$d/root" --runroot "$d/runroot" --storage-driver overlay \
		system service --time=0 "$DOCKER_HOST" >"$d/engine.log" 2>&1 &
	engine_pid=$!
	wait_api 300 || { echo "podman service did not answer: $(tail -3 "$d/engine.log" | tr '\n' ' ')"; return 1; }
}
start_jevm() {
	local d="$work/eng-jevm"
	engine_dir=$d
	mkdir -p "$d"
	[ -x "$BIN/jevmd" ] || { echo "bin/jevmd missing (make build)"; return 1; }
	start_jevmd "$d" "$d/engine.log" --insecure-registry "$REG"
	local rc=$?
	engine_pid=$jevmd
	return $rc
}

pss() { python3 "$ROOT/bench/lib/pss.py" "$engine_dir/" "$engine_pid"; }
running_count() { D ps -q --filter status=running | wc -l; }
rm_all() { D ps -aq | xargs -r -n 10 -P 4 "$DOCKER" rm -f >/dev/null 2>&1 || true; }

SLEEPER=(sh -c 'trap "exit 0" TERM; sleep 3600 & wait')

bench_engine() {
	local e=$1 i t c ok
	# run --rm
	log "$e: docker run --rm busybox true x$RUNS"
	D run --rm busybox true >/dev/null 2>&1 || true # warm-up, not recorded
	for i in $(seq 1 "$RUNS"); do
		t=$(ms)
		if D run --rm busybox true >/dev/null 2>"$work/err"; then rec "$e" run_rm "$i" "$(elapsed_ms "$t")"
		else note "$e" "docker run --rm failed: $(head -c 300 "$work/err" | tr '\n,' '  ')"; fi
	done
	# create / start / stop / rm, each timed on its own
	log "$e: create/start/stop/rm x$RUNS"
	for i in $(seq 1 "$RUNS"); do
		t=$(ms); c=$(D create busybox "${SLEEPER[@]}" 2>"$work/err") || { note "$e" "create failed: $(head -c 300 "$work/err" | tr '\n,' '  ')"; continue; }
		rec "$e" create "$i" "$(elapsed_ms "$t")"
		t=$(ms); if D start "$c" >/dev/null 2>"$work/err"; then rec "$e" start "$i" "$(elapsed_ms "$t")"
		else note "$e" "start failed: $(head -c 300 "$work/err" | tr '\n,' '  ')"; D rm -f "$c" >/dev/null 2>&1; continue; fi
		sleep 0.5
		t=$(ms); D stop "$c" >/dev/null 2>&1 && rec "$e" stop "$i" "$(elapsed_ms "$t")"
		t=$(ms); D rm "$c" >/dev/null 2>&1 && rec "$e" rm "$i" "$(elapsed_ms "$t")"
	done
	rm_all
	# PAR containers started in parallel: time until all are running
	log "$e: $PAR x docker run -d in parallel x$PAR_REPS"
	for i in $(seq 1 "$PAR_REPS"); do
		t=$(ms)
		local pids=()
		for j in $(seq 1 "$PAR"); do D run -d --name "par$j" busybox sleep 3600 >/dev/null 2>>"$work/parerr" & pids+=($!); done
		wait "${pids[@]}"
		ok=0
		for _ in $(seq 1 600); do
			[ "$(running_count)" -ge "$PAR" ] && { ok=1; break; }
			sleep 0.1
		done
		if [ "$ok" = 1 ]; then rec "$e" parallel$PAR "$i" "$(elapsed_ms "$t")"
		else note "$e" "parallel start: only $(running_count) of $PAR running after 60 s: $(head -c 200 "$work/parerr" | tr '\n,' '  ')"; fi
		rm_all
		: >"$work/parerr"
	done
	# idle memory and capacity: start busybox sleep one at a time; PSS of
	# the engine's whole process set at 0, 10 and 50; stop at CAP_MAX, after
	# CAP_SECONDS, on a failed start, or when start latency doubles.
	log "$e: idle memory and capacity (<= $CAP_MAX containers, <= $CAP_SECONDS s)"
	sleep 3
	local base base_n p n start_t lat base_lat="" reason="" cnt=0 lats=()
	read -r base base_n < <(pss)
	rec "$e" pss_baseline_kib 1 "$base"
	start_t=$(date +%s)
	for i in $(seq 1 "$CAP_MAX"); do
		t=$(ms)
		if ! D run -d --name "idle$i" busybox sleep 3600 >/dev/null 2>"$work/err"; then
			reason="start $i failed: $(head -c 200 "$work/err" | tr '\n,' '  ')"; break
		fi
		lat=$(elapsed_ms "$t"); cnt=$i; lats+=("$lat")
		rec "$e" cap_start_latency "$i" "$lat"
		if [ "$i" = 5 ]; then base_lat=$(printf '%s\n' "${lats[@]}" | sort -n | sed -n 3p); fi
		if [ "$i" = 10 ] || [ "$i" = 50 ]; then
			sleep 5
			read -r p n < <(pss)
			rec "$e" pss_per_container_n$i 1 $(((p - base) / i))
			rec "$e" pss_total_kib_n$i 1 "$p"
			log "$e: N=$i PSS total $((p / 1024)) MiB over $n processes, baseline $((base / 1024)) MiB -> $(((p - base) / i / 1024)) MiB/container"
			if [ "$e" = jevm ] && [ "$i" = 10 ]; then
				# Where one idle container's memory goes: its QEMU by kind.
				local qpid kind kib
				qpid=$(D inspect -f '{{.State.Pid}}' idle5 2>/dev/null || true)
				if [ -n "$qpid" ] && [ "$qpid" != 0 ]; then
					while read -r kind kib; do rec "$e" "qemu_pss_$kind" 1 "$kib"; done < <(python3 "$ROOT/bench/lib/qemu_pss.py" "$qpid" 2>/dev/null || true)
				fi
			fi
		fi
		if [ -n "$base_lat" ] && [ "$i" -ge 10 ]; then
			local recent
			recent=$(printf '%s\n' "${lats[@]: -5}" | sort -n | sed -n 3p)
			if [ "$recent" -gt $((2 * base_lat)) ]; then reason="start latency doubled (median of last 5: $recent ms, of first 5: $base_lat ms)"; break; fi
		fi
		if [ $(($(date +%s) - start_t)) -ge "$CAP_SECONDS" ]; then reason="time bound ${CAP_SECONDS} s reached"; break; fi
	done
	[ -n "$reason" ] || reason="count bound $CAP_MAX reached"
	rec "$e" capacity 1 "$cnt"
	note "$e" "capacity: $cnt containers running; stopped because: $reason"
	if [ "$cnt" -lt 50 ]; then note "$e" "PSS at N=50 not measured: only $cnt containers were started"; fi
	log "$e: removing $cnt containers"
	rm_all
}

# docker build (issue 13), classic builder on every engine: a 6-step
# Dockerfile with two RUN steps, built without cache, rebuilt with nothing
# changed, and rebuilt after the file the second COPY reads changed; then
# docker push and docker pull of a 50 MiB image through the local registry.
bench_build() {
	local e=$1 ctx="$work/buildctx" i t repo
	rm -rf "$ctx"
	mkdir -p "$ctx"
	cat >"$ctx/Dockerfile" <<-'EOF'
	FROM busybox
	WORKDIR /app
	COPY a.txt .
	RUN cp a.txt copied && echo first > run1
	COPY b.txt .
	RUN cat b.txt copied > both
	EOF
	echo a >"$ctx/a.txt"
	echo b0 >"$ctx/b.txt"
	export DOCKER_BUILDKIT=0
	log "$e: docker build (6 steps, 2 RUN) x$BUILD_RUNS: no cache, cached, one file changed"
	if ! D build -q -t benchbuild "$ctx" >/dev/null 2>"$work/err"; then
		note "$e" "docker build failed: $(head -c 300 "$work/err" | tr '\n,' '  ')"
	else
		for i in $(seq 1 "$BUILD_RUNS"); do
			t=$(ms); D build -q --no-cache -t benchbuild "$ctx" >/dev/null 2>>"$work/err" && rec "$e" build_cold "$i" "$(elapsed_ms "$t")"
			t=$(ms); D build -q -t benchbuild "$ctx" >/dev/null 2>>"$work/err" && rec "$e" build_cached "$i" "$(elapsed_ms "$t")"
			echo "b$i" >"$ctx/b.txt"
			t=$(ms); D build -q -t benchbuild "$ctx" >/dev/null 2>>"$work/err" && rec "$e" build_changed "$i" "$(elapsed_ms "$t")"
		done
	fi
	# 50 MiB in one layer (not compressible), pushed to and pulled back
	# from the registry under a new name each time.
	printf 'FROM busybox\nRUN head -c 52428800 /dev/urandom > /blob\n' >"$ctx/Dockerfile"
	if ! D build -q -t benchblob "$ctx" >/dev/null 2>"$work/err"; then
		note "$e" "50 MiB image build failed: $(head -c 300 "$work/err" | tr '\n,' '  ')"
	else
		log "$e: docker push / pull of a 50 MiB image x$BUILD_RUNS"
		for i in $(seq 1 "$BUILD_RUNS"); do
			repo="$REG/bench-$e-$i/blob:1"
			D tag benchblob "$repo" >/dev/null 2>&1
			t=$(ms)
			if D push -q "$repo" >/dev/null 2>"$work/err"; then rec "$e" push50 "$i" "$(elapsed_ms "$t")"
			else note "$e" "push failed: $(head -c 300 "$work/err" | tr '\n,' '  ')"; D rmi "$repo" >/dev/null 2>&1; break; fi
			D rmi "$repo" >/dev/null 2>&1
			D rmi -f benchblob >/dev/null 2>&1
			t=$(ms)
			if D pull -q "$repo" >/dev/null 2>"$work/err"; then rec "$e" pull50 "$i" "$(elapsed_ms "$t")"
			else note "$e" "pull failed: $(head -c 300 "$work/err" | tr '\n,' '  ')"; break; fi
			D tag "$repo" benchblob >/dev/null 2>&1
			D rmi "$repo" >/dev/null 2>&1
		done
	fi
	unset DOCKER_BUILDKIT
	rm_all
	D rmi -f benchbuild benchblob >/dev/null 2>&1
	D image prune -f >/dev/null 2>&1
}

# One compose application (compose v2 as a docker CLI plugin in a private
# DOCKER_CONFIG): web (busybox httpd with a healthcheck and a published
# port, a named volume), a worker that waits for web to be healthy and
# reaches it by name, on two networks (one internal), and a sidecar in
# web's network namespace (`network_mode: service:web`; a pod with jevm).
# compose_up: `up -d --wait` until every service is running and web is
# healthy; compose_down: `down -v`, everything removed.
bench_compose() {
	local e=$1 dir="$work/composeapp" cfg="$work/compose-config" i t
	if [ -z "$COMPOSE" ] || ! [ -x "$COMPOSE" ]; then
		note "$e" "compose up/down skipped: no compose v2 binary (make compose)"
		return
	fi
	rm -rf "$dir" "$cfg"
	mkdir -p "$dir" "$cfg/cli-plugins"
	ln -s "$COMPOSE" "$cfg/cli-plugins/docker-compose"
	cat >"$dir/compose.yaml" <<-'EOF'
	services:
	  web:
	    image: busybox
	    command: ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 80 -h /www"]
	    ports: ["127.0.0.1::80"]
	    healthcheck:
	      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://localhost/"]
	      interval: 1s
	      timeout: 10s
	      retries: 120
	    volumes: [data:/data]
	    networks: [front, back]
	    stop_grace_period: 1s
	  worker:
	    image: busybox
	    depends_on:
	      web:
	        condition: service_healthy
	    command: ["sh", "-c", "wget -q -O - http://web/ && exec sleep 100000"]
	    networks: [back]
	    stop_grace_period: 1s
	  sidecar:
	    image: busybox
	    network_mode: service:web
	    depends_on: [web]
	    command: ["sleep", "100000"]
	    stop_grace_period: 1s
	networks:
	  front: {}
	  back:
	    internal: true
	volumes:
	  data: {}
	EOF
	log "$e: compose up -d --wait / down -v (web, worker, sidecar) x$COMPOSE_RUNS"
	for i in $(seq 1 "$COMPOSE_RUNS"); do
		t=$(ms)
		# --wait-timeout: podman 4.3 runs health checks from systemd
		# timers, so without systemd web never becomes healthy.
		if DOCKER_CONFIG=$cfg D compose -p benchc -f "$dir/compose.yaml" up -d --wait --wait-timeout 180 --quiet-pull >/dev/null 2>"$work/err"; then
			rec "$e" compose_up "$i" "$(elapsed_ms "$t")"
		else
			note "$e" "compose up failed: $(tail -c 300 "$work/err" | tr '\n,' '  ')"
			DOCKER_CONFIG=$cfg D compose -p benchc -f "$dir/compose.yaml" down -v -t 1 >/dev/null 2>&1
			break
		fi
		t=$(ms)
		if DOCKER_CONFIG=$cfg D compose -p benchc -f "$dir/compose.yaml" down -v -t 1 >/dev/null 2>"$work/err"; then
			rec "$e" compose_down "$i" "$(elapsed_ms "$t")"
		else
			note "$e" "compose down failed: $(tail -c 300 "$work/err" | tr '\n,' '  ')"
			break
		fi
	done
	rm_all
}

jevm_extras() {
	local d="$work/eng-jevm" tmpl accel
	tmpl=$(grep -o 'default VM template ready.*elapsed=[^ ]*' "$d/engine.log" | sed 's/.*elapsed=//' | tr -d '"' | head -1)
	accel=$(D info --format '{{range .Labels}}{{println .}}{{end}}' 2>/dev/null | sed -n 's/^com.jevm.accelerator=//p')
	note jevm "accelerator: ${accel:-unknown}; template cold boot + snapshot: ${tmpl:-unknown}"
	echo "$accel" >"$res/jevm-accel.txt"
	echo "$tmpl" >"$res/jevm-template.txt"
	# per-start timings from the daemon's log: clone restored, clone -> entrypoint
	grep -o 'container started.*' "$d/engine.log" | sed -n 's/.*clone=\([^ ]*\).*total=\([^ ]*\).*/\1 \2/p' >"$work/clone.txt" || true
	to_ms() { awk '{v=$1; if (v ~ /ms$/) {sub(/ms/,"",v); print v} else if (v ~ /µs$/) {sub(/µs/,"",v); print v/1000} else {sub(/s$/,"",v); print v*1000}}'; }
	i=0; awk '{print $1}' "$work/clone.txt" | to_ms | while read -r v; do i=$((i + 1)); rec jevm clone_restore "$i" "${v%.*}"; done
	i=0; awk '{print $2}' "$work/clone.txt" | to_ms | while read -r v; do i=$((i + 1)); rec jevm clone_to_entrypoint "$i" "${v%.*}"; done
	# where a start's time goes: every start step's ms (daemon/steps.go),
	# and the agent's phases in the guest (guest_*), from the same lines
	grep 'msg="container started"' "$d/engine.log" | grep -o '[a-z_-]*_ms=[0-9.]*' |
		awk -F= '{n[$1]++; print $1 "," n[$1] "," $2}' | while IFS=, read -r k i v; do rec jevm "phase_$k" "$i" "${v%.*}"; done
	cp "$d/engine.log" "$res/jevmd.log" 2>/dev/null || true
}

for e in $ENGINES; do
	log "=== $e ==="
	unset CONTAINERS_CONF CONTAINERS_REGISTRIES_CONF
	case $e in
	runc | runsc) msg=$(start_dockerd "$e" 2>&1) ;;
	podman) msg=$(start_podman 2>&1) ;;
	jevm) msg=$(start_jevm 2>&1) ;;
	*) note "$e" "unknown engine"; continue ;;
	esac
	rc=$?
	# the start functions ran in $(...): redo their exports here
	case $e in
	runc | runsc) engine_dir=$work/eng-$e; export DOCKER_HOST=unix://$engine_dir/docker.sock ;;
	podman) engine_dir=$work/eng-podman; export DOCKER_HOST=unix://$engine_dir/podman.sock CONTAINERS_CONF=$engine_dir/containers.conf CONTAINERS_REGISTRIES_CONF=$engine_dir/registries.conf ;;
	jevm) engine_dir=$work/eng-jevm; export DOCKER_HOST=unix://$engine_dir/docker.sock ;;
	esac
	engine_pid=$(pgrep -f -- "$engine_dir/" -o 2>/dev/null | head -1)
	if [ "$rc" != 0 ]; then
		note "$e" "UNAVAILABLE: engine did not start: $msg"
		stop_engine; continue
	fi
	D version --format "$e server {{.Server.Version}} API {{.Server.APIVersion}}" >>"$res/versions.txt" 2>&1
	if ! D pull -q "$REG/busybox" >/dev/null 2>"$work/err" || ! D tag "$REG/busybox" busybox 2>>"$work/err"; then
		note "$e" "UNAVAILABLE: could not pull/tag $REG/busybox: $(head -c 300 "$work/err" | tr '\n,' '  ')"
		stop_engine; continue
	fi
	if ! D run --rm busybox true >/dev/null 2>"$work/err"; then
		note "$e" "UNAVAILABLE: docker run --rm busybox true failed: $(head -c 300 "$work/err" | tr '\n,' '  ')"
		cp "$engine_dir/engine.log" "$res/$e-engine.log" 2>/dev/null
		stop_engine; continue
	fi
	[ -n "$BENCH_ONLY" ] || bench_engine "$e"
	[ -n "$BENCH_ONLY" ] && [ "$BENCH_ONLY" != build ] || bench_build "$e"
	[ -n "$BENCH_ONLY" ] && [ "$BENCH_ONLY" != compose ] || bench_compose "$e"
	[ "$e" = jevm ] && jevm_extras
	cp "$engine_dir/engine.log" "$res/$e-engine.log" 2>/dev/null || true
	log "$e: stopping"
	stop_engine
done

total_s=$(($(date +%s) - T0))
echo "$total_s" >"$res/total_seconds.txt"
log "measurements done in ${total_s} s; writing results"
python3 "$ROOT/bench/lib/report.py" "$res" "$ROOT" "${NO_DOC:-0}" "$RUNS" "$PAR" "$PAR_REPS" "$CAP_MAX" "$CAP_SECONDS" "$("$DOCKER" --version)"
