# Sourced by bench/run.sh, profile.sh and instructions.sh: the throwaway issuer the bearer rows
# verify tokens against (bench/issuer.mjs), and the secrets the bench configs read.
# Only for the bench; never real secrets.
export BENCH_SESSION_SECRET=${BENCH_SESSION_SECRET:-bench-session-secret-0123456789abcdef}
export BENCH_CLIENT_SECRET=${BENCH_CLIENT_SECRET:-bench-client-secret}

# start_issuer DIR PORT LIFETIME_S : mints a key and a token into DIR, serves its JWKS on PORT in
# the background for at most LIFETIME_S (its log: DIR.log) and waits until it answers. Sets
# ISSUER_PID and ISSUER_TOKEN.
start_issuer() {
  local dir=$1 port=$2 lifetime=$3
  node "$BENCH_SRC/issuer.mjs" mint "$dir" "$port" >/dev/null
  ISSUER_TOKEN=$(cat "$dir/token")
  BENCH_MAX_LIFETIME_S=$lifetime timeout "$lifetime" node "$BENCH_SRC/issuer.mjs" serve "$dir" "$port" >"$dir.log" 2>&1 &
  ISSUER_PID=$!
  for _ in $(seq 1 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/jwks" && return 0; sleep 0.1; done
  echo "the bench issuer did not answer on $port (see $dir.log)" >&2
  return 1
}
