# Drawbridge row (added by /work/main/bench/run.sh): the bench app behind bearer-token
# verification (issue 4). Same app as the "gateway" row, preAuth oidc, audience + scope
# checked on every request, JWKS from bench/issuer.mjs (cached by the gateway).
T_NAME=gateway-bearer
T_PORT=$((BASE_PORT + 11))
T_DESC="Drawbridge, bearer token verified per request (bench/gateway.bench-bearer.yaml)"
T_HOST_HEADER=${GATEWAY_HOST_HEADER:-bench.gw.localhost}
T_HEADERS=("Authorization: Bearer ${BENCH_BEARER_TOKEN:-missing}")
t_check() {
  [[ -n ${BENCH_REPO:-} ]] || { echo "run through npm run bench (bench/run.sh)"; return 1; }
  [[ -z ${BENCH_SKIP_gateway_bearer:-} ]] || { echo "$BENCH_SKIP_gateway_bearer"; return 1; }
}
t_version() { echo "${GATEWAY_VERSION:-unversioned}"; }
t_start() {
  export GATEWAY_PORT="$T_PORT" BACKEND_URL BACKEND_PORT
  spawn "$T_NAME" bash -c "exec node \"$BENCH_REPO/dist/src/cli.js\" gateway --config \"$BENCH_SRC/gateway.bench-bearer.yaml\""
}
