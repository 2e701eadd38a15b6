#!/usr/bin/env bash
# Load test of POST /v1/decide: the durable server (SQLite audit log, fsync
# per batch) and the same server with auditing off, in the same run, with wrk
# over loopback. Needs wrk (Debian package). Bounded: DURATION seconds per run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-15}"
CONNS="${CONNS:-64}"
TOKEN=benchbenchbenchbenchbench
DIR=$(mktemp -d)
cleanup() { [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

cargo build -q --release -p rein-bench --bin bench_server -p rein-cli
BIN=target/release/bench_server
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %12s %10s %10s %10s\n' variant req/s p50 p99 rss_kb

run() {
  local mode=$1 port=$2
  $BIN "$mode" examples/refund/policy.yaml "$DIR/rein-$mode.db" "127.0.0.1:$port" "$TOKEN" &
  PID=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
  local out
  out=$(REIN_TOKEN=$TOKEN wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/decide.lua "http://127.0.0.1:$port/v1/decide")
  local rss
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  printf '%-10s %12s %10s %10s %10s\n' "$mode" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '$1 == "50%" {print $2}')" \
    "$(echo "$out" | awk '$1 == "99%" {print $2}')" "$rss"
}

run none 18731
run sqlite 18732
echo "records written by the durable run: $(target/release/rein audit verify --db "$DIR/rein-sqlite.db")"
/usr/bin/time -f "audit verify: %e s" target/release/rein audit verify --db "$DIR/rein-sqlite.db" >/dev/null
