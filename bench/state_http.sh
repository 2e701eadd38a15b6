#!/usr/bin/env bash
# Stateful control through `rein serve` (SQLite), side by side in one run:
#
# 1. the disk's fsync latency (bench/fsync_latency.py, on the database's
#    file system): one fsync per decision, the design of an engine that
#    syncs each event, does 1 / p50 decisions per second;
# 2. closed loop (wrk, -t$WRK_THREADS -c$CONNS, DUR s each, ROUNDS rounds,
#    order alternated): in each round ONE server (a fresh database, deleted
#    after the round unless KEEP_DB=1: disk), the policy bench/state-policy.yaml, and
#    the same request bodies (varied actors and sessions) sent to its three
#    actions: `refund` (stateless), `refund.track` (a limit per actor and a
#    session label rule) and `refund.loop` (the same plus a loop guard over
#    the session's recorded calls). Decisions/s, latency, server CPU per
#    decision, each process's share of the machine; then one connection
#    (-t1 -c1, C1_DUR s), where every decision waits for its own commit;
# 3. soak (SOAK_SECS at SOAK_RATE, open loop, crates/rein-bench loadgen):
#    `refund.loop` with short windows (SOAK_WINDOW) and short session idle
#    (SOAK_IDLE), session ids changing every SOAK_ROTATE s, so buckets'
#    uses leave the window and sessions expire; every SAMPLE s: the
#    server's RSS, the database and WAL sizes, the rows and bytes of the
#    state tables, the buckets of GET /v1/limits. Growth is the slope after
#    SOAK_STEADY s (once the windows and the idle time have filled).
#
# Loopback only; every process started here is stopped on exit; the
# databases are deleted unless KEEP_DB=1. Output: $OUT (summary.txt and the
# raw files). Needs wrk, curl, jq, python3.
#
#   bench/state_http.sh                            # everything, ~15 min
#   SECTIONS="1 2" ROUNDS=3 bench/state_http.sh    # throughput only
#   SECTIONS=3 SOAK_SECS=600 bench/state_http.sh   # the soak
#
# REIN_BIN and LOADGEN_BIN run prebuilt binaries (otherwise both are built
# with CARGO_PROFILE, default release: the binary as shipped).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SECTIONS=${SECTIONS:-1 2 3}
DUR=${DUR:-10}
C1_DUR=${C1_DUR:-5}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
ROUNDS=${ROUNDS:-3}
WARM=${WARM:-3}
VARIANTS=${VARIANTS:-refund refund.track refund.loop}
ACTORS=${ACTORS:-100}          # distinct actor ids (limit buckets) in the bodies
SESSIONS=${SESSIONS:-1000}     # distinct sessions in the bodies
BODIES=${BODIES:-2000}         # distinct bodies
POLICY=${POLICY:-bench/state-policy.yaml}
SOAK_SECS=${SOAK_SECS:-600}
SOAK_RATE=${SOAK_RATE:-2000}
SOAK_CONNS=${SOAK_CONNS:-16}
SOAK_WINDOW=${SOAK_WINDOW:-1m}   # every window and max_window of the soak's policy
SOAK_IDLE=${SOAK_IDLE:-30s}      # rein serve --session-idle
SOAK_ROTATE=${SOAK_ROTATE:-10}   # seconds a session id (and an actor id) is used
SOAK_SESSIONS=${SOAK_SESSIONS:-200}  # sessions (and ACTORS actors) in use at a time
SOAK_STEADY=${SOAK_STEADY:-180}  # slopes from this time on (window + idle + the server's 60 s prune period + a rotation)
SAMPLE=${SAMPLE:-30}
STATE_TABLES=${STATE_TABLES:-limit|use|session|label|call|state}   # regex of the tables (and indexes) counted as state
CARGO_PROFILE=${CARGO_PROFILE:-release}
KEEP_DB=${KEEP_DB:-0}
OUT=${OUT:-$ROOT/target/bench-state/$(date +%Y%m%d-%H%M%S)}
PRIO=${PRIO:--10}
NICE=()
if [ -n "$PRIO" ] && nice -n "$PRIO" true 2>/dev/null; then NICE=(nice -n "$PRIO"); fi

mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
CLK_TCK=$(getconf CLK_TCK)
has() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---- cleanup: only what this script started --------------------------------
PIDS=()
SERVER_PID=
cleanup() {
  for p in "${PIDS[@]}" $SERVER_PID; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}" $SERVER_PID; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "$KEEP_DB" != 1 ]; then rm -f "$OUT"/*.db "$OUT"/*.db-wal "$OUT"/*.db-shm "$OUT"/*.db.lock; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build -------------------------------------------------------------------
if [ -z "${REIN_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
  cargo build -q --profile "$CARGO_PROFILE" -p rein-cli -p rein-bench --bin rein --bin loadgen
fi
DIR=${CARGO_TARGET_DIR:-$ROOT/target}/$([ "$CARGO_PROFILE" = dev ] && echo debug || echo "$CARGO_PROFILE")
REIN=${REIN_BIN:-$DIR/rein}
LOADGEN=${LOADGEN_BIN:-$DIR/loadgen}
IDLE_FLAG=()
if "$REIN" serve --help | grep -q -- '--session-idle'; then IDLE_FLAG=(--session-idle); fi

# ---- inputs --------------------------------------------------------------------
umask 077
TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ADMIN_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$OUT/tokens.yaml" <<EOF
tokens:
  - name: agent
    role: agent
    token: "$TOKEN"
  - name: admin
    role: admin
    token: "$ADMIN_TOKEN"
EOF
head -c 32 /dev/urandom >"$OUT/audit.key"
umask 022
# bodies ACTION SESSION-PREFIX ACTOR-PREFIX FILE: BODIES allowed refunds
# (amounts 1-100) of ACTORS actors in SESSIONS sessions; every variant gets
# the same text but for the action's name.
bodies() {
  python3 - "$1" "$2" "$3" "$BODIES" "$ACTORS" "$SESSIONS" >"$4" <<'EOF'
import json, sys
action, prefix, actor_prefix, n, actors, sessions = *sys.argv[1:4], *map(int, sys.argv[4:])
for i in range(n):
    print(json.dumps({
        "action": action,
        "input": {"order_id": f"ord_{i:08d}", "amount": 1 + i % 100, "currency": "EUR"},
        "actor": {"id": f"{actor_prefix}{i % actors}", "role": "agent"},
        "snapshot": {"fraud_flag": False, "refunds_today": 0},
        "session": f"{prefix}{(i * 7919) % sessions}",
    }, separators=(",", ":")))
EOF
}

say "# rein stateful-control HTTP benchmark, $(date -u +%FT%TZ)"
say "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r)"
say "git: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (crates modified)'); rein: $REIN ($("$REIN" --version))"
say "parameters: SECTIONS='$SECTIONS' DUR=$DUR C1_DUR=$C1_DUR CONNS=$CONNS WRK_THREADS=$WRK_THREADS ROUNDS=$ROUNDS VARIANTS='$VARIANTS' ACTORS=$ACTORS SESSIONS=$SESSIONS BODIES=$BODIES POLICY=$POLICY SOAK_SECS=$SOAK_SECS SOAK_SESSIONS=$SOAK_SESSIONS SOAK_RATE=$SOAK_RATE SOAK_CONNS=$SOAK_CONNS SOAK_WINDOW=$SOAK_WINDOW SOAK_IDLE=$SOAK_IDLE SOAK_ROTATE=$SOAK_ROTATE SAMPLE=$SAMPLE PRIO='$PRIO'"
say "load average at start: $(loadavg)"
ps -eo pid,pcpu,etime,args --sort=-pcpu | cut -c1-140 | sed -n 1,6p | tee -a "$SUMMARY"
say ""

# ---- server ---------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# start_server NAME POLICY DB [IDLE]: rein serve, as shipped; sets SERVER_PID and PORT.
start_server() {
  local name=$1 policy=$2 db=$3 idle=${4:-}
  PORT=$(free_port)
  local extra=()
  if [ -n "$idle" ] && [ ${#IDLE_FLAG[@]} -gt 0 ]; then extra=(--session-idle "$idle"); fi
  "${NICE[@]}" "$REIN" serve --policy "$policy" --db "$db" --tokens "$OUT/tokens.yaml" --audit-key "$OUT/audit.key" \
    --listen "127.0.0.1:$PORT" --color never "${extra[@]}" >>"$OUT/$name.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 200); do curl -s --max-time 1 "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.05; done
  curl -s --max-time 2 "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "server $name did not start:"; cat "$OUT/$name.log"; exit 1; }
}
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
# check_allowed FILE: the first body of FILE must be allowed.
check_allowed() {
  local answer
  answer=$(head -1 "$1" | curl -sS --max-time 5 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary @- "http://127.0.0.1:$PORT/v1/decide")
  case $answer in
    *'"effect":"allow"'*) ;;
    *) echo "$(head -c 200 "$1") was answered: $answer"; exit 1 ;;
  esac
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
# decisions ACTION EFFECT: the server's counter (0 if none).
decisions() {
  curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" |
    awk -v want="rein_decisions_total{action=\"$1\",effect=\"$2\"}" '$1 == want {s += $NF} END {printf "%d\n", s + 0}'
}
kv() { tr ' ' '\n' | sed -n "s/^$1=//p"; }
# need_disk DECISIONS: stop unless the database's file system has room for
# that many decisions (BYTES_PER_DECISION each: audit record and state rows).
BYTES_PER_DECISION=${BYTES_PER_DECISION:-2000}
need_disk() {
  local avail need
  avail=$(df -k --output=avail "$OUT" | tail -1)
  need=$(($1 * BYTES_PER_DECISION / 1024))
  if [ "$avail" -lt "$need" ]; then
    say "not enough disk under $OUT: $((avail / 1024)) MiB free, about $((need / 1024)) MiB needed for $1 decisions; stopping"
    exit 1
  fi
}

# ---- 1. fsync ----------------------------------------------------------------------
FSYNC_RATE=
if has 1; then
  say "## 1. the disk's fsync (the database's file system)"
  line=$(python3 bench/fsync_latency.py "$OUT")
  say "$line"
  p50=$(echo "$line" | sed -n 's/.*p50 \([0-9]*\) µs.*/\1/p')
  if [ "${p50:-0}" -gt 0 ]; then
    FSYNC_RATE=$(awk -v p="$p50" 'BEGIN {printf "%.0f", 1e6 / p}')
    say "one fsync per decision: 1 / p50 = $FSYNC_RATE decisions/s"
  else
    say "fsync p50 under 1 µs: not a disk (tmpfs?); no fsync baseline"
  fi
  say ""
fi

# ---- 2. closed loop, one server ------------------------------------------------------
if has 2; then
  say "## 2. wrk -t$WRK_THREADS -c$CONNS, ${DUR}s each, $ROUNDS rounds, one server (rein serve, SQLite), bodies: $BODIES ($ACTORS actors, $SESSIONS sessions)"
  for v in $VARIANTS; do bodies "$v" "s-" "bot-" "$OUT/bodies-$v.jsonl"; done
  # round_server NAME: a fresh server and database, each action checked and warmed up.
  round_server() {
    rm -f "$OUT/$1.db" "$OUT/$1.db-wal" "$OUT/$1.db-shm"
    # A round at up to 40,000 decisions/s.
    need_disk $((40000 * (DUR + WARM) * $(echo "$VARIANTS" | wc -w)))
    start_server "$1" "$POLICY" "$OUT/$1.db"
    for v in $VARIANTS; do
      check_allowed "$OUT/bodies-$v.jsonl"
      BODIES_FILE=$OUT/bodies-$v.jsonl REIN_TOKEN=$TOKEN timeout $((WARM + 20)) "${NICE[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${WARM}s" \
        -s bench/http-decide-many.lua "http://127.0.0.1:$PORT/v1/decide" >/dev/null 2>&1
    done
  }
  # round_end NAME: the state the round left, then the server stops and the database goes.
  round_end() {
    curl -s --max-time 10 -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$PORT/v1/limits" >"$OUT/limits-$1.json" || true
    say "  $1: GET /v1/limits $(jq '[.. | objects | select(has("bucket"))] | length' "$OUT/limits-$1.json" 2>/dev/null || echo '?') buckets; server RSS $(awk '/^VmRSS/ {print $2, $3}' "/proc/$SERVER_PID/status")"
    stop_server
    say "  $1: database $(($(stat -c %s "$OUT/$1.db") / 1048576)) MiB: $(python3 bench/state_sample.py "$OUT/$1.db" "$STATE_TABLES" 2>&1)"
    [ "$KEEP_DB" = 1 ] || rm -f "$OUT/$1.db" "$OUT/$1.db-wal" "$OUT/$1.db-shm"
  }
  ROWS=$OUT/rows.tsv
  printf 'round\tvariant\tconns\treq_s\tp50_us\tp99_us\terrors\tcpu_us_per_req\tserver_pct\twrk_pct\tother_pct\tload1\n' >"$ROWS"
  # wrk_run ROUND VARIANT THREADS CONNS SECONDS
  wrk_run() {
    local round=$1 v=$2 threads=$3 conns=$4 secs=$5
    local file=$OUT/wrk-$v-c$conns-r$round.txt load1 m0 m1 t0 t1 a0 a1 all0 all1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    a0=$(decisions "$v" allow)
    all0=$(curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" | awk -v a="action=\"$v\"" 'index($1, "rein_decisions_total{") == 1 && index($1, a) {s += $NF} END {printf "%d", s + 0}')
    m0=$(machine_ticks)
    t0=$(cpu_ticks "$SERVER_PID")
    BODIES_FILE=$OUT/bodies-$v.jsonl REIN_TOKEN=$TOKEN /usr/bin/time -f '%U %S' -o "$file.time" timeout $((secs + 30)) "${NICE[@]}" \
      wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s bench/http-decide-many.lua "http://127.0.0.1:$PORT/v1/decide" >"$file" 2>&1
    t1=$(cpu_ticks "$SERVER_PID")
    m1=$(machine_ticks)
    a1=$(decisions "$v" allow)
    all1=$(curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" | awk -v a="action=\"$v\"" 'index($1, "rein_decisions_total{") == 1 && index($1, a) {s += $NF} END {printf "%d", s + 0}')
    local line req rps errors shares cpu
    line=$(grep '^WRK ' "$file")
    req=$(echo "$line" | kv requests)
    rps=$(echo "$line" | kv rps)
    # Every decision of the run must be an allow (a refused one is an error).
    errors=$(($(echo "$line" | kv non2xx) + $(echo "$line" | kv connect) + $(echo "$line" | kv read) + $(echo "$line" | kv write) + $(echo "$line" | kv timeout) + (all1 - all0) - (a1 - a0)))
    shares=$(awk -v m0="$m0" -v m1="$m1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" -v wt="$(cat "$file.time")" '
      BEGIN {
        split(m0, a, " "); split(m1, b, " "); split(wt, w, " ")
        total = b[2] - a[2]; busy = b[1] - a[1]; srv = t1 - t0; wrk = (w[1] + w[2]) * hz
        other = busy - srv - wrk; if (other < 0) other = 0
        printf "%.0f\t%.0f\t%.0f", 100 * srv / total, 100 * wrk / total, 100 * other / total
      }')
    cpu=$(awk -v a="$t0" -v b="$t1" -v n="$req" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / n}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$v" "$conns" "$rps" "$(echo "$line" | kv p50)" "$(echo "$line" | kv p99)" \
      "$errors" "$cpu" "$shares" "$load1" >>"$ROWS"
    echo "  r$round $v -c$conns: $rps req/s, p50 $(echo "$line" | kv p50) µs, p99 $(echo "$line" | kv p99) µs, $cpu µs server CPU/decision, $errors errors (load $load1; server/wrk/other %: $shares)" | tr '\t' '/'
  }
  for round in $(seq 1 "$ROUNDS"); do
    round_server "round$round"
    order=$VARIANTS
    # Alternate the order, so no variant always runs first (or on a fuller database).
    [ $((round % 2)) = 0 ] && order=$(echo "$VARIANTS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for v in $order; do wrk_run "$round" "$v" "$WRK_THREADS" "$CONNS" "$DUR"; done
    round_end "round$round"
  done
  round_server c1
  for v in $VARIANTS; do wrk_run c1 "$v" 1 1 "$C1_DUR"; done
  round_end c1
  say ""
  column -t -s $'\t' "$ROWS" | tee -a "$SUMMARY"
  say ""
  # Medians over the rounds at -c$CONNS, and the ratios to the stateless action.
  med() {
    awk -F'\t' -v v="$1" -v c="$2" -v col="$3" 'NR > 1 && $2 == v && $3 == c && $1 != "c1" {print $col}' "$ROWS" | sort -g |
      awk '{a[NR] = $1} END {if (NR) printf "%.1f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
  }
  first=${VARIANTS%% *}
  base=$(med "$first" "$CONNS" 4)
  for v in $VARIANTS; do
    rps=$(med "$v" "$CONNS" 4)
    cpu=$(med "$v" "$CONNS" 8)
    c1=$(awk -F'\t' -v v="$v" '$1 == "c1" && $2 == v {print $4}' "$ROWS")
    say "$v: median $rps decisions/s at -c$CONNS ($(awk -v a="$rps" -v b="$base" 'BEGIN {printf "%.2f", a / b}') of $first), $cpu µs server CPU per decision; one connection $c1/s$([ -n "$FSYNC_RATE" ] && awk -v a="$rps" -v f="$FSYNC_RATE" 'BEGIN {printf "; %.1f× one fsync per decision (%d/s)", a / f, f}')"
  done
  say "per-round ratios (each round's stateful / stateless, measured minutes apart at most):"
  awk -F'\t' -v first="$first" -v c="$CONNS" 'NR > 1 && $3 == c && $1 != "c1" {r[$1, $2] = $4; rounds[$1] = 1; vs[$2] = 1}
    END {for (k in rounds) {line = "  round " k ":"; for (v in vs) if (v != first) line = line sprintf(" %s %.2f", v, r[k, v] / r[k, first]); print line}}' "$ROWS" | sort | tee -a "$SUMMARY"
  say ""
fi

# ---- 3. soak -----------------------------------------------------------------------
if has 3; then
  say "## 3. soak: refund.loop at $SOAK_RATE/s for ${SOAK_SECS}s ($SOAK_CONNS connections), windows $SOAK_WINDOW, session idle $SOAK_IDLE$([ ${#IDLE_FLAG[@]} = 0 ] && echo ' (NOT SET: this rein serve has no --session-idle)'), sessions renamed every ${SOAK_ROTATE}s, a sample every ${SAMPLE}s"
  need_disk $((SOAK_RATE * SOAK_SECS))
  sed -e "s/\b1h\b/$SOAK_WINDOW/g" "$POLICY" >"$OUT/soak-policy.yaml"
  # Session and actor ids carry the period's number: each period brings new
  # sessions (the old ones go idle and expire) and new buckets (the old
  # ones' uses leave the window).
  SESSIONS=$SOAK_SESSIONS bodies refund.loop "s-{epoch}-" "bot-{epoch}-" "$OUT/bodies-soak.jsonl"
  start_server soak "$OUT/soak-policy.yaml" "$OUT/soak.db" "$SOAK_IDLE"
  head -1 "$OUT/bodies-soak.jsonl" | sed "s/{epoch}/0/g" >"$OUT/soak-first.json"
  check_allowed "$OUT/soak-first.json"
  SOAK=$OUT/soak.tsv
  printf 't_s\trss_kb\tdb_kb\twal_kb\tlimits_buckets\tdecisions\tload1\tstate\n' >"$SOAK"
  sample() {
    local buckets state
    buckets=$(curl -s --max-time 10 -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$PORT/v1/limits" |
      jq '[.. | objects | select(has("bucket"))] | length' 2>/dev/null || echo '?')
    state=$(python3 bench/state_sample.py "$OUT/soak.db" "$STATE_TABLES" 2>&1 || true)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" \
      "$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")" \
      "$(($(stat -c %s "$OUT/soak.db") / 1024))" \
      "$(($(stat -c %s "$OUT/soak.db-wal" 2>/dev/null || echo 0) / 1024))" \
      "$buckets" "$(decisions refund.loop allow)" "$(cut -d' ' -f1 /proc/loadavg)" "$state" >>"$SOAK"
    tail -1 "$SOAK"
  }
  sample 0
  t0=$(cpu_ticks "$SERVER_PID")
  timeout $((SOAK_SECS + 60)) "${NICE[@]}" "$LOADGEN" --addr "127.0.0.1:$PORT" --rate "$SOAK_RATE" --duration "$SOAK_SECS" --warmup 0 \
    --connections "$SOAK_CONNS" --bodies "$OUT/bodies-soak.jsonl" --rotate "$SOAK_ROTATE" --token "$TOKEN" --expect allow \
    >"$OUT/soak-load.txt" 2>&1 &
  LG=$!
  PIDS+=("$LG")
  start=$(date +%s)
  while kill -0 "$LG" 2>/dev/null; do
    sleep "$SAMPLE" & wait $!
    kill -0 "$LG" 2>/dev/null || break
    sample $(($(date +%s) - start))
  done
  wait "$LG" || true
  t1=$(cpu_ticks "$SERVER_PID")
  sample "$(($(date +%s) - start))"
  n=$(decisions refund.loop allow)
  curl -s --max-time 10 -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$PORT/v1/limits" >"$OUT/limits-after-soak.json" || true
  curl -s --max-time 5 "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics-after-soak.txt" || true
  stop_server
  grep -v '^RESULT' "$OUT/soak-load.txt" | sed 's/^/    /' | tee -a "$SUMMARY"
  say "server CPU per decision over the soak: $(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f µs", (b - a) / hz * 1e6 / n}') ($n allowed decisions)"
  column -t -s $'\t' "$SOAK" | tee -a "$SUMMARY"
  # Least-squares slopes per minute after SOAK_STEADY: RSS, the file, and each state number.
  python3 - "$SOAK" "$SOAK_STEADY" <<'EOF' | tee -a "$SUMMARY"
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
steady = float(sys.argv[2])
series = {}
for r in rows:
    t = float(r[0])
    if t < steady:
        continue
    vals = {"rss_kb": r[1], "db_kb": r[2], "wal_kb": r[3], "limits_buckets": r[4], "decisions": r[5]}
    for kv in r[7].split():
        if "=" in kv:
            k, v = kv.split("=", 1)
            vals[k] = v
    for k, v in vals.items():
        try:
            series.setdefault(k, []).append((t, float(v)))
        except ValueError:
            pass
def slope(pts):
    n = len(pts)
    if n < 2:
        return float("nan")
    sx = sum(t for t, _ in pts); sy = sum(v for _, v in pts)
    sxx = sum(t * t for t, _ in pts); sxy = sum(t * v for t, v in pts)
    d = n * sxx - sx * sx
    return (n * sxy - sx * sy) / d * 60 if d else float("nan")
print(f"slopes per minute from t >= {steady:.0f} s (least squares):")
for k, pts in series.items():
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    print(f"  {k}: {slope(pts):+.1f}/min (min {lo:.0f}, max {hi:.0f}, {len(pts)} samples)")
EOF
  say "series: $SOAK"
  say ""
fi
say "load average at end: $(loadavg)"
say "raw files: $OUT"
