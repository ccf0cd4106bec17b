# Sourced by the benches that drive a real `sandboxd serve` (service.sh, soak.sh, load.sh).
#
#   bench_daemon_dir NAME       makes $dir (0711: the sandboxes reach their mount points through
#                               it), $dir/policies, an API key $key (role submitter, name NAME)
#                               and the cgroup parent name $parent
#   bench_daemon_start SERVER   writes $dir/sandboxd.yaml (SQLite in $dir, data in $dir/data,
#                               the policies, the parent, the key, and the settings the caller
#                               put in $extra_yaml), starts SERVER on 127.0.0.1 and waits until
#                               it is ready: $pid, $port and $api are set, and at exit the daemon
#                               is stopped and its cgroups and $dir removed
bench_daemon_dir() {
  dir=$(mktemp -d "/tmp/sbx-$1-XXXXXX")
  chmod 711 "$dir"
  key="$1-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  key_name=$1
  parent="sandboxd-$1-$$"
  mkdir -p "$dir/policies"
}

bench_daemon_stop() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for root in /sys/fs/cgroup/unified /sys/fs/cgroup /sys/fs/cgroup/*; do
    rmdir "$root/$parent" 2>/dev/null || true
  done
  rm -rf "$dir"
}

bench_daemon_start() {
  local server=$1 sha line
  [ -x "$server" ] || { echo "$server is missing (make build)" >&2; exit 2; }
  sha=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
  cat > "$dir/sandboxd.yaml" <<YAML
listen: ["127.0.0.1:0"]
database: sqlite://$dir/sandboxd.db
data_dir: $dir/data
policy_dir: $dir/policies
cgroup_parent: $parent
api_keys:
  - {name: $key_name, role: submitter, key_sha256: $sha}
${extra_yaml:-}
YAML
  mkfifo "$dir/stdout"
  "$server" --config "$dir/sandboxd.yaml" > "$dir/stdout" 2> "$dir/stderr" &
  pid=$!
  trap bench_daemon_stop EXIT
  exec 3< "$dir/stdout"
  port=""
  while read -r line <&3; do
    case "$line" in
      *"listening on 127.0.0.1:"*) port=${line##*:} ;;
      *"sandboxd: ready"*) break ;;
    esac
  done
  cat <&3 > /dev/null &
  [ -n "$port" ] || { echo "the daemon did not start:" >&2; cat "$dir/stderr" >&2; exit 1; }
  api="http://127.0.0.1:$port"
}
