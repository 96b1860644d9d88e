# Sourced by bench/compare.sh and hack/conformance/run.sh: stopping an
# engine those scripts started. Needs DOCKER, ROOT, engine_pid and
# engine_dir (the engine's own mktemp directory).

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
