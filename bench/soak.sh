#!/usr/bin/env bash
# Memory over a long run: the durable server under steady load, RSS sampled
# every 10 s. Bounded: SOAK seconds (default 180). The full soak (fixed
# rate, 10 minutes) is `SECTIONS=5 bench/http.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK="${SOAK:-180}"
TOKEN=benchbenchbenchbenchbench
DIR=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
printf 'tokens:\n  - {name: bench, role: agent, token: %s}\n' "$TOKEN" >"$DIR/tokens.yaml"
head -c 32 /dev/urandom >"$DIR/audit.key"
cargo build -q --release -p rein-bench --bin decide_server
target/release/decide_server --store sqlite --db "$DIR/rein.db" --tokens "$DIR/tokens.yaml" --audit-key "$DIR/audit.key" \
  --port-file "$DIR/port" >/dev/null &
PID=$!
for _ in $(seq 1 100); do [ -s "$DIR/port" ] && break; sleep 0.05; done
PORT=$(cat "$DIR/port")
REIN_TOKEN=$TOKEN wrk -t1 -c4 -d"${SOAK}s" --latency -s bench/decide.lua "http://127.0.0.1:$PORT/v1/decide" > "$DIR/wrk.txt" &
WRK=$!
for t in $(seq 10 10 "$SOAK"); do
  sleep 10
  echo "t=${t}s rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")"
done
wait "$WRK"
grep -E "Requests/sec|50%|99%" "$DIR/wrk.txt"
