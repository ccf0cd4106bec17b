#!/usr/bin/env bash
# Builds the .deb with cpack in BUILD_DIR (from what is already built), checks its contents and
# control data (dpkg-deb -c / -I), then installs it into a Debian 12 chroot made by debootstrap
# and runs the maintainer scripts: install (state directory, units enabled, nothing started),
# remove, purge. Exit 77: skipped, with the reason (no debootstrap, or no Debian archive to fetch
# from). The archive is the host's own (its apt sources; SBX_DEBIAN_ARCHIVE=URI to choose
# another), else debootstrap's default. The chroot's base system is cached in
# BUILD_DIR/debootstrap-cache.
# Usage: deb_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
fail() { echo "FAIL: $*"; exit 1; }

for tool in cpack dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
done
cd "$build"
rm -f sandboxd_*.deb
cpack -G DEB >cpack.log 2>&1 || { cat cpack.log; fail "cpack -G DEB"; }
deb=$(ls sandboxd_*_amd64.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || fail "cpack made no sandboxd_*_amd64.deb"

contents=$(dpkg-deb -c "$deb" | awk '{print $1, $NF}')
want=(
  "-rwxr-xr-x ./usr/bin/sandboxd"
  "-rwxr-xr-x ./usr/bin/sandboxctl"
  "-rwxr-xr-x ./usr/libexec/sandboxd/sandboxd-server"
  "-rwxr-xr-x ./usr/libexec/sandboxd/sandboxd-mcp"
  "-rw-r--r-- ./usr/lib/systemd/system/sandboxd.service"
  "-rw-r--r-- ./usr/lib/systemd/system/sandboxd.socket"
  "-rw-r--r-- ./usr/lib/tmpfiles.d/sandboxd.conf"
  "-rw-r--r-- ./etc/sandboxd/sandboxd.yaml"
  "drwxr-xr-x ./etc/sandboxd/policies/"
  "drwxr-xr-x ./etc/sandboxd/seccomp/"
  "-rw-r--r-- ./usr/share/sandboxd/policies/commands.yaml"
  "-rw-r--r-- ./usr/share/sandboxd/seccomp/default.json"
  "-rw-r--r-- ./usr/share/man/man8/sandboxd.8"
  "-rw-r--r-- ./usr/share/man/man1/sandboxctl.1"
  "-rw-r--r-- ./usr/share/doc/sandboxd/operations.md"
  "-rw-r--r-- ./usr/share/sandboxd/web/index.html"
)
for w in "${want[@]}"; do
  grep -qxF -- "$w" <<<"$contents" || { echo "$contents"; fail "the package lacks '$w'"; }
done
if grep -qE " \./usr/local/| \./usr/etc/| \./tmp/" <<<"$contents"; then
  fail "files outside the Debian layout: $(grep -E ' ./usr/local/| ./usr/etc/| ./tmp/' <<<"$contents")"
fi

info=$(dpkg-deb -I "$deb")
for f in postinst prerm postrm conffiles; do
  grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +[*]? +$f" <<<"$info" || fail "no $f in the control archive"
done
[ "$(dpkg-deb -f "$deb" Package)" = sandboxd ] || fail "Package is not sandboxd"
dpkg-deb -f "$deb" Depends | grep -q "init-system-helpers" || fail "Depends lacks init-system-helpers"
dpkg-deb -f "$deb" Depends | grep -q "libc6" || fail "Depends lacks the shared libraries (shlibdeps)"
ctl=$(mktemp -d /tmp/sbx-deb-XXXXXX)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl/DEBIAN"
[ "$(cat "$ctl/DEBIAN/conffiles")" = /etc/sandboxd/sandboxd.yaml ] || fail "conffiles"
for s in postinst prerm postrm; do sh -n "$ctl/DEBIAN/$s" || fail "$s does not parse"; done
echo "package contents and control data: OK"

# ---- into a chroot ----
if ! command -v debootstrap >/dev/null; then
  echo "SKIP: debootstrap is not installed (apt-get install debootstrap); the package itself is OK"
  exit 77
fi
# The URI of the first Debian archive the host's apt reads (a "deb" source of a release suite,
# not -security or -updates), from the one-line format (sources.list, *.list) or the deb822
# format (*.sources); nothing when there is none.
host_archive() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS…
    sed -E 's/#.*//; s/\[[^]]*\]//' "$f" | awk '$1 == "deb" && $3 !~ /-/ &&
      $2 ~ /^(https?|file):\/\// { print $2; exit }' | grep . && return
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^#/ || index($i, ":") == 0) continue
          key = tolower(substr($i, 1, index($i, ":") - 1))
          val = substr($i, index($i, ":") + 1)
          if (key == "types") types = val
          else if (key == "uris") uris = val
          else if (key == "suites") suites = val
          else if (key == "enabled") enabled = tolower(val)
        }
        gsub(/[ \t]/, "", enabled)
        if (enabled == "no" || (" " types " ") !~ /[ \t]deb[ \t]/) next
        release = 0
        n = split(suites, s, /[ \t]+/)
        for (j = 1; j <= n; j++) if (s[j] != "" && s[j] !~ /-/) release = 1
        if (!release) next
        n = split(uris, u, /[ \t]+/)
        for (j = 1; j <= n; j++) if (u[j] ~ /^(https?|file):\/\//) { print u[j]; exit }
      }' "$f" | grep . && return
  done
  return 0
}
archive=${SBX_DEBIAN_ARCHIVE:-$(host_archive | head -n1)}
from=${archive:-"the default archive of debootstrap"}
# The package's dependencies come with the base system (no apt inside the chroot needed).
deps=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -E 's/\(.*\)//; s/\|.*//; s/ //g' | paste -sd,)
cache="$build/debootstrap-cache"
mkdir -p "$cache"
tarball="$cache/bookworm-minbase-$(echo "$deps" | md5sum | cut -c1-12).tgz"
if [ ! -s "$tarball" ]; then
  if ! debootstrap --variant=minbase --include="$deps" --make-tarball="$tarball.tmp" \
        bookworm "$cache/work" ${archive:+"$archive"} >"$cache/debootstrap.log" 2>&1; then
    rm -rf "$tarball.tmp" "$cache/work"
    echo "SKIP: debootstrap cannot fetch bookworm from $from (offline?): $(tail -n 2 "$cache/debootstrap.log")"
    echo "      the package itself is OK"
    exit 77
  fi
  mv "$tarball.tmp" "$tarball"
  rm -rf "$cache/work"
fi
root="$ctl/root"
debootstrap --variant=minbase --include="$deps" --unpack-tarball="$tarball" bookworm "$root" \
  ${archive:+"$archive"} >"$ctl/debootstrap.log" 2>&1 || { tail -n 20 "$ctl/debootstrap.log"; fail "debootstrap from the cache"; }
trap 'rm -rf "$ctl"' EXIT

cp "$deb" "$root/tmp/sandboxd.deb"
# No /run/systemd/system in the chroot: the scripts must enable and start nothing.
[ ! -e "$root/run/systemd/system" ] || fail "the chroot looks like a running systemd"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg -i /tmp/sandboxd.deb \
  >"$ctl/dpkg-install.log" 2>&1 || { cat "$ctl/dpkg-install.log"; fail "dpkg -i in the chroot"; }
[ "$(stat -c %a "$root/var/lib/sandboxd")" = 711 ] || fail "/var/lib/sandboxd is not 0711"
for d in /etc/sandboxd/policies /etc/sandboxd/seccomp; do [ -d "$root$d" ] || fail "$d missing"; done
[ -L "$root/etc/systemd/system/multi-user.target.wants/sandboxd.service" ] ||
  fail "sandboxd.service was not enabled"
[ -L "$root/etc/systemd/system/sockets.target.wants/sandboxd.socket" ] ||
  fail "sandboxd.socket was not enabled"
[ ! -e "$root/run/sandboxd/api.sock" ] || fail "something started in the chroot"
if pgrep -f "$root/usr/libexec/sandboxd/sandboxd-server" >/dev/null; then fail "the daemon runs"; fi
chroot "$root" /usr/bin/sandboxd --help >/dev/null || fail "sandboxd --help in the chroot"
chroot "$root" /usr/libexec/sandboxd/sandboxd-server --help | grep -q -- "--log-level" ||
  fail "sandboxd-server --help in the chroot"
echo "installed and enabled, nothing started: OK"

chroot "$root" dpkg --remove sandboxd >"$ctl/dpkg-remove.log" 2>&1 ||
  { cat "$ctl/dpkg-remove.log"; fail "dpkg --remove"; }
[ ! -e "$root/usr/bin/sandboxd" ] || fail "remove left /usr/bin/sandboxd"
[ -e "$root/etc/sandboxd/sandboxd.yaml" ] || fail "remove took the conffile (only purge may)"
chroot "$root" dpkg --purge sandboxd >"$ctl/dpkg-purge.log" 2>&1 ||
  { cat "$ctl/dpkg-purge.log"; fail "dpkg --purge"; }
[ ! -e "$root/var/lib/sandboxd" ] || fail "purge left /var/lib/sandboxd"
[ ! -e "$root/etc/sandboxd/sandboxd.yaml" ] || fail "purge left the configuration"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/sandboxd.service" ] ||
  fail "purge left the enablement symlink"
echo "removed and purged: OK"
