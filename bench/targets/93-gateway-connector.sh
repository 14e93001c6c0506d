# Drawbridge row (added by /work/main/bench/run.sh): the passthrough app published through
# one outbound-only connector (issue 3). wrk -> gateway -> tunnel -> connector -> backend.
# Enabled by BENCH_CONNECTOR_CMD (run by bash -c after the gateway listens, with
# GATEWAY_PORT, BENCH_CONNECTOR_LISTEN_PORT, BACKEND_URL, BENCH_STATE_DIR exported).
# The harness's own GATEWAY_CONNECTOR_CMD would turn the "gateway" row itself into a
# tunnel row; this separate row keeps direct mode and tunnel mode in the same run.
T_NAME=gateway-connector
T_PORT=$((BASE_PORT + 13))
T_DESC="Drawbridge through one outbound connector (bench/gateway.bench-connector.yaml + BENCH_CONNECTOR_CMD)"
T_HOST_HEADER=${GATEWAY_HOST_HEADER:-bench.gw.localhost}
T_HEADERS=()
t_check() {
  [[ -n ${BENCH_REPO:-} ]] || { echo "run through npm run bench (bench/run.sh)"; return 1; }
  [[ -z ${BENCH_SKIP_gateway_connector:-} ]] || { echo "$BENCH_SKIP_gateway_connector"; return 1; }
}
t_version() { echo "${GATEWAY_VERSION:-unversioned}"; }
t_start() {
  export GATEWAY_PORT="$T_PORT" BACKEND_URL BACKEND_PORT BENCH_CONNECTOR_LISTEN_PORT BENCH_STATE_DIR
  spawn "$T_NAME" bash -c "exec node \"$BENCH_REPO/dist/src/cli.js\" gateway --config \"$BENCH_SRC/gateway.bench-connector.yaml\""
  wait_port "$T_PORT" 20 || { echo "gateway did not listen on $T_PORT"; return 1; }
  spawn "$T_NAME-connector" bash -c "$BENCH_CONNECTOR_CMD"
}
