# Sourced by the bench scripts: a local registry serving the offline test
# images, and a jevmd on a private directory. Needs BIN and GUEST set.

# start_registry DIR: serves the test images on a free loopback port.
# Sets REG (host:port) and registry (its pid); logs to DIR/registry.log.
start_registry() {
	local dir=$1 port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	REG=127.0.0.1:$port
	"${TESTIMAGES:-$BIN/jevm-testimages}" serve --addr "$REG" --dir "$dir/registry" >"$dir/registry.log" 2>&1 &
	registry=$!
	for _ in $(seq 1 150); do curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && return 0; sleep 0.2; done
	echo "registry did not start: $(tail -3 "$dir/registry.log" | tr '\n' ' ')" >&2
	return 1
}

# start_jevmd DIR LOG [jevmd flags...]: jevmd with its data and exec roots
# and socket in DIR, logging to LOG; exports DOCKER_HOST and sets jevmd (its
# pid). Returns once the API answers and the default template is booted.
start_jevmd() {
	local dir=$1 log=$2
	shift 2
	export DOCKER_HOST=unix://$dir/docker.sock
	"$BIN/jevmd" -H "$DOCKER_HOST" --config-file /dev/null --data-root "$dir/data" --exec-root "$dir/run" \
		--guest-dir "$GUEST" \
		--agent "$BIN/jevm-agent" "$@" >"$log" 2>&1 &
	jevmd=$!
	local up=
	for _ in $(seq 1 600); do
		"${DOCKER:-docker}" version >/dev/null 2>&1 && { up=1; break; }
		kill -0 "$jevmd" 2>/dev/null || break
		sleep 0.2
	done
	[ -n "$up" ] || { echo "jevmd did not answer: $(tail -3 "$log" | tr '\n' ' ')" >&2; return 1; }
	# The daemon boots the default template in the background; wait for it.
	for _ in $(seq 1 1500); do grep -q "default VM template ready" "$log" && return 0; sleep 0.2; done
	echo "default VM template not ready after 300 s" >&2
	return 1
}

# stop_jevm_bench DIR: what a bench script started goes (containers,
# jevmd, the registry) and DIR with it; for an EXIT trap.
stop_jevm_bench() {
	docker ps -aq 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
	[ -n "${jevmd:-}" ] && kill "$jevmd" 2>/dev/null && wait "$jevmd" 2>/dev/null || true
	[ -n "${registry:-}" ] && kill "$registry" 2>/dev/null && wait "$registry" 2>/dev/null || true
	rm -rf "$1"
}
