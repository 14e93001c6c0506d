#!/usr/bin/env bash
# One of the bench's bare relays alone under wrk, outside the harness: the bench backend, the
# relay's two processes, `wrk -t1 -c50` on /big (1 MiB) or / (100 B); prints req/s, each
# process's CPU per response (from /proc), their minor page faults and full GCs per run.
#
#   bash bench/relay-alone.sh                        # tls-relay, 1 MiB, 6 s
#   RELAY=h2-relay DUR=10 bash bench/relay-alone.sh  # the HTTP/2-request relay
#   RELAY_PLAIN=1 bash bench/relay-alone.sh          # tls-relay's hop in clear
#   RELAY_NODE_FLAGS=--heap-growing-percent=300 ...  # node flags for both relay processes
#
# Needs bench/.harness (run `npm run bench -- --quick` once), a build (dist/) and wrk.
set -euo pipefail
BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HARNESS=$BENCH_SRC/.harness
[[ -f $HARNESS/backend.js ]] || { echo "run 'npm run bench -- --quick' once first (it prepares $HARNESS)" >&2; exit 1; }
[[ -f $BENCH_SRC/../dist/src/gateway/relay.js ]] || { echo "build first (npx tsc -p .): the relays use the gateway's dist/src/gateway/relay.js" >&2; exit 1; }
# shellcheck source=/dev/null
source "$HARNESS/lib/common.sh"   # port_open, wait_port
command -v wrk >/dev/null || { echo "wrk is required" >&2; exit 1; }
RELAY=${RELAY:-tls-relay}; P=${RELAY_PORT:-18800}; DUR=${DUR:-6}; PATH_=${RELAY_PATH:-/big}
[[ -f $BENCH_SRC/$RELAY.mjs ]] || { echo "no bench/$RELAY.mjs" >&2; exit 2; }
D=$(mktemp -d)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -TERM $p 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$D"' EXIT
up() { wait_port "$1" 10 || { echo "nothing listens on $1" >&2; return 1; }; }
PORT=$P BENCH_MAX_LIFETIME_S=600 node "$HARNESS/backend.js" > /dev/null 2>&1 & PIDS+=($!)
up "$P"
# shellcheck disable=SC2086
node ${RELAY_NODE_FLAGS:-} --trace-gc "$BENCH_SRC/$RELAY.mjs" inner $((P + 2)) "$P" "$D" > "$D/inner.log" 2>&1 & PIDS+=($!); INNER=$!
up $((P + 2))
# shellcheck disable=SC2086
node ${RELAY_NODE_FLAGS:-} --trace-gc "$BENCH_SRC/$RELAY.mjs" outer $((P + 1)) $((P + 2)) "$D" > "$D/outer.log" 2>&1 & PIDS+=($!); OUTER=$!
up $((P + 1))
wrk -t1 -c50 -d2s "http://127.0.0.1:$((P + 1))$PATH_" > /dev/null
stat_of() { awk '{print $14 + $15, $10}' "/proc/$1/stat"; }
fulls() { cat "$D/inner.log" "$D/outer.log" | grep -c "Mark-Compact" || true; }
read -r i0 if0 < <(stat_of $INNER); read -r o0 of0 < <(stat_of $OUTER); g0=$(fulls)
out=$(wrk -t1 -c50 -d"${DUR}s" "http://127.0.0.1:$((P + 1))$PATH_")
read -r i1 if1 < <(stat_of $INNER); read -r o1 of1 < <(stat_of $OUTER); g1=$(fulls)
n=$(echo "$out" | grep -oE "^ +[0-9]+ requests" | grep -oE "[0-9]+")
errors=$(echo "$out" | grep -E "Non-2xx|Socket errors" || true)
tick_us=$((1000000 / $(getconf CLK_TCK)))
echo "$RELAY${RELAY_PLAIN:+ (plain)} $PATH_: $(echo "$out" | awk '/Requests\/sec/{print $2}') req/s;" \
  "CPU per response: inner $(( (i1 - i0) * tick_us / n )) us, outer $(( (o1 - o0) * tick_us / n )) us;" \
  "minor faults per response $(( (if1 - if0 + of1 - of0) / n )); full GCs $((g1 - g0)) in ${DUR}s${errors:+; $errors}"
