#!/usr/bin/env bash
# Quick load test of POST /v1/decide: the durable server (SQLite audit log,
# fsync per batch) and the same server with auditing off, in the same run,
# with wrk over loopback (the full measurement is bench/http.sh). Needs wrk
# (Debian package). Bounded: DURATION seconds per run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-15}"
CONNS="${CONNS:-64}"
TOKEN=benchbenchbenchbenchbench
DIR=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
printf 'tokens:\n  - {name: bench, role: agent, token: %s}\n' "$TOKEN" >"$DIR/tokens.yaml"
head -c 32 /dev/urandom >"$DIR/audit.key"

cargo build -q --release -p rein-bench --bin decide_server -p rein-cli
BIN=target/release/decide_server
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %12s %10s %10s %10s\n' variant req/s p50 p99 rss_kb

run() {
  local store=$1
  rm -f "$DIR/port"
  $BIN --store "$store" --db "$DIR/rein-$store.db" --tokens "$DIR/tokens.yaml" --audit-key "$DIR/audit.key" \
    --port-file "$DIR/port" >/dev/null &
  PID=$!
  for _ in $(seq 1 100); do [ -s "$DIR/port" ] && break; sleep 0.05; done
  local port out rss
  port=$(cat "$DIR/port")
  out=$(REIN_TOKEN=$TOKEN wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s bench/decide.lua "http://127.0.0.1:$port/v1/decide")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  printf '%-10s %12s %10s %10s %10s\n' "$store" \
    "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
    "$(echo "$out" | awk '$1 == "50%" {print $2}')" \
    "$(echo "$out" | awk '$1 == "99%" {print $2}')" "$rss"
}

run none
run sqlite
echo "records written by the durable run: $(target/release/rein audit verify --db "$DIR/rein-sqlite.db")"
/usr/bin/time -f "audit verify: %e s" target/release/rein audit verify --db "$DIR/rein-sqlite.db" >/dev/null
