# Sourced by bench/startup.sh and bench/host_floor.sh: bwrap running /bin/true with the view of
# the host sandboxd gives a run, for a like-for-like comparison: /usr read-only, merged-/usr
# symlinks, /etc/ld.so.cache, fresh /proc, minimal /dev, tmpfs /tmp, new user/pid/mount/net/ipc/
# uts/cgroup namespaces.
# shellcheck disable=SC2034  # used by the scripts that source it
bwrap_true=(bwrap --unshare-all --die-with-parent --new-session --cap-drop ALL
  --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/sbin /sbin
  --symlink usr/lib /lib --symlink usr/lib64 /lib64 --ro-bind /etc/ld.so.cache /etc/ld.so.cache
  --proc /proc --dev /dev --tmpfs /tmp --hostname sandbox /bin/true)
