# Drawbridge's reference row (added by bench/run.sh): the TLS hop under the connector row. Two bare
# Node processes relay bytes through one TLS 1.3 hop (bench/tls-relay.mjs), with no HTTP
# parsing, no HTTP/2 and nothing of Drawbridge: wrk -> outer relay -> TLS -> inner relay ->
# backend, one TLS connection per client connection. What it costs per 1 MiB response is what
# the TLS hop between two Node processes costs here; what the tunnel pays beyond it is its own.
T_NAME=tls-relay
T_PORT=$((BASE_PORT + 14))
T_DESC="two bare Node processes relaying through one TLS hop (bench/tls-relay.mjs): the TLS hop alone, beside the connector row"
T_HOST_HEADER=${GATEWAY_HOST_HEADER:-bench.gw.localhost}
T_HEADERS=()
t_check() {
  [[ -n ${BENCH_REPO:-} ]] || { echo "run through npm run bench (bench/run.sh)"; return 1; }
  command -v openssl >/dev/null || { echo "openssl is needed for the relay's certificate"; return 1; }
}
t_version() { node --version; }
t_start() {
  local inner=$((BASE_PORT + 22)) certs="$RUN_DIR/tls-relay-certs"
  spawn "$T_NAME-inner" node "$BENCH_SRC/tls-relay.mjs" inner "$inner" "$BACKEND_PORT" "$certs"
  wait_port "$inner" 20 || { echo "inner relay did not listen on $inner"; return 1; }
  spawn "$T_NAME" node "$BENCH_SRC/tls-relay.mjs" outer "$T_PORT" "$inner" "$certs"
}
