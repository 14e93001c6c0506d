#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: the proxies' CPU work without the
# machine's noise. `npm run bench` measures throughput, which on this 2-core VM moves 20-50%
# between rounds of the same build; an instruction count of the same build and the same
# requests repeats within a few percent, whatever else the machine does.
#
#   npm run bench:instructions                         # every row, 100 B responses (~9 min)
#   INSTR_ROWS=gateway,node-http-proxy INSTR_SCENARIOS="small big" npm run bench:instructions
#   INSTR_ROUNDS=4 INSTR_SMALL=2000 INSTR_BIG=60 ...   # rounds, and requests per round
#   INSTR_JS=1 INSTR_ROWS=gateway-policies ...          # also names the JavaScript (below)
#
# Each proxy process runs under `valgrind --tool=callgrind` with instrumentation off; it is
# warmed up (JIT) uninstrumented, then each round zeroes the counters, sends exactly N GETs
# (bench/requests.mjs, 50 at a time, keep-alive, as wrk -c50 does) and dumps them. The backend
# and the bearer issuer run outside valgrind; a tunnel row counts both of its processes
# (gateway + connector, localtunnel server + client). Only user-space instructions are counted:
# the kernel's share (socket and file writes) and memory stalls are not, so this is the work
# each proxy asks of the CPU, not its speed. 1 MiB responses (INSTR_SCENARIOS="small big") are
# mostly kernel copies, and what callgrind counts of them swings with V8's major GCs, which run on
# timers and so come at other moments under valgrind's slowdown (bench/README.md, "Instructions per
# request"); read those counts as rough. Writes bench/results/<ts>-instructions.md.
# INSTR_JS=1 starts node with --perf-basic-prof and writes, beside each round's dump, its counts
# per request by JavaScript function (bench/callgrind-js.mjs; callgrind alone leaves JIT code as
# bare addresses). The perf map costs a little at code creation, not per request.
# Needs the harness copy that `npm run bench -- --quick` prepares, and valgrind.
set -Eeuo pipefail
BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_SRC/.." && pwd)
HARNESS=$BENCH_SRC/.harness
[[ -f $HARNESS/backend.js && -f $HARNESS/build/lt-server.cjs ]] || { echo "run 'npm run bench -- --quick' once first (it prepares $HARNESS)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }
[[ -f $REPO/dist/src/cli.js ]] || { echo "build first: npx tsc -p ." >&2; exit 1; }

ROWS=${INSTR_ROWS:-node-http-proxy,express-hpm,gateway,gateway-bearer,gateway-policies,localtunnel,gateway-connector}
SCENARIOS=${INSTR_SCENARIOS:-small}
ROUNDS=${INSTR_ROUNDS:-4}
CONNS=${INSTR_CONNS:-50}
P=${INSTR_PORT:-18400}
TS=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BENCH_SRC/.state/instructions/$TS
mkdir -p "$OUT" "$BENCH_SRC/results"
cd "$BENCH_SRC"   # the bench configs' relative stateDir
REPORT=$BENCH_SRC/results/$TS-instructions.md
log() { printf '[instructions %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

PIDS=()        # every process this script started
MEASURED=()    # the callgrind processes of the row being measured
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

BACKEND_PORT=$P
BACKEND_URL=http://127.0.0.1:$P
PORT=$P BENCH_MAX_LIFETIME_S=7200 node "$HARNESS/backend.js" >"$OUT/backend.log" 2>&1 &
PIDS+=($!)
export BENCH_ISSUER_PORT=$((P + 1))
source "$BENCH_SRC/issuer.sh"
start_issuer "$OUT/issuer" "$BENCH_ISSUER_PORT" 7200
PIDS+=("$ISSUER_PID")
TOKEN=$ISSUER_TOKEN

# measured NAME ENV... -- COMMAND... : starts one process of the row under callgrind
measured() {
  local name=$1; shift
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  local cmd=("$@")
  [[ ${INSTR_JS:-} == 1 && ${cmd[0]} == node ]] && cmd=(node --perf-basic-prof "${cmd[@]:1}")
  env "${envs[@]}" valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file \
    --callgrind-out-file="$OUT/$ROW.$name.%p.out" "${cmd[@]}" >"$OUT/$ROW.$name.log" 2>&1 &
  PIDS+=($!)
  MEASURED+=($!)
}

# ready URL HEADER... : waits (up to 3 min: valgrind starts node slowly) for a 200
ready() {
  local url=$1; shift
  local args=(-s -o /dev/null -w '%{http_code}' --max-time 10) h
  for h in "$@"; do args+=(-H "$h"); done
  for _ in $(seq 1 360); do [[ $(curl "${args[@]}" "$url" 2>/dev/null || true) == 200 ]] && return 0; sleep 0.5; done
  return 1
}

# listening URL : waits (up to 3 min) for any HTTP answer
listening() { for _ in $(seq 1 360); do curl -s -o /dev/null --max-time 5 "$1" && return 0; sleep 0.5; done; return 1; }

# start_row ROW : starts the row's processes; sets URL and HDRS
start_row() {
  local port=$((P + 10))
  URL=http://127.0.0.1:$port
  HDRS=()
  case $1 in
    node-http-proxy) measured proxy PORT=$port BACKEND_URL=$BACKEND_URL -- node "$HARNESS/peers/node-http-proxy.js" ;;
    express-hpm) measured proxy PORT=$port BACKEND_URL=$BACKEND_URL -- node "$HARNESS/peers/express-hpm.js" ;;
    gateway|gateway-bearer|gateway-policies)
      local config=gateway.bench.yaml
      [[ $1 != gateway ]] && { config=${1/gateway-/gateway.bench-}.yaml; HDRS=("Authorization: Bearer $TOKEN"); }
      HDRS+=("Host: bench.gw.localhost")
      measured gateway GATEWAY_PORT=$port BACKEND_URL=$BACKEND_URL -- node "$REPO/dist/src/cli.js" gateway --config "$BENCH_SRC/$config" --no-watch ;;
    localtunnel)
      HDRS=("Host: bench.lt.localhost")
      measured server PORT=$port LT_DOMAIN=lt.localhost -- node "$HARNESS/peers/lt-server.js"
      listening "$URL/"
      measured client BACKEND_PORT=$BACKEND_PORT LT_SERVER_URL=$URL LT_SUBDOMAIN=bench -- node "$HARNESS/peers/lt-client.js" ;;
    gateway-connector)
      HDRS=("Host: bench.gw.localhost")
      local state=$OUT/connector-state
      rm -rf "$state"; mkdir -p "$state"
      local genv=(GATEWAY_PORT=$port BACKEND_URL=$BACKEND_URL BENCH_STATE_DIR=$state BENCH_CONNECTOR_LISTEN_PORT=$((port + 1)))
      local token
      token=$(env "${genv[@]}" node "$REPO/dist/src/cli.js" token create --group bench --ttl 2h --config "$BENCH_SRC/gateway.bench-connector.yaml")
      measured gateway "${genv[@]}" -- node "$REPO/dist/src/cli.js" gateway --config "$BENCH_SRC/gateway.bench-connector.yaml" --no-watch
      listening "$URL/"
      measured connector -- node "$REPO/dist/src/cli.js" connector run --state-dir "$state/connector" \
        --gateway "https://127.0.0.1:$((port + 1))" --token "$token" ;;
    *) echo "unknown row $1" >&2; return 1 ;;
  esac
}

# count N PATH : zero the row's counters, send N requests, dump; prints instructions per request
count() {
  local n=$1 path=$2 p total=0 f
  for p in "${MEASURED[@]}"; do callgrind_control -z "$p" >/dev/null 2>&1; done
  node "$BENCH_SRC/requests.mjs" "$URL$path" "$n" "$CONNS" "${HDRS[@]}" >/dev/null || { echo "requests failed" >&2; return 1; }
  for p in "${MEASURED[@]}"; do
    callgrind_control -d "$p" >/dev/null 2>&1
    f=$(ls -t "$OUT"/"$ROW".*."$p".out.* | head -1)
    total=$((total + $(awk '/^summary:/{print $2}' "$f")))
    [[ ${INSTR_JS:-} == 1 && -f /tmp/perf-$p.map ]] && node "$BENCH_SRC/callgrind-js.mjs" "$f" "/tmp/perf-$p.map" "$n" 60 >"$f.js.txt" 2>&1
  done
  echo $((total / n))
}

touch "$OUT/rounds.txt"   # one line per row and scenario: the instructions per request of each round
for ROW in ${ROWS//,/ }; do
  MEASURED=()
  log "$ROW: starting under callgrind"
  start_row "$ROW"
  if ! ready "$URL/" "${HDRS[@]}"; then log "$ROW: never answered 200 (logs in $OUT); skipped"; for p in "${MEASURED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; continue; fi
  # warm-up uninstrumented (JIT, pools, caches), then a few instrumented requests
  node "$BENCH_SRC/requests.mjs" "$URL/" "${INSTR_WARM:-6000}" "$CONNS" "${HDRS[@]}" >/dev/null
  [[ $SCENARIOS == *big* ]] && node "$BENCH_SRC/requests.mjs" "$URL/big" 100 "$CONNS" "${HDRS[@]}" >/dev/null
  for p in "${MEASURED[@]}"; do callgrind_control -i on "$p" >/dev/null 2>&1; done
  # the first instrumented requests run slower code (valgrind translates afresh, V8 re-tiers): not counted
  node "$BENCH_SRC/requests.mjs" "$URL/" 4000 "$CONNS" "${HDRS[@]}" >/dev/null
  for scen in $SCENARIOS; do
    n=${INSTR_SMALL:-2000} path=/
    [[ $scen == big ]] && { n=${INSTR_BIG:-60}; path=/big; }
    vals=()
    for _ in $(seq 1 "$ROUNDS"); do vals+=("$(count "$n" "$path")"); done
    printf '%s %s %s\n' "$ROW" "$scen" "${vals[*]}" >>"$OUT/rounds.txt"
    log "$ROW $scen: ${vals[*]} instructions per request"
  done
  for p in "${MEASURED[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${MEASURED[@]}"; do wait "$p" 2>/dev/null || true; done
done

# ---------------------------------------------------------------- report
node "$BENCH_SRC/instructions-summary.mjs" "$OUT/rounds.txt" --timestamp "$TS" \
  --tree "$(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- src || echo ' +uncommitted')" \
  --valgrind "$(valgrind --version | sed 's/valgrind-//')" --rounds "$ROUNDS" --small "${INSTR_SMALL:-2000}" \
  --big "${INSTR_BIG:-60}" --conns "$CONNS" --warm "${INSTR_WARM:-6000}" --scenarios "$SCENARIOS" | tee "$REPORT"
log "report: $REPORT (callgrind outputs in $OUT)"
