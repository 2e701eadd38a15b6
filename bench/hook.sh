#!/usr/bin/env bash
# Whole-process cost of `rein hook claude-code` and of the HTTP hook, side by
# side with a `cat` floor, on the coding-agent contracts, the Claude Code
# example and 1,000 generated shell rules (1,018 rules in all).
#
#   bash bench/hook.sh            # needs hyperfine and wrk (Debian packages)
#
# Knobs: RUNS (hyperfine runs, default 300), SECS (wrk seconds, default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-300}"
SECS="${SECS:-10}"
OUT=target/bench-hook
rm -rf "$OUT" && mkdir -p "$OUT/project"
cargo build -q --release -p rein-cli
REIN="$PWD/target/release/rein"

python3 - "$OUT/rules.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("version: 1\nrules:\n")
    for i in range(1000):
        f.write(f"  - id: gen_{i}\n    action: shell.exec\n"
                f"    when: input.program == \"tool_{i}\" && input.args.exists(a, a == \"x{i}\")\n"
                f"    effect: block\n    reason: generated rule {i}\n")
PY
POLICY=(-p policies/agents/coding-agent.yaml -p examples/claude-code/policy.yaml -p "$OUT/rules.yaml")
python3 - "$OUT/event.json" "$PWD/$OUT/project" <<'PY'
import json, sys
json.dump({"session_id": "bench", "cwd": sys.argv[2], "hook_event_name": "PreToolUse",
           "permission_mode": "default", "tool_name": "Bash",
           "tool_input": {"command": "git status && cargo test --workspace", "description": "x"},
           "tool_use_id": "toolu_bench"}, open(sys.argv[1], "w"))
PY
"$REIN" validate "${POLICY[@]}"
# The answer must be a real decision before anything is timed.
"$REIN" hook claude-code "${POLICY[@]}" --db "$OUT/hook.db" <"$OUT/event.json" | grep -q '"allow"'

echo "== process hook (hyperfine, $RUNS runs; all through sh -c for the redirection)"
# Default: the compiled policy from the cache (the warm-up runs fill it);
# --no-cache: reading and type-checking the YAML on every run.
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$OUT/process.json" \
  "sh -c 'cat < $OUT/event.json'" \
  "sh -c '$REIN hook claude-code ${POLICY[*]} --db $OUT/hook.db --cache-dir $OUT/cache < $OUT/event.json'" \
  "sh -c '$REIN hook claude-code ${POLICY[*]} --db $OUT/hook.db --no-cache < $OUT/event.json'" 2>&1 | grep -v "^ *$"
python3 - "$OUT/process.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    name = "cat floor" if "cat <" in r["command"] else ("no cache" if "--no-cache" in r["command"] else "cached")
    print(f"median {name:>9}: {r['median'] * 1e3:6.2f} ms  (user {r['user'] * 1e3:.1f} ms, system {r['system'] * 1e3:.1f} ms, min {r['min'] * 1e3:.2f} ms)")
PY

echo "== HTTP hook (wrk, 1 connection, ${SECS}s): rein serve, durable audit"
TOKEN=agent-token-for-the-hook-benchmark-0123
cat >"$OUT/tokens.yaml" <<YAML
tokens:
  - {name: bench-agent, role: agent, token: $TOKEN}
YAML
"$REIN" serve "${POLICY[@]}" --db "$OUT/serve.db" --tokens "$OUT/tokens.yaml" --listen 127.0.0.1:8787 >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8787/healthz >/dev/null && break; sleep 0.1; done
curl -sf -H "Authorization: Bearer $TOKEN" --data-binary @"$OUT/event.json" \
  http://127.0.0.1:8787/v1/hooks/claude-code | grep -q '"allow"'
BODY_FILE="$OUT/event.json" REIN_TOKEN="$TOKEN" wrk -t1 -c1 -d"${SECS}s" --latency \
  -s bench/http-decide.lua http://127.0.0.1:8787/v1/hooks/claude-code | grep -E "WRK|Latency|Req/Sec"
