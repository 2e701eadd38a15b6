#!/usr/bin/env bash
# Memory over a long run: the durable server under steady load, RSS sampled
# every 10 s. Bounded: SOAK seconds (default 180).
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK="${SOAK:-180}"
TOKEN=benchbenchbenchbenchbench
DIR=$(mktemp -d)
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
cargo build -q --release -p rein-bench --bin bench_server
target/release/bench_server sqlite examples/refund/policy.yaml "$DIR/rein.db" 127.0.0.1:18733 "$TOKEN" &
PID=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18733/healthz >/dev/null && break; sleep 0.05; done
REIN_TOKEN=$TOKEN wrk -t1 -c4 -d"${SOAK}s" --latency -s bench/decide.lua http://127.0.0.1:18733/v1/decide > "$DIR/wrk.txt" &
WRK=$!
for t in $(seq 10 10 "$SOAK"); do
  sleep 10
  echo "t=${t}s rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")"
done
wait "$WRK"
grep -E "Requests/sec|50%|99%" "$DIR/wrk.txt"
