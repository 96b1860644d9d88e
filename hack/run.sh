#!/usr/bin/env bash
# The `make run` demo: a local registry that serves the test images (also as
# a Docker Hub mirror, so plain `busybox` works offline), then jevmd in the
# foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
GUEST=$PWD/build/guest
REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5000}
SOCK=${JEVM_SOCK:-/run/jevm/docker.sock}

"$BIN/jevm-testimages" serve --addr "$REGISTRY_ADDR" --dir "$PWD/build/registry" &
registry=$!
trap 'kill $registry 2>/dev/null; wait $registry 2>/dev/null' EXIT
for _ in $(seq 1 100); do
	curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && break
	sleep 0.2
done

cat <<MSG

  jevmd is starting. In another shell:

      export DOCKER_HOST=unix://$SOCK
      docker run --rm busybox echo hello

  Images served by the local registry (also as a Docker Hub mirror):
  busybox, debian, web, redis, layers  (or $REGISTRY_ADDR/NAME)

MSG
"$BIN/jevmd" -H "unix://$SOCK" \
	--config-file /dev/null \
	--registry-mirror "http://$REGISTRY_ADDR" --insecure-registry "$REGISTRY_ADDR" \
	--guest-dir "$GUEST" \
	--agent "$BIN/jevm-agent" "$@"
