#!/usr/bin/env bash
# Added latency of the MCP gateway over stdio, side by side in one run:
# `tools/call` of a trivial tool (crates/rein-bench's mcp_echo_server),
# one call at a time, directly and through `rein mcp gateway` (policy
# bench/mcp-policy.yaml, store on disk, and on tmpfs to show the fsync's
# share), alternated ROUNDS times. Then one long run through the gateway
# (LONG calls) with the gateway's resident memory sampled every 10,000
# calls, to see that it stays flat.
#
#   bench/mcp_gateway.sh
#   ROUNDS=5 CALLS=20000 LONG=100000 bench/mcp_gateway.sh
#
# Output: $OUT/summary.txt and one JSON line per run (mcp_latency's).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
CALLS=${CALLS:-20000}
LONG=${LONG:-100000}
OUT=${OUT:-$ROOT/target/bench-mcp-gateway/$(date +%Y%m%d-%H%M%S)}
TMPFS=${TMPFS:-/dev/shm}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

cargo build -q --release -p rein-cli -p rein-bench --bin rein --bin mcp_echo_server --bin mcp_latency
REIN=$ROOT/target/release/rein
ECHO=$ROOT/target/release/mcp_echo_server
LAT=$ROOT/target/release/mcp_latency
POLICY=$ROOT/bench/mcp-policy.yaml

disk=$(mktemp -d "$ROOT/target/bench-mcp-db.XXXX")
mem=$(mktemp -d "$TMPFS/bench-mcp-db.XXXX")
trap 'rm -rf "$disk" "$mem"' EXIT

run() { # label, then the server command
  local label=$1; shift
  local line
  line=$("$LAT" --calls "$CALLS" --warmup 1000 --sample-every "$CALLS" -- "$@")
  echo "$label $line" >>"$OUT/runs.txt"
  echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["median_us"])'
}

declare -A medians
for round in $(seq 1 "$ROUNDS"); do
  medians[direct]+="$(run direct "$ECHO") "
  rm -f "$disk"/rein.db*; rm -f "$mem"/rein.db*
  medians[gateway_disk]+="$(run gateway_disk "$REIN" mcp gateway --policy "$POLICY" --db "$disk/rein.db" --server echo -- "$ECHO") "
  medians[gateway_tmpfs]+="$(run gateway_tmpfs "$REIN" mcp gateway --policy "$POLICY" --db "$mem/rein.db" --server echo -- "$ECHO") "
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
say "tools/call over stdio, $CALLS calls per run, $ROUNDS rounds alternated (median of the runs' medians, µs):"
d=$(echo "${medians[direct]}" | median)
for k in direct gateway_disk gateway_tmpfs; do
  m=$(echo "${medians[$k]}" | median)
  say "  $k: runs ${medians[$k]}→ median $m µs, added $(python3 -c "print(round($m - $d, 1))") µs"
done
say "p99 per run (µs):"
awk '{print "  " $0}' "$OUT/runs.txt" | python3 -c '
import json, sys
for line in sys.stdin:
    label, body = line.strip().split(" ", 1)
    r = json.loads(body)
    p99, cpu = r["p99_us"], r["cpu_us_per_call"]
    print(f"  {label}: p99 {p99} µs, cpu {cpu} µs/call")' | tee -a "$SUMMARY"

rm -f "$disk"/rein.db*
say "memory over $LONG calls through the gateway (store on disk), VmRSS every 10,000 calls (KiB):"
long=$("$LAT" --calls "$LONG" --warmup 1000 --sample-every 10000 -- "$REIN" mcp gateway --policy "$POLICY" --db "$disk/rein.db" --server echo -- "$ECHO")
echo "long $long" >>"$OUT/runs.txt"
say "  $long"
say "output: $OUT"
