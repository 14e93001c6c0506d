#!/usr/bin/env bash
# CPU profile of the gateway's hot path (PROFILE_ROW=gateway|gateway-bearer|gateway-policies): the bench backend + the gateway (gateway.bench.yaml,
# passthrough app, JSON request logs to a file) under `node --cpu-prof`, wrk -t1 -c50 for
# each scenario, then the top functions by self time.
#
#   bash bench/profile.sh                 # small and big, 10 s each
#   PROFILE_SCENARIOS=big PROFILE_DURATION=5 bash bench/profile.sh
#   PROFILE_NODE_FLAGS='--trace-gc' bash bench/profile.sh   # extra node flags for the gateway (its log has their output)
# Output: bench/profiles/<ts>/{small,big}/*.cpuprofile and top.txt (open the .cpuprofile in
# Chrome DevTools > Performance for flame graphs).
set -Eeuo pipefail
BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_SRC/.." && pwd)
HARNESS=$BENCH_SRC/.harness
[[ -f $HARNESS/backend.js ]] || { echo "run 'npm run bench -- --quick' once first (it prepares $HARNESS)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is required" >&2; exit 1; }
PORT0=${PROFILE_PORT:-18140}
DURATION=${PROFILE_DURATION:-10}
OUT=$BENCH_SRC/profiles/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

PORT=$PORT0 BENCH_MAX_LIFETIME_S=600 timeout 600 node "$HARNESS/backend.js" >"$OUT/backend.log" 2>&1 &
PIDS+=($!)
export GATEWAY_PORT=$((PORT0 + 1)) BACKEND_URL="http://127.0.0.1:$PORT0"
ROW=${PROFILE_ROW:-gateway}
AUTH=()
case $ROW in
  gateway) CONFIG=gateway.bench.yaml ;;
  gateway-bearer|gateway-policies)
    CONFIG=${ROW/gateway-/gateway.bench-}.yaml
    export BENCH_ISSUER_PORT=$((PORT0 + 2))
    source "$BENCH_SRC/issuer.sh"
    start_issuer "$OUT/issuer" "$BENCH_ISSUER_PORT" 600 || true
    PIDS+=("$ISSUER_PID")
    AUTH=(-H "Authorization: Bearer $ISSUER_TOKEN") ;;
  *) echo "PROFILE_ROW must be gateway, gateway-bearer or gateway-policies" >&2; exit 2 ;;
esac
for scen in ${PROFILE_SCENARIOS:-small big}; do
  path=/; [[ $scen == big ]] && path=/big
  mkdir -p "$OUT/$scen"
  # (unquoted: several flags)
  # shellcheck disable=SC2086
  timeout 600 node ${PROFILE_NODE_FLAGS:-} --cpu-prof --cpu-prof-dir="$OUT/$scen" "$REPO/dist/src/cli.js" gateway --config "$BENCH_SRC/$CONFIG" >"$OUT/$scen/gateway.log" 2>&1 &
  gpid=$!
  PIDS+=("$gpid")
  for _ in $(seq 1 100); do curl -sf -o /dev/null "${AUTH[@]}" -H 'Host: bench.gw.localhost' "http://127.0.0.1:$GATEWAY_PORT$path" && break; sleep 0.1; done
  wrk -t1 -c50 -d2s "${AUTH[@]}" -H 'Host: bench.gw.localhost' "http://127.0.0.1:$GATEWAY_PORT$path" >/dev/null  # warm-up (JIT)
  wrk -t1 -c50 -d"${DURATION}s" --latency "${AUTH[@]}" -H 'Host: bench.gw.localhost' "http://127.0.0.1:$GATEWAY_PORT$path" | tee "$OUT/$scen/wrk.txt" | grep -E 'Requests/sec|Latency  '
  kill -TERM "$gpid"; wait "$gpid" 2>/dev/null || true   # SIGTERM -> process.exit -> profile written
  prof=$(ls -1 "$OUT/$scen"/*.cpuprofile | head -1)
  node "$BENCH_SRC/cpuprofile-top.mjs" "$prof" 25 | tee "$OUT/$scen/top.txt"
  echo
done
echo "profiles in $OUT"
