#!/usr/bin/env bash
# HTTP benchmark of POST /v1/decide, every variant side by side in one run:
#
#   durable   the real server, as `rein serve` (SQLite audit log, fsync'd
#             group commit)
#   no-audit  the same router and runtime over a store that keeps nothing
#             (bench-only code in crates/rein-bench/src/bin/decide_server.rs)
#   floor     a bare axum route that parses the JSON and answers a constant
#
# 1. wrk, closed loop: -t2 -c64, -t1 -c1 and -t2 -c256 (EXTRA_CONNS; decide
#    variants only), DUR seconds each, ROUNDS rounds (variants interleaved);
#    server CPU per request, audit append latency and records per fsync
#    from the server itself, and each process's share of the machine (rows
#    where other processes took > MAX_OTHER % are left out of the means);
# 2. fixed rate (open loop, crates/rein-bench/src/bin/loadgen.rs) at RATES,
#    by default half the measured durable rate and 20,000/s (half the
#    40,000/s target): percentiles from the scheduled send time, and the
#    server's CPU per answer by thread (async worker, audit writer);
# 3. perf profiles (PROFILE_VARIANTS) under wrk, summarised by stage of a
#    decision with bench/profile_stages.py;
# 4. `rein audit verify` on the database of the load runs: records/s;
# 5. soak: the durable server at SOAK_RATE for SOAK_SECS, RSS every 5 s.
#
# Loopback only. Every step is bounded in time; every server and load
# process started here is stopped on exit; the databases are deleted unless
# KEEP_DB=1. Output: $OUT (summary.txt and the raw files). Needs wrk, curl,
# jq; perf for the profiles. Servers and load generators run at nice -10
# (PRIO) when allowed, which does not help against other cgroups' load.
#
#   bench/http.sh                                  # everything, ~25 min
#   SECTIONS="1 2" ROUNDS=1 bench/http.sh          # throughput and p99 only
#   SECTIONS=2 D_RPS=21800 RATES="2500 5000 10900" bench/http.sh
#   SECTIONS=5 SOAK_SECS=180 bench/http.sh         # 3-minute soak
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DUR=${DUR:-15}                 # seconds per wrk run
CONNS=${CONNS:-64}
EXTRA_CONNS=${EXTRA_CONNS-256}  # extra -c runs for durable and no-audit ("" for none)
WRK_THREADS=${WRK_THREADS:-2}
ROUNDS=${ROUNDS:-2}
WARM=${WARM:-3}                # wrk warm-up per server start, discarded
RATE_SECS=${RATE_SECS:-30}     # fixed-rate runs (after a 5 s warm-up)
RATE_CONNS=${RATE_CONNS:-64}
TARGET_HALF=${TARGET_HALF:-20000}
RATES=${RATES:-}               # fixed rates to test (default: see section 2)
PROFILE=${PROFILE:-1}
PROFILE_SECS=${PROFILE_SECS:-10}
SOAK_SECS=${SOAK_SECS:-600}
SOAK_RATE=${SOAK_RATE:-3000}
SOAK_CONNS=${SOAK_CONNS:-32}
KEEP_DB=${KEEP_DB:-0}
SECTIONS=${SECTIONS:-1 2 3 4 5}   # which parts to run (2-4 need the rates of 1)
PROFILE_VARIANTS=${PROFILE_VARIANTS:-durable no-audit floor}
MAX_OTHER=${MAX_OTHER:-10}        # rows where other processes took more than this % of the machine are left out of the means
POLICY=${POLICY:-examples/refund/policy.yaml}
SERVER_THREADS=${SERVER_THREADS:-}   # async worker threads of the servers ("" = as `rein serve`)
OUT=${OUT:-$ROOT/target/bench-http/$(date +%Y%m%d-%H%M%S)}
# Scheduling priority of the servers and load generators: ahead of other
# work on a shared machine (needs root for < 0; "" to run at normal priority).
PRIO=${PRIO:--10}
NICE=()
if [ -n "$PRIO" ] && nice -n "$PRIO" true 2>/dev/null; then NICE=(nice -n "$PRIO"); fi

mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
CLK_TCK=$(getconf CLK_TCK)

# ---- cleanup: only what this script started --------------------------------
PIDS=()
SERVER_PID=
cleanup() {
  for p in "${PIDS[@]}" $SERVER_PID; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}" $SERVER_PID; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "$KEEP_DB" != 1 ]; then rm -f "$OUT"/*.db "$OUT"/*.db-wal "$OUT"/*.db-shm; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build -----------------------------------------------------------------
# The `profiling` profile: release code with symbols, which perf needs (the
# release profile ships stripped). SERVER_BIN (and REIN_BIN) run a prebuilt
# server (and CLI) instead, e.g. an older commit's, to compare builds with
# the same script.
if [ -z "${SERVER_BIN:-}" ] || [ -z "${REIN_BIN:-}" ]; then
  cargo build -q --profile profiling -p rein-bench --bin decide_server --bin loadgen
  cargo build -q --profile profiling -p rein-cli
else
  cargo build -q --profile profiling -p rein-bench --bin loadgen
fi
SERVER=${SERVER_BIN:-$ROOT/target/profiling/decide_server}
LOADGEN=$ROOT/target/profiling/loadgen
REIN=${REIN_BIN:-$ROOT/target/profiling/rein}

# ---- inputs: one agent token and one audit key for every variant -----------
umask 077
TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$OUT/tokens.yaml" <<EOF
tokens:
  - name: agent
    role: agent
    token: "$TOKEN"
EOF
head -c 32 /dev/urandom >"$OUT/audit.key"
# The example request with an amount the policy allows (small_refund).
jq -c '.input.amount = 40' examples/refund/request.json >"$OUT/body.json"
umask 022
export BODY_FILE=$OUT/body.json REIN_TOKEN=$TOKEN

say "# rein HTTP benchmark, $(date -u +%FT%TZ)"
say "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
say "git: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (crates modified)')${SERVER_BIN:+; server binary $SERVER_BIN}"
say "parameters: DUR=$DUR CONNS=$CONNS EXTRA_CONNS='$EXTRA_CONNS' WRK_THREADS=$WRK_THREADS ROUNDS=$ROUNDS WARM=$WARM RATE_SECS=$RATE_SECS RATE_CONNS=$RATE_CONNS TARGET_HALF=$TARGET_HALF RATES='$RATES' PROFILE=$PROFILE PROFILE_SECS=$PROFILE_SECS PROFILE_VARIANTS='$PROFILE_VARIANTS' SECTIONS='$SECTIONS' MAX_OTHER=$MAX_OTHER PRIO='$PRIO' SOAK_SECS=$SOAK_SECS SOAK_RATE=$SOAK_RATE SOAK_CONNS=$SOAK_CONNS POLICY=$POLICY SERVER_THREADS=$SERVER_THREADS"
say "load average at start: $(loadavg)"
say "busiest processes at start:"
ps -eo pid,pcpu,etime,args --sort=-pcpu | cut -c1-140 | sed -n 1,6p | tee -a "$SUMMARY"
say ""

# ---- servers -----------------------------------------------------------------
# start_server NAME ARGS...: starts decide_server, sets SERVER_PID and PORT.
start_server() {
  local name=$1
  shift
  rm -f "$OUT/$name.port"
  "${NICE[@]}" "$SERVER" --policy "$POLICY" --port-file "$OUT/$name.port" "$@" >>"$OUT/$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do [ -s "$OUT/$name.port" ] && break; sleep 0.05; done
  [ -s "$OUT/$name.port" ] || { echo "server $name did not start:"; cat "$OUT/$name.log"; exit 1; }
  PORT=$(cat "$OUT/$name.port")
  # Sanity: the request is allowed (the floor answers allow regardless).
  local answer
  answer=$(curl -sS --max-time 5 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary @"$BODY_FILE" "http://127.0.0.1:$PORT/v1/decide")
  case $answer in
    *'"effect":"allow"'*) ;;
    *) echo "server $name answered: $answer"; exit 1 ;;
  esac
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU jiffies of each thread of process $1, summed by thread name: "name ticks" lines
thread_ticks() {
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
  done 2>/dev/null | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
# busy and total jiffies of the whole machine
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
# metric NAME: the sum of a metric's samples on the running server (0 if none).
metric() {
  curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" |
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $NF} END {printf "%.9g\n", s + 0}'
}
kv() { tr ' ' '\n' | sed -n "s/^$1=//p"; }

# ---- 1. closed loop with wrk ---------------------------------------------
ROWS=$OUT/rows.tsv
printf 'round\tvariant\tconns\treq_s\tp50_us\tp90_us\tp99_us\tp999_us\terrors\tcpu_us_per_req\tappend_mean_us\trecords_per_fsync\tserver_cpu_pct\twrk_cpu_pct\tother_cpu_pct\tload1\n' >"$ROWS"

# wrk_run ROUND VARIANT THREADS CONNS
wrk_run() {
  local round=$1 variant=$2 threads=$3 conns=$4
  local file=$OUT/wrk-$variant-c$conns-r$round.txt
  local load1 t0 t1 a_sum0 a_cnt0 a_sum1 a_cnt1 all0 all1 allow0 allow1 syncs=- perfpid= nonallow=0
  local allow_metric='rein_decisions_total{action="refund",effect="allow"}'
  load1=$(cut -d' ' -f1 /proc/loadavg)
  if [ "$variant" != floor ]; then
    a_sum0=$(metric rein_audit_append_duration_seconds_sum)
    a_cnt0=$(metric rein_audit_append_duration_seconds_count)
    all0=$(metric rein_decisions_total)
    allow0=$(metric "$allow_metric")
  fi
  if [ "$variant" = durable ]; then
    perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -p "$SERVER_PID" \
      -o "$OUT/fsync-c$conns-r$round.csv" -- sleep "$DUR" 2>/dev/null &
    perfpid=$!
    PIDS+=("$perfpid")
  fi
  local m0 m1 w0 w1
  m0=$(machine_ticks)
  t0=$(cpu_ticks "$SERVER_PID")
  w0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$file.time" timeout $((DUR + 30)) "${NICE[@]}" wrk -t"$threads" -c"$conns" -d"${DUR}s" --latency \
    -s bench/http-decide.lua "http://127.0.0.1:$PORT/v1/decide" >"$file" 2>&1
  t1=$(cpu_ticks "$SERVER_PID")
  m1=$(machine_ticks)
  w1=$(date +%s.%N)
  # Shares of the machine (all CPUs = 100%) during the run: the server, wrk,
  # and everything else (other processes, kernel threads, interrupts).
  local shares
  shares=$(awk -v m0="$m0" -v m1="$m1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" -v w0="$w0" -v w1="$w1" -v wt="$(cat "$file.time")" '
    BEGIN {
      split(m0, a, " "); split(m1, b, " "); split(wt, w, " ")
      total = b[2] - a[2]; busy = b[1] - a[1]; srv = t1 - t0; wrk = (w[1] + w[2]) * hz
      # (sampling granularity can make this slightly negative: clamp at 0)
      other = busy - srv - wrk; if (other < 0) other = 0
      printf "%.0f\t%.0f\t%.0f", 100 * srv / total, 100 * wrk / total, 100 * other / total
    }')
  [ -n "$perfpid" ] && wait "$perfpid" 2>/dev/null || true
  local line req rps
  line=$(grep '^WRK ' "$file")
  req=$(echo "$line" | kv requests)
  rps=$(echo "$line" | kv rps)
  local errors
  errors=$(($(echo "$line" | kv non2xx) + $(echo "$line" | kv connect) + $(echo "$line" | kv read) + $(echo "$line" | kv write) + $(echo "$line" | kv timeout)))
  local cpu append=- perrec=-
  cpu=$(awk -v a="$t0" -v b="$t1" -v n="$req" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / n}')
  if [ "$variant" != floor ]; then
    a_sum1=$(metric rein_audit_append_duration_seconds_sum)
    a_cnt1=$(metric rein_audit_append_duration_seconds_count)
    all1=$(metric rein_decisions_total)
    allow1=$(metric "$allow_metric")
    append=$(awk -v s0="$a_sum0" -v s1="$a_sum1" -v c0="$a_cnt0" -v c1="$a_cnt1" 'BEGIN {if (c1 > c0) printf "%.1f", (s1 - s0) / (c1 - c0) * 1e6; else print "-"}')
    # Every decision of the run must have been an allow: others count as errors.
    nonallow=$(awk -v a0="$all0" -v a1="$all1" -v l0="$allow0" -v l1="$allow1" 'BEGIN {printf "%d", (a1 - a0) - (l1 - l0)}')
    echo "$variant c$conns r$round: decisions $all0 -> $all1, allow $allow0 -> $allow1, wrk requests $req" >>"$OUT/effects.txt"
  fi
  errors=$((errors + nonallow))
  if [ "$variant" = durable ] && [ -s "$OUT/fsync-c$conns-r$round.csv" ]; then
    syncs=$(awk -F, '/syscalls/ {s += $1} END {print s + 0}' "$OUT/fsync-c$conns-r$round.csv")
    perrec=$(awk -v c0="$a_cnt0" -v c1="$a_cnt1" -v s="$syncs" 'BEGIN {if (s > 0) printf "%.1f", (c1 - c0) / s; else print "-"}')
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$variant" "$conns" "$rps" \
    "$(echo "$line" | kv p50)" "$(echo "$line" | kv p90)" "$(echo "$line" | kv p99)" "$(echo "$line" | kv p999)" \
    "$errors" "$cpu" "$append" "$perrec" "$shares" "$load1" >>"$ROWS"
  echo "  $variant -c$conns: $rps req/s, p50 $(echo "$line" | kv p50) µs, p99 $(echo "$line" | kv p99) µs (load $load1; server/wrk/other % of machine: $shares)" | tr '\t' '/'

}

variant_args() {
  case $1 in
    durable) echo "--store sqlite --db $OUT/load.db --tokens $OUT/tokens.yaml --audit-key $OUT/audit.key" ;;
    no-audit) echo "--store none --tokens $OUT/tokens.yaml --audit-key $OUT/audit.key" ;;
    floor) echo "--mode floor" ;;
  esac
  # Worker threads of every server (default: as `rein serve`).
  if [ -n "$SERVER_THREADS" ]; then echo "--threads $SERVER_THREADS"; fi
}

has() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if has 1; then
say "## 1. wrk, closed loop (-t$WRK_THREADS -c$CONNS, -t1 -c1, and -c$EXTRA_CONNS for the decide variants; ${DUR}s each, $ROUNDS rounds)"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  for variant in floor no-audit durable; do
    # shellcheck disable=SC2046
    start_server "$variant" $(variant_args "$variant")
    timeout $((WARM + 20)) "${NICE[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${WARM}s" -s bench/http-decide.lua \
      "http://127.0.0.1:$PORT/v1/decide" >/dev/null 2>&1
    wrk_run "$round" "$variant" "$WRK_THREADS" "$CONNS"
    wrk_run "$round" "$variant" 1 1
    # More connections, more appends per fsync: how far group commit goes.
    for extra in $EXTRA_CONNS; do
      [ "$variant" = floor ] || wrk_run "$round" "$variant" "$WRK_THREADS" "$extra"
    done
    stop_server
  done
done
say ""
column -t -s $'\t' "$ROWS" | tee -a "$SUMMARY"
say ""
# Averages over rounds, -c$CONNS, of the rows where other processes took at
# most MAX_OTHER % of the machine (all rows if none qualifies).
avg() {
  awk -F'\t' -v v="$1" -v c="$2" -v col="$3" -v max="$MAX_OTHER" '
    NR > 1 && $2 == v && $3 == c {a += $col; an++; if ($15 <= max) {q += $col; qn++}}
    END {if (qn) printf "%.1f", q / qn; else if (an) printf "%.1f", a / an}' "$ROWS"
}
say "rows used for the means: those with other_cpu_pct <= $MAX_OTHER ($(awk -F'\t' -v max="$MAX_OTHER" 'NR > 1 && $15 <= max' "$ROWS" | wc -l) of $(($(wc -l <"$ROWS") - 1)) rows; all rows of a variant if none of its rows qualifies)"
D_RPS=$(avg durable "$CONNS" 4)
N_RPS=$(avg no-audit "$CONNS" 4)
F_RPS=$(avg floor "$CONNS" 4)
D_CPU=$(avg durable "$CONNS" 10)
N_CPU=$(avg no-audit "$CONNS" 10)
F_CPU=$(avg floor "$CONNS" 10)
say "mean -c$CONNS: durable $D_RPS req/s, no-audit $N_RPS req/s, floor $F_RPS req/s"
say "ratio durable / no-audit: $(awk -v a="$D_RPS" -v b="$N_RPS" 'BEGIN {printf "%.2f", a / b}')"
say "ratio no-audit / floor:   $(awk -v a="$N_RPS" -v b="$F_RPS" 'BEGIN {printf "%.2f", a / b}')"
say "audit cost per decision, amortised: server CPU $(awk -v a="$D_CPU" -v b="$N_CPU" 'BEGIN {printf "%.1f", a - b}') µs (durable $D_CPU - no-audit $N_CPU µs CPU/request); capacity $(awk -v a="$D_RPS" -v b="$N_RPS" 'BEGIN {printf "%.1f", 1e6 / a - 1e6 / b}') µs of wall time per decision at saturation (1/durable - 1/no-audit)"
say ""
fi
# Sections 2-4 without 1: the rates and CPU costs from the environment.
D_RPS=${D_RPS:-20000}
N_RPS=${N_RPS:-40000}
D_CPU=${D_CPU:-}
N_CPU=${N_CPU:-}
F_CPU=${F_CPU:-}

# ---- 2. fixed rate ---------------------------------------------------------
HALF=$(awk -v a="$D_RPS" 'BEGIN {printf "%.0f", a / 2}')
if has 2; then
say "## 2. fixed rate (open loop, $RATE_CONNS connections, ${RATE_SECS}s after 5 s warm-up; latency from the scheduled send)"
rate_run() {
  local variant=$1 rate=$2
  # shellcheck disable=SC2046
  start_server "$variant" $(variant_args "$variant")
  local load1 m0 m1 t0 t1 c0 c1 s0 s1 shares append
  load1=$(loadavg)
  c0=$(metric rein_audit_append_duration_seconds_count)
  s0=$(metric rein_audit_append_duration_seconds_sum)
  m0=$(machine_ticks)
  t0=$(cpu_ticks "$SERVER_PID")
  thread_ticks "$SERVER_PID" >"$OUT/rate-$variant-$rate.threads0"
  /usr/bin/time -f '%U %S' -o "$OUT/rate-$variant-$rate.time" \
    timeout $((RATE_SECS + 60)) "${NICE[@]}" "$LOADGEN" --addr "127.0.0.1:$PORT" --rate "$rate" --duration "$RATE_SECS" --warmup 5 \
    --connections "$RATE_CONNS" --body "$BODY_FILE" --token "$TOKEN" --expect allow \
    >"$OUT/rate-$variant-$rate.txt" 2>&1 || true
  t1=$(cpu_ticks "$SERVER_PID")
  thread_ticks "$SERVER_PID" >"$OUT/rate-$variant-$rate.threads1"
  m1=$(machine_ticks)
  c1=$(metric rein_audit_append_duration_seconds_count)
  s1=$(metric rein_audit_append_duration_seconds_sum)
  stop_server
  shares=$(awk -v m0="$m0" -v m1="$m1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" -v wt="$(cat "$OUT/rate-$variant-$rate.time")" '
    BEGIN {
      split(m0, a, " "); split(m1, b, " "); split(wt, w, " ")
      total = b[2] - a[2]; busy = b[1] - a[1]; srv = t1 - t0; lg = (w[1] + w[2]) * hz
      other = busy - srv - lg; if (other < 0) other = 0
      printf "server %.0f%%, loadgen %.0f%%, other %.0f%% of the machine", 100 * srv / total, 100 * lg / total, 100 * other / total
    }')
  append=$(awk -v s0="$s0" -v s1="$s1" -v c0="$c0" -v c1="$c1" 'BEGIN {if (c1 > c0) printf "mean audit append %.0f µs", (s1 - s0) / (c1 - c0) * 1e6; else print "no appends measured"}')
  say "$variant @ $rate/s (load $load1; $shares; $append):"
  grep -v '^RESULT' "$OUT/rate-$variant-$rate.txt" | sed 's/^/    /' | tee -a "$SUMMARY"
  # Server CPU per answer, by thread (async worker, audit writer, checkpointer);
  # the window includes the loadgen's 5 s warm-up at the same rate.
  join "$OUT/rate-$variant-$rate.threads0" "$OUT/rate-$variant-$rate.threads1" |
    awk -v hz="$CLK_TCK" -v n="$(awk '/^RESULT/ {for (i = 1; i <= NF; i++) if ($i ~ /^answered=/) {sub("answered=", "", $i); print $i}}' "$OUT/rate-$variant-$rate.txt")" \
      -v secs="$RATE_SECS" '
      BEGIN { line = "    server CPU per answer by thread:" }
      $3 > $2 { line = line sprintf(" %s %.1f µs", $1, ($3 - $2) / hz * 1e6 / (n * (secs + 5) / secs)) }
      END { print line }' | tee -a "$SUMMARY"
}
# The disk's own fsync latency bounds the durable path's: every answer
# waits for the fsync of its batch (and, arriving during one, for the one
# under way). Measured here, before the runs, on the same file system.
python3 bench/fsync_latency.py "$OUT" | tee -a "$SUMMARY"
# Default: half the measured durable rate, and half the 40,000/s target.
RATES=${RATES:-$HALF $([ "$HALF" -lt "$TARGET_HALF" ] && echo "$TARGET_HALF")}
for rate in $RATES; do
  rate_run durable "$rate"
  rate_run no-audit "$rate"
done
say ""
fi

# ---- 3. profiles -----------------------------------------------------------
# preport VARIANT PERF-REPORT-ARGS...: the report as plain lines (via a file,
# so that `head` cannot SIGPIPE perf under pipefail).
preport() {
  local v=$1
  shift
  perf report -i "$OUT/perf-$v.data" --stdio -g none "$@" >"$OUT/.report" 2>/dev/null || true
  grep -v '^#' "$OUT/.report" | sed -e 's/[[:space:]]*-[[:space:]]*-[[:space:]]*$//' -e 's/[[:space:]]*$//' | awk 'NF' || true
}
if has 3 && [ "$PROFILE" = 1 ] && perf stat -e task-clock true >/dev/null 2>&1; then
  say "## 3. profiles (perf record -e cpu-clock --call-graph dwarf, ${PROFILE_SECS}s under wrk -c$CONNS)"
  for variant in $PROFILE_VARIANTS; do
    # shellcheck disable=SC2046
    start_server "$variant" $(variant_args "$variant")
    timeout $((WARM + 20)) "${NICE[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${WARM}s" -s bench/http-decide.lua \
      "http://127.0.0.1:$PORT/v1/decide" >/dev/null 2>&1
    timeout $((PROFILE_SECS + 30)) "${NICE[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"$((PROFILE_SECS + 2))s" -s bench/http-decide.lua \
      "http://127.0.0.1:$PORT/v1/decide" >"$OUT/wrk-profile-$variant.txt" 2>&1 &
    PIDS+=("$!")
    sleep 1
    timeout $((PROFILE_SECS + 60)) perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$SERVER_PID" \
      -o "$OUT/perf-$variant.data" -- sleep "$PROFILE_SECS" >/dev/null 2>&1 || true
    wait "${PIDS[-1]}" 2>/dev/null || true
    stop_server
    {
      echo "### $variant: by thread"
      preport "$variant" --no-children --sort comm | head -8 || true
      echo "### $variant: by library"
      preport "$variant" --no-children --sort dso | head -10 || true
      echo "### $variant: self time by symbol (top 45)"
      preport "$variant" --no-children --sort symbol | head -45 || true
      echo "### $variant: inclusive time by symbol (>= 1.5%)"
      preport "$variant" --children --sort symbol --percent-limit 1.5 | head -120 || true
    } >"$OUT/profile-$variant.txt"
    case $variant in
      durable) cpu=$D_CPU ;;
      no-audit) cpu=$N_CPU ;;
      *) cpu=$F_CPU ;;
    esac
    perf script -i "$OUT/perf-$variant.data" -F comm,tid,ip,sym,dso 2>/dev/null |
      python3 bench/profile_stages.py "$cpu" >"$OUT/stages-$variant.txt" || true
    say "### $variant under perf ($(grep -o 'Requests/sec: *[0-9.]*' "$OUT/wrk-profile-$variant.txt" || echo 'Requests/sec: ?'))"
    tee -a "$SUMMARY" <"$OUT/stages-$variant.txt"
    say "(perf report views: $OUT/profile-$variant.txt)"
    say ""
  done
  say ""
fi

# ---- 4. verify ---------------------------------------------------------------
if has 4 && [ -f "$OUT/load.db" ]; then
say "## 4. rein audit verify on the load database"
say "database: $(du -h "$OUT/load.db" | cut -f1) ($(stat -c %s "$OUT/load.db") bytes)"
for i in 1 2; do
  s=$(date +%s.%N)
  v=$("$REIN" audit verify --db "$OUT/load.db" || true)
  e=$(date +%s.%N)
  n=$(echo "$v" | sed -n 's/^ok: \([0-9]*\) records.*/\1/p')
  say "run $i: $v in $(awk -v s="$s" -v e="$e" 'BEGIN {printf "%.2f", e - s}') s = $(awk -v s="$s" -v e="$e" -v n="${n:-0}" 'BEGIN {printf "%.0f", n / (e - s)}') records/s"
done
say ""

fi

# ---- 5. soak -------------------------------------------------------------------
if has 5; then
say "## 5. soak: durable server at $SOAK_RATE/s for ${SOAK_SECS}s ($SOAK_CONNS connections), RSS every 5 s"
start_server durable-soak --store sqlite --db "$OUT/soak.db" --tokens "$OUT/tokens.yaml" --audit-key "$OUT/audit.key"
SOAK=$OUT/soak-rss.tsv
printf 't_s\trss_kb\thwm_kb\tthreads\tdb_mb\twal_mb\tload1\n' >"$SOAK"
sample() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" \
    "$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")" \
    "$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")" \
    "$(awk '/^Threads/ {print $2}' "/proc/$SERVER_PID/status")" \
    "$(($(stat -c %s "$OUT/soak.db") / 1048576))" \
    "$(($(stat -c %s "$OUT/soak.db-wal" 2>/dev/null || echo 0) / 1048576))" \
    "$(cut -d' ' -f1 /proc/loadavg)" >>"$SOAK"
}
sample 0
timeout $((SOAK_SECS + 60)) "${NICE[@]}" "$LOADGEN" --addr "127.0.0.1:$PORT" --rate "$SOAK_RATE" --duration "$SOAK_SECS" --warmup 0 \
  --connections "$SOAK_CONNS" --body "$BODY_FILE" --token "$TOKEN" --expect allow >"$OUT/soak-load.txt" 2>&1 &
LG=$!
PIDS+=("$LG")
start=$(date +%s)
while kill -0 "$LG" 2>/dev/null; do
  sleep 5
  kill -0 "$LG" 2>/dev/null || break
  sample $(($(date +%s) - start))
done
wait "$LG" || true
sample "$(($(date +%s) - start)) (after)"
stop_server
grep -v '^RESULT' "$OUT/soak-load.txt" | sed 's/^/    /' | tee -a "$SUMMARY"
awk -F'\t' 'NR > 1 && $1 ~ /^[0-9]+$/ {
    n++; t[n] = $1; r[n] = $2; if ($2 > max) max = $2
  }
  END {
    # least-squares slope of RSS over the samples after the first minute
    for (i = 1; i <= n; i++) if (t[i] >= 60) {m++; sx += t[i]; sy += r[i]; sxx += t[i]^2; sxy += t[i] * r[i]}
    slope = (m > 1) ? (m * sxy - sx * sy) / (m * sxx - sx * sx) : 0
    r60 = r[1]; for (i = 1; i <= n; i++) if (t[i] >= 60) {r60 = r[i]; break}
    printf "RSS: idle %d KiB, first sample under load (t=%ss) %d KiB, at 60 s %d KiB, max %d KiB, end %d KiB; slope after 60 s %.1f KiB/min over %d samples\n", r[1], t[2], r[2], r60, max, r[n], slope * 60, m
  }' "$SOAK" | tee -a "$SUMMARY"
say "series: $SOAK"
say ""
fi
say "load average at end: $(loadavg)"
say "raw files: $OUT"
