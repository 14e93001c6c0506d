# Drawbridge row (added by /work/main/bench/run.sh): the gateway-bearer app with five
# conditional-access policies (locations, groups, time, claims) evaluated on every request
# (issue 5). Compare with gateway-bearer (same app, no policies); none of them blocks.
T_NAME=gateway-policies
T_PORT=$((BASE_PORT + 12))
T_DESC="Drawbridge, bearer + 5 conditional-access policies (bench/gateway.bench-policies.yaml)"
T_HOST_HEADER=${GATEWAY_HOST_HEADER:-bench.gw.localhost}
T_HEADERS=("Authorization: Bearer ${BENCH_BEARER_TOKEN:-missing}")
t_check() {
  [[ -n ${BENCH_REPO:-} ]] || { echo "run through npm run bench (bench/run.sh)"; return 1; }
  [[ -z ${BENCH_SKIP_gateway_policies:-} ]] || { echo "$BENCH_SKIP_gateway_policies"; return 1; }
}
t_version() { echo "${GATEWAY_VERSION:-unversioned}"; }
t_start() {
  export GATEWAY_PORT="$T_PORT" BACKEND_URL BACKEND_PORT
  spawn "$T_NAME" bash -c "exec node \"$BENCH_REPO/dist/src/cli.js\" gateway --config \"$BENCH_SRC/gateway.bench-policies.yaml\""
}
