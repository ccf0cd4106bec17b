#!/usr/bin/env bash
# A short demonstration of `sandboxd exec`: what a sandboxed program sees, and how hostile
# actions end. Usage: scripts/demo.sh PATH/TO/sandboxd
set -uo pipefail
sbx=${1:?usage: demo.sh PATH/TO/sandboxd}
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; echo "[exit $?]"; }

"$sbx" check
step "$sbx" exec -- /bin/sh -c 'id; hostname; echo "pid $$"; ls /; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status'
step "$sbx" exec -- /bin/cat /etc/shadow
step "$sbx" exec -- /bin/sh -c 'echo > /usr/evil'
step "$sbx" exec --memory 64m --result - -- /bin/sh -c 'x=a; while :; do x=$x$x; done'
step "$sbx" exec --timeout 1s -- /bin/sh -c 'sleep 100'
