#!/usr/bin/env bash
# Instructions per decision, for A/B work on a shared, noisy machine.
#
# Runs the decision server (crates/rein-bench/src/bin/decide_server.rs)
# under `valgrind --tool=callgrind`, warms it up, then counts the user-space
# instructions of every thread of the server while wrk sends decisions for
# SECS seconds, and divides by the decisions answered (from the server's
# own counters). Instruction counts do not depend on what else runs on the
# machine, so two builds can be compared while other work is going on.
# What they do not show: kernel time (TCP, fsync, futex wake-ups) and cache
# misses. Under valgrind the threads run one at a time, so group commit
# batches differ from a native run: compare variants with the same CONNS.
#
# A native run (no valgrind) of the same load follows, with syscalls and
# fsyncs per decision counted by `perf stat` tracepoints, and server CPU
# time per decision (noisy: it includes the kernel, and depends on load).
#
#   VARIANTS="durable no-audit" CONNS=16 SECS=20 bench/icount.sh
#
# Output: one line per variant, and the callgrind files in $OUT for
# `callgrind_annotate --inclusive=yes FILE | head -60`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VARIANTS=${VARIANTS:-durable no-audit}
CONNS=${CONNS:-16}
SECS=${SECS:-20}
NATIVE_SECS=${NATIVE_SECS:-5}
POLICY=${POLICY:-examples/refund/policy.yaml}
OUT=${OUT:-$ROOT/target/bench-icount/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

# The `profiling` profile: release code with the symbols callgrind_annotate
# names functions by (the release profile ships stripped).
cargo build -q --profile profiling -p rein-bench --bin decide_server
SERVER=$ROOT/target/profiling/decide_server

umask 077
TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'tokens:\n  - name: agent\n    role: agent\n    token: "%s"\n' "$TOKEN" >"$OUT/tokens.yaml"
head -c 32 /dev/urandom >"$OUT/audit.key"
jq -c '.input.amount = 40' examples/refund/request.json >"$OUT/body.json"
umask 022
export BODY_FILE=$OUT/body.json REIN_TOKEN=$TOKEN

PID=
cleanup() {
  if [ -n "$PID" ]; then
    kill -TERM "$PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  rm -f "$OUT"/*.db "$OUT"/*.db-wal "$OUT"/*.db-shm
}
trap cleanup EXIT

args() {
  case $1 in
    durable) echo "--store sqlite --db $OUT/$1-$2.db --tokens $OUT/tokens.yaml --audit-key $OUT/audit.key" ;;
    no-audit) echo "--store none --tokens $OUT/tokens.yaml --audit-key $OUT/audit.key" ;;
    floor) echo "--mode floor" ;;
  esac
}

# decisions answered so far (the floor has no metrics: wrk's count is used)
decisions() {
  curl -s --max-time 30 "http://127.0.0.1:$PORT/metrics" |
    awk '$1 ~ /^rein_decisions_total/ {s += $NF} END {printf "%d\n", s + 0}'
}

wait_port() {
  for _ in $(seq 1 600); do [ -s "$1" ] && break; sleep 0.1; done
  [ -s "$1" ] || { echo "server did not start"; exit 1; }
  PORT=$(cat "$1")
}

stop() {
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=
}

wrk_requests() { sed -n 's/^WRK requests=\([0-9]*\).*/\1/p' "$1"; }

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (modified)')"
for v in $VARIANTS; do
  # ---- instructions, under callgrind ----
  rm -f "$OUT/$v.port"
  # shellcheck disable=SC2046
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind-$v.out" \
    "$SERVER" --policy "$POLICY" --port-file "$OUT/$v.port" $(args "$v" cg) >"$OUT/$v-cg.log" 2>&1 &
  PID=$!
  wait_port "$OUT/$v.port"
  wrk -t1 -c"$CONNS" -d3s -s bench/http-decide.lua "http://127.0.0.1:$PORT/v1/decide" >/dev/null 2>&1
  [ "$v" = floor ] || n0=$(decisions)
  callgrind_control -i on "$PID" >/dev/null 2>&1
  wrk -t1 -c"$CONNS" -d"${SECS}s" -s bench/http-decide.lua "http://127.0.0.1:$PORT/v1/decide" >"$OUT/wrk-$v-cg.txt" 2>&1
  callgrind_control -i off "$PID" >/dev/null 2>&1
  if [ "$v" = floor ]; then n=$(wrk_requests "$OUT/wrk-$v-cg.txt"); else n=$(($(decisions) - n0)); fi
  stop
  ir=$(awk '/^totals:/ {print $2; exit}' "$OUT/callgrind-$v.out")
  # ---- native: syscalls, fsyncs, CPU ----
  rm -f "$OUT/$v.port"
  # shellcheck disable=SC2046
  "$SERVER" --policy "$POLICY" --port-file "$OUT/$v.port" $(args "$v" native) >"$OUT/$v.log" 2>&1 &
  PID=$!
  wait_port "$OUT/$v.port"
  wrk -t1 -c"$CONNS" -d2s -s bench/http-decide.lua "http://127.0.0.1:$PORT/v1/decide" >/dev/null 2>&1
  t0=$(awk '{print $14 + $15}' "/proc/$PID/stat")
  perf stat -x, -e raw_syscalls:sys_enter,syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync,context-switches \
    -p "$PID" -o "$OUT/perf-$v.csv" -- sleep "$NATIVE_SECS" >/dev/null 2>&1 &
  PERF=$!
  wrk -t1 -c"$CONNS" -d"${NATIVE_SECS}s" -s bench/http-decide.lua "http://127.0.0.1:$PORT/v1/decide" >"$OUT/wrk-$v.txt" 2>&1
  wait "$PERF" || true
  t1=$(awk '{print $14 + $15}' "/proc/$PID/stat")
  stop
  nn=$(wrk_requests "$OUT/wrk-$v.txt")
  ev() { awk -F, -v e="$1" '$3 == e {s += $1} END {print s + 0}' "$OUT/perf-$v.csv"; }
  awk -v v="$v" -v ir="$ir" -v n="$n" -v nn="$nn" -v sc="$(ev raw_syscalls:sys_enter)" \
    -v fs="$(($(ev syscalls:sys_enter_fdatasync) + $(ev syscalls:sys_enter_fsync)))" -v cs="$(ev context-switches)" \
    -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" -v c="$CONNS" 'BEGIN {
      printf "%-9s c%-3d  %8.0f instructions/decision (%d decisions under callgrind) | native: %.0f req/s, %.1f syscalls, %.3f fsyncs, %.1f context switches, %.1f µs CPU per decision\n",
        v, c, ir / n, n, nn / '"$NATIVE_SECS"', sc / nn, fs / nn, cs / nn, (t1 - t0) / hz * 1e6 / nn
    }' | tee -a "$OUT/summary.txt"
done
echo "callgrind files: $OUT"
