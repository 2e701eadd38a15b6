#!/usr/bin/env bash
# The cost of the shared store: decisions/s, p99 and server CPU per decision
# for `rein serve` on PostgreSQL with 1 and 3 replicas, side by side with one
# SQLite replica, in the same run, for a durable stateless decision (every
# decision audited) and a stateful one (a limit and a session label).
#
#   sqlite  one `rein serve --db FILE`, wrk straight to it
#   pg1     replica 1 of scripts/replicas.sh's set, wrk straight to it (the
#           other two idle: the state lease stays with replica 1)
#   pg3     the three replicas through HAProxy (round robin)
#
# The policy is bench/state-policy.yaml: action `refund` is stateless,
# `refund.track` takes a limit unit per call and labels the session (the
# bodies of bench/state_http.sh: varied actors and sessions, all allowed).
# wrk -t$WRK_THREADS -c$CONNS, $DUR s per run after a $WARM s warm-up, $ROUNDS
# rounds, variants in alternating order. CPU per decision from
# /proc/<pid>/stat (utime + stime) before and after each run: rein's
# processes; PostgreSQL's (the postmaster, its children and the children it
# reaped); HAProxy's. Every decision must be an allow: anything else
# (non-2xx, socket errors) is counted as an error.
#
#   bench/replicas.sh                          # ~4 min
#   ROUNDS=3 DUR=20 CONNS=64 bench/replicas.sh
#   VARIANTS="sqlite pg3" KINDS=refund.track bench/replicas.sh
#
# Needs wrk, curl, python3, haproxy and PostgreSQL 15's programs (see
# scripts/replicas.sh). Everything started here is stopped on exit. Output:
# $OUT/summary.txt and the raw wrk files.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DUR=${DUR:-10}
WARM=${WARM:-2}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
ROUNDS=${ROUNDS:-2}
VARIANTS=${VARIANTS:-sqlite pg1 pg3}
KINDS=${KINDS:-refund refund.track}
BODIES=${BODIES:-2000}
ACTORS=${ACTORS:-100}
SESSIONS=${SESSIONS:-1000}
POLICY=${POLICY:-bench/state-policy.yaml}
OUT=${OUT:-$ROOT/target/bench-replicas/$(date +%Y%m%d-%H%M%S)}
CLK_TCK=$(getconf CLK_TCK)

mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
kv() { tr ' ' '\n' | sed -n "s/^$1=//p"; }

for tool in wrk curl python3 haproxy; do
  command -v "$tool" >/dev/null || { echo "bench/replicas.sh: needs $tool" >&2; exit 1; }
done

if [ -z "${REIN:-}" ]; then
  cargo build -q --release --locked -p rein-cli
  REIN=$ROOT/target/release/rein
fi
export REIN

SQLITE_PID=
cleanup() {
  if [ -n "$SQLITE_PID" ]; then
    kill -TERM "$SQLITE_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SQLITE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SQLITE_PID" 2>/dev/null || true
  fi
  DIR=$OUT/replicas scripts/replicas.sh stop || true
  rm -rf "$OUT/replicas/pg/data" "$OUT"/sqlite/rein.db*   # (as root the cluster is under /tmp, removed by stop)
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the servers ------------------------------------------------------------
DIR=$OUT/replicas REPLICAS=3 scripts/replicas.sh start "$POLICY" >/dev/null
# shellcheck disable=SC1091
. "$OUT/replicas/env"
TOKEN=$REIN_TOKEN_AGENT
PG_DATA=$(cat "$OUT/replicas/pg.path" 2>/dev/null || echo "$OUT/replicas/pg")/data

mkdir -p "$OUT/sqlite"
SQLITE_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$OUT/sqlite" && exec "$REIN" serve "$ROOT/$POLICY" --db "$OUT/sqlite/rein.db" --tokens "$OUT/replicas/tokens.yaml" \
  --audit-key "$OUT/replicas/audit.key" --delegation-key "$OUT/replicas/delegation.key" \
  --listen "127.0.0.1:$SQLITE_PORT" </dev/null >"$OUT/sqlite/serve.log" 2>&1) &
SQLITE_PID=$!
for _ in $(seq 1 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$SQLITE_PORT/healthz" || true)" = 200 ] && break
  sleep 0.1
done

url_of() {
  case $1 in
    sqlite) echo "http://127.0.0.1:$SQLITE_PORT" ;;
    pg1) echo "$REIN_URL_1" ;;
    pg3) echo "$REIN_URL" ;;
  esac
}
rein_pids_of() {
  case $1 in
    sqlite) echo "$SQLITE_PID" ;;
    pg1) echo "$REIN_PID_1" ;;
    pg3) echo "$REIN_PID_1 $REIN_PID_2 $REIN_PID_3" ;;
  esac
}

# Ticks (utime + stime) of the given pids.
ticks() {
  local t=0 p
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    t=$((t + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
  done
  echo "$t"
}
# PostgreSQL's ticks: the postmaster with its reaped children, and its live ones.
pg_ticks() {
  local pm t
  pm=$(head -1 "$PG_DATA/postmaster.pid")
  t=$(awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$pm/stat")
  echo $((t + $(ticks $(ps -o pid= --ppid "$pm"))))
}

# ---- the bodies -------------------------------------------------------------
bodies() {
  python3 - "$1" "$BODIES" "$ACTORS" "$SESSIONS" >"$2" <<'EOF'
import json, sys
action, n, actors, sessions = sys.argv[1], *map(int, sys.argv[2:])
for i in range(n):
    print(json.dumps({
        "action": action,
        "input": {"order_id": f"ord_{i:08d}", "amount": 1 + i % 100, "currency": "EUR"},
        "actor": {"id": f"bot-{i % actors}", "role": "agent"},
        "snapshot": {"fraud_flag": False, "refunds_today": 0},
        "session": f"s-{(i * 7919) % sessions}",
    }, separators=(",", ":")))
EOF
}
for k in $KINDS; do bodies "$k" "$OUT/bodies-$k.jsonl"; done

say "# rein replicas benchmark, $(date -u +%FT%TZ)"
say "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "git: $(git rev-parse --short HEAD); rein: $REIN ($("$REIN" --version)); PostgreSQL: $("$(dirname "$(command -v pg_ctl 2>/dev/null || echo /usr/lib/postgresql/15/bin/pg_ctl)")"/postgres --version 2>/dev/null || echo '?')"
say "parameters: DUR=$DUR WARM=$WARM CONNS=$CONNS WRK_THREADS=$WRK_THREADS ROUNDS=$ROUNDS VARIANTS='$VARIANTS' KINDS='$KINDS' BODIES=$BODIES ACTORS=$ACTORS SESSIONS=$SESSIONS"
say ""

ROWS=$OUT/rows.tsv
: >"$ROWS"
run() {
  local round=$1 v=$2 k=$3 url file line req rps p99 errors r0 r1 g0 g1 h0 h1 pids
  url=$(url_of "$v")/v1/decide
  file=$OUT/wrk-$v-$k-r$round.txt
  pids=$(rein_pids_of "$v")
  BODIES_FILE=$OUT/bodies-$k.jsonl REIN_TOKEN=$TOKEN timeout $((WARM + 30)) \
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${WARM}s" -s bench/http-decide-many.lua "$url" >/dev/null 2>&1 || true
  # shellcheck disable=SC2086
  r0=$(ticks $pids); g0=$(pg_ticks); h0=$(ticks "$REIN_HAPROXY_PID")
  BODIES_FILE=$OUT/bodies-$k.jsonl REIN_TOKEN=$TOKEN timeout $((DUR + 30)) \
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DUR}s" --latency -s bench/http-decide-many.lua "$url" >"$file" 2>&1
  # shellcheck disable=SC2086
  r1=$(ticks $pids); g1=$(pg_ticks); h1=$(ticks "$REIN_HAPROXY_PID")
  line=$(grep '^WRK ' "$file")
  req=$(echo "$line" | kv requests)
  rps=$(echo "$line" | kv rps)
  p99=$(echo "$line" | kv p99)
  errors=$(($(echo "$line" | kv non2xx) + $(echo "$line" | kv connect) + $(echo "$line" | kv read) + $(echo "$line" | kv write) + $(echo "$line" | kv timeout)))
  per() { awk -v a="$1" -v b="$2" -v n="$req" -v hz="$CLK_TCK" 'BEGIN {printf "%.1f", n ? (b - a) / hz * 1e6 / n : 0}'; }
  local rein_cpu pg_cpu lb_cpu
  rein_cpu=$(per "$r0" "$r1")
  pg_cpu=$(per "$g0" "$g1")
  lb_cpu=$(per "$h0" "$h1")
  [ "$v" = sqlite ] && pg_cpu=0.0
  [ "$v" = pg3 ] || lb_cpu=0.0
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$v" "$k" "$rps" "$p99" "$errors" "$rein_cpu" "$pg_cpu" "$lb_cpu" >>"$ROWS"
  say "  r$round $v $k: $rps decisions/s, p99 $p99 µs, $errors errors; CPU µs/decision: rein $rein_cpu, PostgreSQL $pg_cpu, HAProxy $lb_cpu (load $(cut -d' ' -f1 /proc/loadavg))"
}

for round in $(seq 1 "$ROUNDS"); do
  order=$VARIANTS
  [ $((round % 2)) = 0 ] && order=$(echo "$VARIANTS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for k in $KINDS; do
    for v in $order; do run "$round" "$v" "$k"; done
  done
done

say ""
say "## means over $ROUNDS rounds (wrk -c$CONNS; CPU per decision in µs; 'rein+pg' is the whole store's cost)"
say "| decision | variant | decisions/s | p99 | errors | rein CPU | PostgreSQL CPU | rein+pg CPU | HAProxy CPU | decisions/s vs sqlite | rein+pg CPU vs sqlite |"
say "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '
  { key = $3 "\t" $2; n[key]++; rps[key] += $4; p99[key] += $5; err[key] += $6; rc[key] += $7; pc[key] += $8; lc[key] += $9
    if (!(key in seen)) { seen[key] = 1; order[++m] = key } }
  END {
    for (i = 1; i <= m; i++) {
      key = order[i]; split(key, kv, "\t"); k = kv[1]; v = kv[2]; c = n[key]
      base = k "\tsqlite"
      r = rps[key] / c; tot = (rc[key] + pc[key]) / c
      rel_r = (base in n) ? sprintf("%.2f", r / (rps[base] / n[base])) : "-"
      rel_c = (base in n) ? sprintf("%.2f", tot / ((rc[base] + pc[base]) / n[base])) : "-"
      printf "| %s | %s | %.0f | %.2f ms | %d | %.1f | %.1f | %.1f | %.1f | %s | %s |\n", k, v, r, p99[key] / c / 1000, err[key], rc[key] / c, pc[key] / c, tot, lc[key] / c, rel_r, rel_c
    }
  }' "$ROWS" | sort | tee -a "$SUMMARY"
say ""
say "targets (issue 18): PostgreSQL durable decisions/s >= 0.5x SQLite's; CPU per decision on PostgreSQL <= 2x SQLite's"
say "output: $OUT"
