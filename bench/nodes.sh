#!/usr/bin/env bash
# Several `sandboxd serve` nodes on one PostgreSQL (docs/operations.md, "Several nodes"), on this
# machine, against a PostgreSQL cluster this script creates (initdb, fsync off: the figures are
# about coordination, not the disk) and removes:
#   - runs per second claimed and completed with 1, 2 and 3 nodes, for a run that waits on its
#     sandbox (/bin/sleep 0.2), from 16 clients spread over the nodes (each run submitted to one
#     node and followed through the next), every node with max_concurrent_runs 4 (NODE_WORKERS);
#   - failover: the time from `kill -9` of the node running a run to that run's end (FAILED,
#     node_lost) as another node sees it, with the default heartbeat (2 s, node_timeout 6 s),
#     five times.
# Usage: bench/nodes.sh [BUILD_DIR] [RUNS]   (BENCH_OUT: where nodes.jsonl goes, docs/bench;
#        NODE_WORKERS: each node's max_concurrent_runs, 4; NODE_SKIP_FAILOVER=1: rates only)
set -euo pipefail
build=${1:-build}
runs=${2:-300}
out=${BENCH_OUT:-docs/bench}
workers=${NODE_WORKERS:-4}
server="$build/supervisor/sandboxd-server"
client="$build/bench/bench_service"
for f in "$server" "$client"; do
  [ -x "$f" ] || { echo "$f is missing (make build)" >&2; exit 2; }
done
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "no PostgreSQL server (scripts/install-deps.sh test)" >&2; exit 2; }
mkdir -p "$out"

work=$(mktemp -d /tmp/sbx-nodes-XXXXXX)
chmod 711 "$work"
key="nodes-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
sha=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
declare -A pids=() ports=()

stop_node() {
  local name=$1
  [ -n "${pids[$name]:-}" ] || return 0
  kill -TERM "${pids[$name]}" 2>/dev/null || true
  wait "${pids[$name]}" 2>/dev/null || true
  unset "pids[$name]"
}
cleanup() {
  for name in "${!pids[@]}"; do stop_node "$name"; done
  runuser -u postgres -- "$pgbin/pg_ctl" stop -D "$work/pg" -m fast -w > /dev/null 2>&1 || true
  for root in /sys/fs/cgroup/unified /sys/fs/cgroup /sys/fs/cgroup/*; do
    for d in "$root"/sandboxd-benchnode-*-$$; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The cluster, on a free port.
chown postgres "$work"
runuser -u postgres -- "$pgbin/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 > /dev/null
for try in 1 2 3 4 5; do
  pgport=$(( 20000 + RANDOM % 30000 ))
  if runuser -u postgres -- "$pgbin/pg_ctl" start -D "$work/pg" -w -l "$work/pg.log" \
       -o "-p $pgport -k $work -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
       > /dev/null; then
    break
  fi
  [ "$try" = 5 ] && { cat "$work/pg.log" >&2; exit 1; }
done
db_url() { echo "postgresql://postgres@127.0.0.1:$pgport/$1"; }
createdb() { runuser -u postgres -- "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -q -c "CREATE DATABASE $1" postgres; }

# start_node NAME DATABASE [YAML]: a daemon of its own directory and cgroup parent; sets
# ports[NAME] once it is ready.
start_node() {
  local name=$1 db=$2 extra=${3:-} dir="$work/$1" line port=""
  mkdir -p "$dir/policies"
  chmod 711 "$dir"
  printf 'rules:\n  "*": allow\n' > "$dir/policies/commands.yaml"
  cat > "$dir/sandboxd.yaml" <<YAML
listen: ["127.0.0.1:0"]
database: $(db_url "$db")
data_dir: $dir/data
policy_dir: $dir/policies
cgroup_parent: sandboxd-benchnode-$name-$$
node: $name
max_concurrent_runs: $workers
max_queue: 100000
api_keys:
  - {name: bench, role: admin, key_sha256: $sha}
$extra
YAML
  rm -f "$dir/stdout"
  mkfifo "$dir/stdout"
  "$server" --config "$dir/sandboxd.yaml" > "$dir/stdout" 2>> "$dir/stderr" &
  pids[$name]=$!
  exec 3< "$dir/stdout"
  while read -r line <&3; do
    case "$line" in
      *"listening on 127.0.0.1:"*) port=${line##*:} ;;
      *"sandboxd: ready"*) break ;;
    esac
  done
  cat <&3 > /dev/null &
  exec 3<&-
  [ -n "$port" ] || { echo "node $name did not start:" >&2; cat "$dir/stderr" >&2; exit 1; }
  ports[$name]=$port
}

api() {  # api METHOD PORT PATH [BODY]
  curl -sf -X "$1" -H "x-api-key: $key" -H 'Content-Type: application/json' \
    ${4:+--data "$4"} "http://127.0.0.1:$2$3"
}

: > "$out/nodes.jsonl"
body='{"argv": ["/bin/sleep", "0.2"]}'
for n in 1 2 3; do
  createdb "rate$n"
  list=""
  for i in $(seq 1 "$n"); do
    start_node "r$n-$i" "rate$n"
    list+="${list:+,}${ports[r$n-$i]}"
  done
  BENCH_BODY=$body "$client" rate "$list" "$key" 16 "$runs" | tee -a "$out/nodes.jsonl"
  for i in $(seq 1 "$n"); do stop_node "r$n-$i"; done
done

[ "${NODE_SKIP_FAILOVER:-0}" = 1 ] && exit 0

# Failover, with the default heartbeat: node f1 watches, node f2 runs and is killed.
createdb failover
start_node f1 failover
for round in 1 2 3 4 5; do
  start_node f2 failover
  id=$(api POST "${ports[f1]}" /v1/runs '{"argv": ["/bin/sleep", "600"], "node_selector": {"node": "f2"}}' | jq -r .id)
  until [ "$(api GET "${ports[f1]}" "/v1/runs/$id" | jq -r .state)" = RUNNING ]; do sleep 0.05; done
  kill -KILL "${pids[f2]}"
  wait "${pids[f2]}" 2>/dev/null || true
  unset "pids[f2]"
  t0=$(date +%s%N)
  until [ "$(api GET "${ports[f1]}" "/v1/runs/$id" | jq -r .result.reason)" = node_lost ]; do
    sleep 0.05
  done
  t1=$(date +%s%N)
  echo "{\"bench\": \"failover\", \"round\": $round, \"heartbeat_interval_ms\": 2000, \"node_timeout_ms\": 6000, \"seconds\": $(echo "scale=3; ($t1 - $t0) / 1000000000" | bc)}" \
    | tee -a "$out/nodes.jsonl"
done
