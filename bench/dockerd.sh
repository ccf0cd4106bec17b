# Sourced by the benches that compare with Docker (docker.sh, sandbox.sh).
#
#   bench_dockerd_start TMP   with DOCKER_HOST set (unix:///PATH), uses that daemon; otherwise
#                             starts a throwaway dockerd (data root, exec root and socket under
#                             TMP, no iptables, no bridge) and exports DOCKER_HOST; returns 1
#                             when no daemon answers
#   bench_dockerd_stop        stops the throwaway dockerd and unmounts what it left under TMP
#   bench_busybox_image       imports sbx-bench-busybox:1 (a busybox-static root filesystem, no
#                             registry) unless it exists; sets $image
bench_dockerd_pid=
bench_dockerd_tmp=

bench_dockerd_start() {
  bench_dockerd_tmp=$1
  [ -n "${DOCKER_HOST:-}" ] && { docker version > /dev/null 2>&1; return; }
  command -v dockerd > /dev/null || return 1
  dockerd --data-root "$1/data" --exec-root "$1/exec" --pidfile "$1/dockerd.pid" \
    -H "unix://$1/docker.sock" --iptables=false --ip6tables=false --bridge=none \
    --containerd-namespace sbx-bench --containerd-plugins-namespace sbx-bench-plugins \
    > "$1/dockerd.log" 2>&1 &
  bench_dockerd_pid=$!
  export DOCKER_HOST="unix://$1/docker.sock"
  for _ in $(seq 1 600); do docker version > /dev/null 2>&1 && return 0; sleep 0.1; done
  tail -20 "$1/dockerd.log" >&2
  return 1
}

bench_dockerd_stop() {
  [ -n "$bench_dockerd_pid" ] || return 0
  kill "$bench_dockerd_pid" 2> /dev/null || true
  for _ in $(seq 1 200); do kill -0 "$bench_dockerd_pid" 2> /dev/null || break; sleep 0.1; done
  grep " $bench_dockerd_tmp/" /proc/self/mountinfo | awk '{print $5}' | sort -r |
    xargs -r -n1 umount -l || true
  bench_dockerd_pid=
}

bench_busybox_image() {
  image=sbx-bench-busybox:1
  docker image inspect "$image" > /dev/null 2>&1 && return 0
  local root
  root=$(mktemp -d /tmp/sbx-bench-rootfs.XXXXXX)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/dev" "$root/sys"
  chmod 1777 "$root/tmp"  # runc gives the /tmp tmpfs the image directory's mode
  cp "$(command -v busybox)" "$root/bin/busybox"
  for a in sh true sleep cat echo; do ln -s busybox "$root/bin/$a"; done
  tar -C "$root" -c . | docker import - "$image" > /dev/null
  rm -rf "$root"
}
