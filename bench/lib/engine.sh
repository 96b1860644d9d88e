# Sourced by bench/compare.sh and hack/conformance/run.sh: the docker CLI
# they drive engines with, and stopping an engine they started (needs
# DOCKER, ROOT, engine_pid and engine_dir, the engine's own mktemp
# directory).

# find_docker_cli prints the docker CLI to use: v28 (from /usr/local/bin)
# rather than Debian's 20.10 one that the docker.io package brings.
find_docker_cli() {
	local c v
	for c in /usr/local/bin/docker $(type -ap docker); do
		v=$("$c" --version 2>/dev/null | sed -n 's/Docker version \([0-9]*\)\..*/\1/p')
		if [ -n "$v" ] && [ "$v" -ge 28 ]; then echo "$c"; return; fi
	done
	command -v docker || true
}

# reap_dir DIR: kills every process whose command line names DIR (only
# processes the calling script started: DIR is its own mktemp directory)
# and their descendants (containerd, shims, conmon, QEMU), then unmounts
# what is mounted below DIR.
reap_dir() {
	local dir=$1 pids
	[ -n "$dir" ] || return 0
	for sig in TERM KILL; do
		pids=$(python3 "$ROOT/bench/lib/pss.py" --pids "$dir/" | grep -vx "$$" || true)
		[ -n "$pids" ] || break
		kill -"$sig" $pids 2>/dev/null || true
		sleep 2
	done
	grep -- " $dir" /proc/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
stop_engine() {
	if [ -n "$engine_pid" ] && kill -0 "$engine_pid" 2>/dev/null; then
		"$DOCKER" ps -aq 2>/dev/null | xargs -r -n 10 -P 4 "$DOCKER" rm -f >/dev/null 2>&1 || true
		kill "$engine_pid" 2>/dev/null || true
		for _ in $(seq 1 150); do kill -0 "$engine_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$engine_pid" 2>/dev/null || true
		wait "$engine_pid" 2>/dev/null || true
	fi
	engine_pid=""
	reap_dir "$engine_dir"
	engine_dir=""
}
