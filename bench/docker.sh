#!/usr/bin/env bash
# A Docker-backed `/bin/true` run end to end through sandboxd's Docker backend (container with
# every protection, the command its own process, output streamed, container removed) against the
# bare `docker run --rm` with the same flags, side by side in one hyperfine run.
#
# Usage: bench/docker.sh [BUILD_DIR] [RUNS]
# With DOCKER_HOST set (unix:///PATH) it uses that daemon; otherwise it starts a throwaway dockerd
# (own data root, exec root and socket under a temp dir, no iptables, no bridge) and stops it at
# the end. The image is a busybox-static root filesystem imported locally (no registry).
set -euo pipefail
build=${1:-build}
runs=${2:-30}
out=${BENCH_OUT:-docs/bench}
mkdir -p "$out"
bench_bin="$build/bench/bench_docker_true"
[ -x "$bench_bin" ] || { echo "docker.sh: $bench_bin not built" >&2; exit 1; }
command -v docker >/dev/null || { echo "docker.sh: needs the docker CLI (docker.io)" >&2; exit 1; }
src=$(cd "$(dirname "$0")/.." && pwd)

tmp=$(mktemp -d /tmp/sbx-bench-docker.XXXXXX)
chmod 0711 "$tmp"
# shellcheck source=bench/dockerd.sh
. "$(dirname "$0")/dockerd.sh"
cleanup() {
  bench_dockerd_stop
  rm -rf "$tmp"
}
trap cleanup EXIT
bench_dockerd_start "$tmp" || { echo "docker.sh: no Docker daemon answers" >&2; exit 1; }
bench_busybox_image

# The flags the backend gives a container (docker_backend/container_plan.cc), spelled for the CLI.
flags="--rm --network none --cpus 1 --memory 512m --memory-swap 512m --pids-limit 256 \
  --cap-drop ALL --security-opt no-new-privileges \
  --security-opt seccomp=$src/policies/seccomp/default.json --read-only \
  --tmpfs /tmp:rw,nosuid,nodev,size=64m --user 101000:101000 --init \
  --ulimit nofile=1024:1024 --ulimit core=0 --log-driver none"

# The backend as the daemon runs it (NetworkDisabled: an empty network namespace without the
# daemon's network sandbox), the backend with the network set up as the CLI's --network none
# sets it up (the same container config as the docker run line), and docker run.
hyperfine -N --warmup 3 --runs "$runs" \
  --export-json "$out/docker.json" --export-markdown "$out/docker-table.md" \
  -n "sandboxd docker backend" "$bench_bin --host $DOCKER_HOST --image $image -- /bin/true" \
  -n "sandboxd docker backend, network as docker run" \
     "$bench_bin --host $DOCKER_HOST --network-like-docker-run --image $image -- /bin/true" \
  -n "docker run --rm (same flags)" "docker run $flags $image /bin/true"

python3 - "$out/docker.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
s, n = r["sandboxd docker backend"], r["sandboxd docker backend, network as docker run"]
d = r["docker run --rm (same flags)"]
ms = lambda x: f"{x['median']*1e3:.0f} ms"
print(f"median: sandboxd docker backend {ms(s)}, with docker run's network {ms(n)}, "
      f"docker run {ms(d)}; ratios to docker run {s['median']/d['median']:.2f} and "
      f"{n['median']/d['median']:.2f}")
PY
