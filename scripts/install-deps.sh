#!/usr/bin/env bash
# Installs the Debian 12 packages sandboxd needs to build, test and benchmark, where missing.
# Idempotent; needs root (apt-get). Usage: scripts/install-deps.sh [build|test|fuzz]
set -euo pipefail

# ccache: a fresh clone or build directory reuses the compilations of earlier builds.
build_pkgs=(
  build-essential cmake pkg-config ccache
  libseccomp-dev libcap-dev libnl-3-dev libnl-route-3-dev
  libboost1.81-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libgtest-dev
  libsqlite3-dev libpqxx-dev libyaml-cpp-dev libsystemd-dev libgit2-dev
  libssl-dev
)
# postgresql: the store tests start a throwaway server from /usr/lib/postgresql/15/bin.
# systemd: systemd-analyze verify of the unit files; dpkg-dev and fakeroot: cpack -G DEB and
# dpkg-deb; debootstrap: the package installed into a chroot (skipped when it cannot fetch).
test_pkgs=(bubblewrap hyperfine jq busybox-static postgresql systemd dpkg-dev fakeroot debootstrap)
# git: the checkout tests make their repositories with it (the daemon itself uses libgit2).
test_pkgs+=(git)
# openssl: the WebSocket client's tests make their CA and certificates with it.
test_pkgs+=(openssl)
# docker.io: the Docker backend's tests start their own dockerd (their image is busybox-static's).
test_pkgs+=(docker.io)
# curl and wrk: bench/soak.sh and bench/load.sh drive a real daemon with them.
test_pkgs+=(curl wrk)
# Debian's python3 with python3-websockets runs the Python SDK's tests; venv, pip and
# setuptools install it the way its README says.
test_pkgs+=(python3 python3-websockets python3-venv python3-pip python3-setuptools)
# clang and its runtimes: libFuzzer for `make fuzz`.
fuzz_pkgs=(clang-14 libclang-rt-14-dev)

want=("${build_pkgs[@]}")
if [ "${1:-build}" = test ]; then want+=("${test_pkgs[@]}"); fi
if [ "${1:-build}" = fuzz ]; then want+=("${fuzz_pkgs[@]}"); fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node and npm build the web page (api/web/) and run the JavaScript tests; Debian's npm, unless
# a nodejs that bundles npm is installed already.
if ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
# Debian's chromium runs the web page's browser tests.
if [ "${1:-build}" = test ] && ! command -v chromium >/dev/null; then missing+=(chromium); fi
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
