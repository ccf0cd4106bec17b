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
dockerd_pid=
cleanup() {
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 200); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    grep " $tmp/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ -z "${DOCKER_HOST:-}" ]; then
  dockerd --data-root "$tmp/data" --exec-root "$tmp/exec" --pidfile "$tmp/dockerd.pid" \
    -H "unix://$tmp/docker.sock" --iptables=false --ip6tables=false --bridge=none \
    --containerd-namespace sbx-bench --containerd-plugins-namespace sbx-bench-plugins \
    >"$tmp/dockerd.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$tmp/docker.sock"
  for _ in $(seq 1 600); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
  docker version >/dev/null || { tail -20 "$tmp/dockerd.log" >&2; exit 1; }
fi

image=sbx-bench-busybox:1
if ! docker image inspect "$image" >/dev/null 2>&1; then
  root="$tmp/rootfs"
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/dev" "$root/sys"
  chmod 1777 "$root/tmp"  # runc gives the /tmp tmpfs the image directory's mode
  cp "$(command -v busybox)" "$root/bin/busybox"
  for a in sh true sleep cat echo; do ln -s busybox "$root/bin/$a"; done
  tar -C "$root" -c . | docker import - "$image" >/dev/null
fi

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
