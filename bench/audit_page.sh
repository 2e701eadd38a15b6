#!/usr/bin/env bash
# Page load of the console's audit view on a large audit log (issue 19:
# "page load of the audit view on a 1-million-record store <= 200 ms server
# time").
#
# Fills a store once with RECORDS varied records (audit_fill: 2,000 actors,
# 24 actions, 60 rules, 100,000 sessions, 90/8/2 % allow/block/approval),
# starts `rein serve` on it, records one real decision (so that the newest
# record's detail view re-runs its explanation on the loaded policy), and
# times each page ROUNDS times with curl over loopback (time to the last
# byte, one connection per request): the first page, each filter, a
# combination, time windows, a deep "Older" page, the export's first
# bytes, and a record's detail view. Prints median and p95 per page, and
# how long the chain walk behind "verified up to here" took to reach the
# newest record after the server started.
#
#   bench/audit_page.sh                       # SQLite, 1,000,000 records
#   DB=postgres://rein@127.0.0.1:55432/rein_bench bench/audit_page.sh
#   RECORDS=100000 ROUNDS=50 bench/audit_page.sh
#
# The store is kept in $OUT (default target/audit-page) and reused: a
# second run appends nothing. Timings on a shared machine are noise; the
# store's query plans are what make the page flat (see the rein-store
# schema's v8 / PostgreSQL v2 and `sqlite/read.rs`).
set -euo pipefail

cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-1000000}
ROUNDS=${ROUNDS:-30}
OUT=${OUT:-target/audit-page}
DB=${DB:-$OUT/audit.db}
REIN=${REIN:-target/release/rein}
FILL=${FILL:-target/release/audit_fill}
PORT=${PORT:-18790}

mkdir -p "$OUT"
[ -x "$REIN" ] || cargo build --release -p rein-cli --bin rein
[ -x "$FILL" ] || cargo build --release -p rein-bench --bin audit_fill

ADMIN=bench-admin-token-0123456789abcdef
AGENT=bench-agent-token-0123456789abcdef
cat >"$OUT/tokens.yaml" <<EOF
tokens:
  - {name: ops, role: admin, token: $ADMIN}
  - {name: bench-agent, role: agent, token: $AGENT}
EOF
for key in audit delegation; do
  [ -f "$OUT/$key.key" ] || head -c 32 /dev/urandom >"$OUT/$key.key"
done
chmod 600 "$OUT/audit.key" "$OUT/delegation.key" "$OUT/tokens.yaml"
{
  echo 'version: "audit-page-bench"'
  echo 'default: allow'
  echo 'contracts:'
  echo '  actor: {id: string, roles: "list<string>?", tenant: "string?"}'
  echo '  snapshot: {refunds_today: {type: int, min: 0}}'
  echo '  actions:'
  for a in $(seq 0 23); do
    echo "    action_$a: {input: {amount: number, currency: string}}"
  done
  echo 'rules:'
  for r in $(seq 0 59); do
    echo "  - {id: rule-$r, action: action_$((r % 24)), when: \"input.amount > $((r * 100))\", effect: allow, reason: rule $r}"
  done
  echo '  - {id: too-much, action: action_0, when: "input.amount > 9000", effect: block, reason: too much}'
} >"$OUT/policy.yaml"

echo "filling $DB to $RECORDS records (appends only what is missing)" >&2
"$FILL" --store "$DB" --records "$RECORDS"

"$REIN" serve --policy "$OUT/policy.yaml" --db "$DB" --tokens "$OUT/tokens.yaml" --audit-key "$OUT/audit.key" --delegation-key "$OUT/delegation.key" \
  --listen "127.0.0.1:$PORT" >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
STARTED=$(date +%s.%N)
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
BASE="http://127.0.0.1:$PORT"

# One real decision: the newest record, of the loaded policy.
SEQ=$(curl -sf -H "Authorization: Bearer $AGENT" -H 'content-type: application/json' \
  -d '{"action":"action_0","input":{"amount":9500,"currency":"EUR"},"actor":{"id":"agent-3","roles":["agent"]},"snapshot":{"refunds_today":1},"session":"session-42"}' \
  "$BASE/v1/decide" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("audit_seq",""))')
[ -n "$SEQ" ] || SEQ=$(curl -sf -H "Authorization: Bearer $ADMIN" "$BASE/v1/audit?order=desc&limit=1" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["records"][0]["seq"])')
MID=$((SEQ / 2))

# page NAME PATH [MUST_CONTAIN]: ROUNDS timed GETs (after one warm-up).
page() {
  local name=$1 path=$2 must=${3:-}
  local body="$OUT/page.html"
  local code
  code=$(curl -s -o "$body" -w '%{http_code}' -H "Cookie: rein_console=$ADMIN" "$BASE$path")
  if [ "$code" != 200 ] || { [ -n "$must" ] && ! grep -q -- "$must" "$body"; }; then
    echo "$name: HTTP $code or no \`$must\` in $path" >&2
    return 1
  fi
  for _ in $(seq 1 "$ROUNDS"); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Cookie: rein_console=$ADMIN" "$BASE$path"
  done | sort -n | awk -v name="$name" -v rows="$(grep -o 'data-seq=' "$body" | wc -l)" '
    { t[NR] = $1 * 1000 }
    END { printf "%-28s median %7.1f ms   p95 %7.1f ms   (%d rows)\n", name, t[int((NR + 1) / 2)], t[int(NR * 0.95 + 0.999)], rows }'
}

echo "store: $DB, newest record $SEQ; $ROUNDS rounds each; time to the last byte over loopback"
page "first page" "/console/audit" 'data-seq='
page "actor (rare)" "/console/audit?actor=agent-1500" 'data-seq='
page "actor (busy)" "/console/audit?actor=agent-3" 'data-seq='
page "rule" "/console/audit?rule=rule-7" 'data-seq='
page "session" "/console/audit?session=session-4242" 'data-seq='
page "effect" "/console/audit?effect=require_approval" 'data-seq='
page "action" "/console/audit?action=action_5" 'data-seq='
page "actor+effect" "/console/audit?actor=agent-3&effect=block" 'data-seq='
page "rule+actor" "/console/audit?rule=rule-7&actor=agent-1500" '<h1>'
page "1 h window, past" "/console/audit?since=2026-01-01T01:00:00Z&until=2026-01-01T02:00:00Z" 'data-seq='
page "since (last 20 min)" "/console/audit?since=2026-01-01T08:00:00Z" 'data-seq='
page "until (past)" "/console/audit?until=2026-01-01T02:00:00Z" 'data-seq='
page "deep Older page" "/console/audit?before=1000" 'data-seq='
page "Older page, actor" "/console/audit?actor=agent-3&before=$MID" 'data-seq='
page "record detail (newest)" "/console/audit/$SEQ" 'Explanation'
page "record detail (middle)" "/console/audit/$MID" 'Explanation'

# The chain walk: how long after the start until the newest record is
# "verified up to here" (the views above started it).
for _ in $(seq 1 1200); do
  if curl -s -H "Cookie: rein_console=$ADMIN" "$BASE/console/audit/$SEQ" | grep -q 'verified up to here'; then
    printf 'chain verified through record %s %.1f s after the server started\n' "$SEQ" \
      "$(echo "$(date +%s.%N) - $STARTED" | bc)"
    break
  fi
  sleep 0.5
done
page "record detail (verified)" "/console/audit/$SEQ" 'verified up to here'
