#!/usr/bin/env bash
# Seccomp costs: compiling Docker's default profile (bench_seccomp_compile), and a sandbox's
# start with the builtin profile, with Docker's profile and unconfined, side by side in one
# hyperfine run. Usage: bench/seccomp.sh [BUILD_DIR] [RUNS]
set -euo pipefail
build=${1:-build}
runs=${2:-100}
out=${BENCH_OUT:-docs/bench}
mkdir -p "$out"
sbx="$build/supervisor/sandboxd"
docker_profile=tests/testdata/seccomp/docker-default.json

"$build/bench/bench_seccomp_compile" "$docker_profile" 50 | tee "$out/seccomp_compile.txt"

hyperfine -N --warmup 10 --runs "$runs" \
  --export-json "$out/seccomp_startup.json" --export-markdown "$out/seccomp_startup.md" \
  -n "builtin profile" "$sbx exec -- /bin/true" \
  -n "docker-default.json" "$sbx exec --security-opt seccomp=$docker_profile -- /bin/true" \
  -n "unconfined" "$sbx exec --security-opt seccomp=unconfined -- /bin/true"
